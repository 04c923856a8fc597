//! Secrets at rest (SPEC B12): each token secret is sealed with AES-256-GCM under a master key,
//! with the token id as associated data and the key's id stored beside the row, so that a copy
//! of the database alone reveals no usable secret and the master key can rotate.

use std::{collections::HashMap, fmt, io::Write, path::Path};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use lmts_core::{files, TokenSecret};
use ring::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN},
    digest,
    rand::{SecureRandom, SystemRandom},
};
use zeroize::Zeroizing;

/// File name of the generated master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Why secrets could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The master key material is not base64 of 32 bytes.
    #[error("master key is not standard base64 of 32 bytes")]
    BadMasterKey,
    /// The row was sealed under a key this server does not hold.
    #[error("secret sealed under unknown master key id {0}")]
    UnknownKeyId(String),
    /// The sealed bytes do not open: tampered, truncated or for another token.
    #[error("sealed secret does not open under its master key")]
    Unsealable,
    /// The system random source failed.
    #[error("system random source failed")]
    Random,
    /// Reading or writing the key file failed.
    #[error("master key file {path}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: files::FileError,
    },
}

/// A token secret as stored: the id of the master key that sealed it and `nonce || ciphertext || tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Id of the master key that sealed it.
    pub key_id: String,
    /// Nonce, ciphertext and tag.
    pub sealed: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("len", &self.sealed.len())
            .finish()
    }
}

struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl MasterKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::BadMasterKey)?;
        let fingerprint = digest::digest(&digest::SHA256, bytes);
        let id = fingerprint.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| CryptoError::BadMasterKey)?,
        );
        if bytes.len() != 32 {
            return Err(CryptoError::BadMasterKey);
        }
        Self::from_bytes(&bytes)
    }
}

/// The master keys a server holds: one seals new secrets, all of them open old ones.
pub struct Keyring {
    current: MasterKey,
    retired: HashMap<String, MasterKey>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("retired", &self.retired.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn file_error(path: &Path, source: files::FileError) -> CryptoError {
    CryptoError::File {
        path: path.display().to_string(),
        source,
    }
}

impl Keyring {
    /// A keyring sealing with `current` (base64 of 32 bytes) and still opening with `retired`.
    pub fn from_base64(current: &str, retired: &[String]) -> Result<Self, CryptoError> {
        let current = MasterKey::from_base64(current)?;
        let retired = retired
            .iter()
            .map(|encoded| MasterKey::from_base64(encoded).map(|key| (key.id.clone(), key)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            current,
            retired,
            random: SystemRandom::new(),
        })
    }

    /// Reads the master key file of `data_dir`; `None` when there is none.
    pub fn load(data_dir: &Path, retired: &[String]) -> Result<Option<Self>, CryptoError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        match files::read_private(&path).map_err(|source| file_error(&path, source))? {
            Some(encoded) => Self::from_base64(&encoded, retired).map(Some),
            None => Ok(None),
        }
    }

    /// Generates a master key and writes it to `data_dir` (mode 0600, never overwriting).
    pub fn create(data_dir: &Path, retired: &[String]) -> Result<Self, CryptoError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| CryptoError::Random)?;
        let encoded = Zeroizing::new(STANDARD.encode(key.as_ref()));
        files::create_private(&path, |file| file.write_all(encoded.as_bytes()))
            .map_err(|source| file_error(&path, source))?;
        tracing::info!(path = %path.display(), "generated a new master key");
        Self::from_base64(&encoded, retired)
    }

    /// Whether this keyring has the key `key_id` (current or retired).
    pub fn has_key(&self, key_id: &str) -> bool {
        self.current.id == key_id || self.retired.contains_key(key_id)
    }

    /// Id of the key that seals new secrets.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `secret` for the token `token_id`.
    pub fn seal(&self, token_id: &str, secret: &TokenSecret) -> Result<SealedSecret, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut buffer = Vec::with_capacity(NONCE_LEN + secret.expose_secret().len() + 16);
        buffer.extend_from_slice(&nonce);
        let mut body = Zeroizing::new(secret.expose_secret().to_vec());
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(token_id.as_bytes()),
                &mut *body,
            )
            .map_err(|_| CryptoError::Unsealable)?;
        buffer.extend_from_slice(&body);
        Ok(SealedSecret {
            key_id: self.current.id.clone(),
            sealed: buffer,
        })
    }

    /// Opens the secret of the token `token_id`.
    pub fn open(&self, token_id: &str, sealed: &SealedSecret) -> Result<TokenSecret, CryptoError> {
        let key = if sealed.key_id == self.current.id {
            &self.current
        } else {
            self.retired
                .get(&sealed.key_id)
                .ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?
        };
        if sealed.sealed.len() < NONCE_LEN {
            return Err(CryptoError::Unsealable);
        }
        let (nonce, ciphertext) = sealed.sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unsealable)?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(token_id.as_bytes()), &mut buffer)
            .map_err(|_| CryptoError::Unsealable)?;
        TokenSecret::from_bytes(plain.to_vec()).map_err(|_| CryptoError::Unsealable)
    }

    /// Fills `out` from the system's secure random source.
    pub fn fill_random(&self, out: &mut [u8]) -> Result<(), CryptoError> {
        self.random.fill(out).map_err(|_| CryptoError::Random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn secret() -> TokenSecret {
        TokenSecret::from_bytes(vec![7; 32]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_secret() {
        let ring = Keyring::from_base64(KEY_A, &[]).unwrap();
        let sealed = ring.seal("tok_1", &secret()).unwrap();
        assert!(!sealed.sealed.windows(32).any(|w| w == [7; 32]));
        assert!(ring.open("tok_1", &sealed).unwrap().ct_eq(&secret()));
    }

    #[test]
    fn a_sealed_secret_is_bound_to_its_token_id_and_bytes() {
        let ring = Keyring::from_base64(KEY_A, &[]).unwrap();
        let mut sealed = ring.seal("tok_1", &secret()).unwrap();
        assert!(matches!(
            ring.open("tok_2", &sealed),
            Err(CryptoError::Unsealable)
        ));
        let last = sealed.sealed.len() - 1;
        sealed.sealed[last] ^= 1;
        assert!(matches!(
            ring.open("tok_1", &sealed),
            Err(CryptoError::Unsealable)
        ));
    }

    #[test]
    fn rotation_keeps_old_secrets_readable() {
        let old = Keyring::from_base64(KEY_A, &[]).unwrap();
        let sealed = old.seal("tok_1", &secret()).unwrap();
        let rotated = Keyring::from_base64(KEY_B, &[KEY_A.to_owned()]).unwrap();
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        assert!(rotated.open("tok_1", &sealed).unwrap().ct_eq(&secret()));
        let forgotten = Keyring::from_base64(KEY_B, &[]).unwrap();
        assert!(matches!(
            forgotten.open("tok_1", &sealed),
            Err(CryptoError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn master_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Keyring::load(dir.path(), &[]).unwrap().is_none());
        let first = Keyring::create(dir.path(), &[]).unwrap();
        let second = Keyring::load(dir.path(), &[]).unwrap().unwrap();
        assert!(
            Keyring::create(dir.path(), &[]).is_err(),
            "never overwrites a key"
        );
        assert_eq!(first.current_key_id(), second.current_key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn debug_names_key_ids_only() {
        let ring = Keyring::from_base64(KEY_A, &[]).unwrap();
        let printed = format!("{ring:?}");
        assert!(!printed.contains(KEY_A));
        assert!(printed.contains(ring.current_key_id()));
    }
}
