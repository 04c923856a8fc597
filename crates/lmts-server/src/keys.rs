//! Master-key rotation (issue #15): how many secrets each key seals ([`KeyUse`], answered by
//! `Store::key_usage`), and re-sealing every secret under the current key, online, in
//! batches, each batch one transaction that moves a row only if no one moved it meanwhile. A
//! run interrupted at any point is run again: the rows still under another key are the work
//! left, and none is half-moved. Once no row is left
//! under an old key, that key can be retired.

use crate::{
    crypto::{CryptoError, Keyring},
    store::{Resealed, Store, StoreError},
};

/// How many secrets one master key seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key's id.
    pub key_id: String,
    /// Rows sealed under it, revoked and expired tokens included.
    pub sealed: u64,
    /// Of those, the tokens live at the time asked.
    pub live: u64,
}

/// Why a re-sealing stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RekeyError {
    /// A secret could not be opened with the keys given (its key is missing), or sealed.
    #[error("token {token_id}: {source}")]
    Crypto {
        /// The token.
        token_id: String,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// The database refused.
    #[error("database error")]
    Store(#[from] StoreError),
}

/// Re-seals under `keyring`'s current key every secret sealed under another, `batch` rows at a
/// time, telling `progress` the total moved after each batch; answers that total.
pub async fn reseal(
    store: &dyn Store,
    keyring: &Keyring,
    batch: u32,
    mut progress: impl FnMut(u64),
) -> Result<u64, RekeyError> {
    let current = keyring.current_key_id();
    let mut moved = 0;
    loop {
        let rows = store.sealed_under_other_keys(current, batch).await?;
        if rows.is_empty() {
            return Ok(moved);
        }
        let mut resealed = Vec::with_capacity(rows.len());
        for (token_id, sealed) in rows {
            let crypto = |source| RekeyError::Crypto {
                token_id: token_id.to_string(),
                source,
            };
            let secret = keyring.open(token_id.as_str(), &sealed).map_err(crypto)?;
            let fresh = keyring.seal(token_id.as_str(), &secret).map_err(crypto)?;
            resealed.push(Resealed {
                token_id,
                from_key_id: sealed.key_id,
                sealed: fresh,
            });
        }
        moved += store.reseal(&resealed).await?;
        progress(moved);
    }
}
