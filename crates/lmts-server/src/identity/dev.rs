//! The dev issuer: an ES256 key pair kept in the data directory, so that `lmts serve --dev`
//! accepts identity tokens that `lmts dev identity-token` mints, with no Privy account.
//! A server without `--dev` never loads this key and never accepts its tokens.

use std::{fmt, io::Write, path::Path};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use lmts_core::files::{self, FileError};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use serde_json::json;
use zeroize::Zeroizing;

use crate::account::checksum_address;

/// File name of the dev issuer's private key inside the data directory.
pub const DEV_KEY_FILE: &str = "dev-identity.key";
/// The `kid` of dev identity tokens.
pub const DEV_KEY_ID: &str = "lmts-dev";
/// The app id dev tokens carry when none is configured.
pub const DEV_APP_ID: &str = "lmts-dev";

/// Why the dev issuer could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// The key file could not be read or written.
    #[error("dev identity key file {path}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: FileError,
    },
    /// The key file does not hold a P-256 PKCS#8 key.
    #[error("dev identity key file does not hold a P-256 key")]
    BadKey,
    /// `--account` is not a 20-byte hex address.
    #[error("account {0:?} is not a 0x-prefixed 20-byte hex address")]
    BadAccount(String),
    /// Signing failed.
    #[error("could not sign the dev identity token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The ttl puts the token's expiry outside the dates the calendar can hold.
    #[error("ttl puts the token's expiry outside the supported date range")]
    TtlOutOfRange,
}

/// The dev issuer's key pair.
pub struct DevIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevIssuer([redacted])")
    }
}

impl DevIssuer {
    /// Loads the key pair of `data_dir`, creating it (mode 0600) when missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, DevIssuerError> {
        let path = data_dir.join(DEV_KEY_FILE);
        let file_error = |source| DevIssuerError::File {
            path: path.display().to_string(),
            source,
        };
        files::ensure_private_dir(data_dir).map_err(file_error)?;
        let pkcs8 = match files::read_private(&path).map_err(file_error)? {
            Some(text) => Zeroizing::new(
                STANDARD
                    .decode(text.trim())
                    .map_err(|_| DevIssuerError::BadKey)?,
            ),
            None => {
                let document = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| DevIssuerError::BadKey)?;
                let der = Zeroizing::new(document.as_ref().to_vec());
                let encoded = Zeroizing::new(STANDARD.encode(&*der));
                files::create_private(&path, |file| file.write_all(encoded.as_bytes()))
                    .map_err(file_error)?;
                der
            }
        };
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| DevIssuerError::BadKey)?;
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding: DecodingKey::from_ec_der(pair.public_key().as_ref()),
        })
    }

    /// The key that verifies dev tokens.
    pub fn decoding_key(&self) -> DecodingKey {
        self.decoding.clone()
    }

    /// Mints an identity token for the wallet `account`, shaped as Privy's (SPEC A6), valid
    /// from `now` for `ttl` (negative for an already expired token); a `ttl` that puts the
    /// expiry beyond the calendar is [`DevIssuerError::TtlOutOfRange`].
    pub fn issue(
        &self,
        account: &str,
        issuer: &str,
        app_id: &str,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Result<String, DevIssuerError> {
        let account = checksum_address(account)
            .ok_or_else(|| DevIssuerError::BadAccount(account.to_owned()))?;
        let expiry = now
            .checked_add_signed(ttl)
            .ok_or(DevIssuerError::TtlOutOfRange)?;
        let linked = json!([{
            "type": "wallet",
            "address": account,
            "chain_type": "ethereum",
            "wallet_client_type": "lmts-dev",
        }]);
        let claims = json!({
            "iss": issuer,
            "aud": app_id,
            "sub": format!("did:privy:dev-{}", account.to_ascii_lowercase()),
            "iat": now.timestamp(),
            "exp": expiry.timestamp(),
            "linked_accounts": linked.to_string(),
            "custom_metadata": "{}",
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(DEV_KEY_ID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(DevIssuerError::Sign)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use chrono::{DateTime, TimeDelta, Utc};

    use super::DevIssuer;

    const ACCOUNT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

    #[test]
    fn a_ttl_beyond_the_calendar_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(dir.path()).unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let issue = |now: DateTime<Utc>, ttl| issuer.issue(ACCOUNT, "privy.io", "app", now, ttl);
        assert!(issue(now, TimeDelta::hours(1)).is_ok());
        assert!(
            issue(now, -TimeDelta::hours(1)).is_ok(),
            "expired tokens for tests"
        );
        for (now, ttl) in [
            (now, TimeDelta::MAX),
            (now, TimeDelta::MIN),
            (now, TimeDelta::days(100_000_000)),
            (DateTime::<Utc>::MAX_UTC, TimeDelta::seconds(1)),
            (DateTime::<Utc>::MIN_UTC, -TimeDelta::seconds(1)),
        ] {
            let error = issue(now, ttl).unwrap_err();
            assert_eq!(
                error.to_string(),
                "ttl puts the token's expiry outside the supported date range"
            );
        }
    }
}
