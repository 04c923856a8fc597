//! Secret newtypes: redacted in `Debug`, zeroized on drop, compared in constant time, and
//! read only through an explicit `expose_secret()`.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// What `Debug` prints in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The text is not standard base64 with padding.
    #[error("secret is not standard base64 with padding")]
    NotBase64,
    /// The secret decodes to no bytes at all.
    #[error("secret is empty")]
    Empty,
}

/// The HMAC key of an API token: the `secret` the service shows once at derive.
///
/// Holds the decoded key bytes; the wire form is standard base64 with padding.
#[derive(Clone)]
pub struct TokenSecret(Zeroizing<Vec<u8>>);

impl TokenSecret {
    /// Length in bytes of the secrets the lmts service issues.
    pub const ISSUED_LEN: usize = 32;

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(bytes))
    }

    /// Decodes the wire form (standard base64 with padding).
    pub fn from_base64(encoded: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(encoded.as_bytes())
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(bytes)
    }

    /// The raw key bytes. Every read of a secret goes through here, so it is easy to audit.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The wire form, standard base64 with padding, zeroized when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.expose_secret()))
    }

    /// Compares two secrets in constant time.
    pub fn ct_eq(&self, other: &TokenSecret) -> bool {
        bool::from(self.expose_secret().ct_eq(other.expose_secret()))
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for TokenSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for TokenSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut encoded = String::deserialize(deserializer)?;
        let secret = TokenSecret::from_base64(&encoded).map_err(serde::de::Error::custom);
        encoded.zeroize();
        secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = TokenSecret::from_base64("c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        let printed = format!("{secret:?} {:?}", Some(secret.clone()));
        assert!(!printed.contains("c3VwZXI"));
        assert!(!printed.contains("super"));
        assert_eq!(printed, "[redacted] Some([redacted])");
    }

    #[test]
    fn base64_round_trip_and_strictness() {
        let secret = TokenSecret::from_base64("c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        assert_eq!(secret.expose_secret(), b"super-secret-key");
        assert_eq!(&*secret.to_base64(), "c3VwZXItc2VjcmV0LWtleQ==");
        assert_eq!(
            TokenSecret::from_base64("c3VwZXItc2VjcmV0LWtleQ").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            TokenSecret::from_base64("").unwrap_err(),
            SecretError::Empty
        );
    }

    #[test]
    fn constant_time_equality() {
        let a = TokenSecret::from_bytes(vec![1; 32]).unwrap();
        let b = TokenSecret::from_bytes(vec![1; 32]).unwrap();
        let c = TokenSecret::from_bytes(vec![2; 32]).unwrap();
        assert!(a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
    }
}
