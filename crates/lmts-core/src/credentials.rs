//! The pair that signs requests: a token id and its secret.

use crate::{
    secret::{SecretError, TokenSecret},
    signing::Signer,
    wire::{DeriveApiTokenResponse, TokenId},
};

/// HMAC credentials of one API token. `Debug` shows the token id only.
#[derive(Debug, Clone)]
pub struct HmacCredentials {
    /// The token id, sent as `lmts-api-key`.
    pub token_id: TokenId,
    /// The HMAC key.
    pub secret: TokenSecret,
}

impl HmacCredentials {
    /// Credentials from a token id and the secret's wire form (standard base64).
    pub fn new(token_id: impl Into<String>, secret_base64: &str) -> Result<Self, SecretError> {
        Ok(Self {
            token_id: TokenId::new(token_id),
            secret: TokenSecret::from_base64(secret_base64)?,
        })
    }

    /// A signer with the key prepared once.
    pub fn signer(&self) -> Signer {
        Signer::new(&self.secret)
    }
}

impl DeriveApiTokenResponse {
    /// The credentials of the derived token, ready for a signing client.
    pub fn credentials(&self) -> HmacCredentials {
        HmacCredentials {
            token_id: self.token_id.clone(),
            secret: self.secret.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_id_but_not_the_secret() {
        let credentials = HmacCredentials::new("tok_1", "c3VwZXItc2VjcmV0LWtleQ==").unwrap();
        let printed = format!("{credentials:?}");
        assert!(printed.contains("tok_1"), "{printed}");
        assert!(!printed.contains("c3VwZXI"), "{printed}");
        assert!(HmacCredentials::new("tok_1", "%%%").is_err());
    }
}
