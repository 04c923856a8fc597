//! The API-token lifecycle of the seed documents (capabilities, derive, list, revoke) and of
//! SPEC C2 (rotation, introspection).

use crate::{client::Client, error::Error, response::ApiResponse};
use lmts_core::{
    addresses::MAX_ALLOWED_IPS,
    scope::{canonical_scopes, check_scope_rules},
    wire::{
        ApiToken, DeriveApiTokenInput, DeriveApiTokenResponse, PartnerCapabilities,
        RevokeApiTokenResponse, RotateApiTokenInput, TokenEventPage, IDEMPOTENCY_KEY,
        MAX_LABEL_CHARS, MAX_OVERLAP_SECONDS,
    },
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a path segment keeps unencoded: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The token lifecycle, on a [`Client`]. Capabilities and derive take a Privy identity token;
/// list and revoke sign with the client's HMAC credentials. Each is a [`Client::request`]
/// whose 2xx answer is decoded and whose other answers are [`Error::Api`].
#[derive(Debug, Clone, Copy)]
pub struct ApiTokens<'a> {
    client: &'a Client,
}

fn check_identity_token(token: &str) -> Result<&str, Error> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::InvalidInput("the identity token is empty".into()));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidInput(
            "the identity token contains whitespace".into(),
        ));
    }
    Ok(token)
}

/// The path of a token: `/auth/api-tokens/{tokenId}`, the id percent-encoded as one segment.
fn token_path(token_id: &str) -> Result<String, Error> {
    if token_id.is_empty() {
        return Err(Error::InvalidInput("the token id is empty".into()));
    }
    Ok(format!(
        "/auth/api-tokens/{}",
        utf8_percent_encode(token_id, SEGMENT)
    ))
}

/// The restriction `input` asked for that the answer does not carry, if any.
fn ignored_restrictions(
    input: &DeriveApiTokenInput,
    derived: &DeriveApiTokenResponse,
) -> Option<&'static str> {
    if input.expires_at.is_some() && derived.expires_at.is_none() {
        Some("expiresAt")
    } else if !input.allowed_ips.is_empty() && derived.allowed_ips.is_empty() {
        Some("allowedIps")
    } else {
        None
    }
}

fn check_derive_input(input: &DeriveApiTokenInput) -> Result<(), Error> {
    if let Some(label) = &input.label {
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(Error::InvalidInput(format!(
                "label is {chars} characters; at most {MAX_LABEL_CHARS} are allowed"
            )));
        }
    }
    if input.allowed_ips.len() > MAX_ALLOWED_IPS {
        return Err(Error::InvalidInput(format!(
            "allowed_ips holds {} blocks; at most {MAX_ALLOWED_IPS} are allowed",
            input.allowed_ips.len()
        )));
    }
    check_scope_rules(&canonical_scopes(input.scopes.iter().cloned()))
        .map_err(|rule| Error::InvalidInput(rule.to_owned()))
}

impl<'a> ApiTokens<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Self { client }
    }

    /// Whether token management is enabled for the partner, and which scopes it may request.
    pub async fn get_capabilities(
        &self,
        identity_token: &str,
    ) -> Result<PartnerCapabilities, Error> {
        self.get_capabilities_with_response(identity_token)
            .await
            .map(ApiResponse::into_body)
    }

    /// [`ApiTokens::get_capabilities`] with the response's status and headers.
    pub async fn get_capabilities_with_response(
        &self,
        identity_token: &str,
    ) -> Result<ApiResponse<PartnerCapabilities>, Error> {
        let token = check_identity_token(identity_token)?;
        self.client
            .get("/auth/api-tokens/capabilities")
            .identity(token)
            .send_decoded()
            .await
    }

    /// Derives a new scoped token. Its secret is in the answer, and only there: keep it.
    ///
    /// Sent with an `Idempotency-Key` of its own (SPEC C2), so that after a timeout or a lost
    /// connection it is retried safely, once the service has said it honours keys
    /// (`lmts-features: idempotent-derive`, on a capabilities or derive answer this client
    /// received): the service answers the first derive again instead of creating a second token. A service that ignores `expires_at` or `allowed_ips` (one
    /// without SPEC C2, such as the published API) gets the token it derived revoked, and the
    /// call fails with [`Error::Unsupported`]: a token is never handed back without the
    /// restrictions asked for.
    pub async fn derive_token(
        &self,
        identity_token: &str,
        input: DeriveApiTokenInput,
    ) -> Result<DeriveApiTokenResponse, Error> {
        self.derive_token_with_response(identity_token, input)
            .await
            .map(ApiResponse::into_body)
    }

    /// [`ApiTokens::derive_token`] with the response's status and headers.
    pub async fn derive_token_with_response(
        &self,
        identity_token: &str,
        input: DeriveApiTokenInput,
    ) -> Result<ApiResponse<DeriveApiTokenResponse>, Error> {
        let key = format!("lmts-sdk-{:032x}", fastrand::u128(..));
        self.derive_token_with_key(identity_token, input, &key)
            .await
    }

    /// [`ApiTokens::derive_token_with_response`] under the caller's `idempotency_key` (1 to 255
    /// visible ASCII characters): the same key and input within 24 hours answer the first
    /// derive again, also from another process (a bot restarted mid-derive).
    pub async fn derive_token_with_key(
        &self,
        identity_token: &str,
        input: DeriveApiTokenInput,
        idempotency_key: &str,
    ) -> Result<ApiResponse<DeriveApiTokenResponse>, Error> {
        let token = check_identity_token(identity_token)?;
        check_derive_input(&input)?;
        let derived = self
            .client
            .post("/auth/api-tokens/derive")
            .identity(token)
            .header(IDEMPOTENCY_KEY, idempotency_key)
            .json(&input)
            .send_decoded::<DeriveApiTokenResponse>()
            .await?;
        match ignored_restrictions(&input, derived.body()) {
            None => Ok(derived),
            Some(ignored) => Err(self.undo(derived.into_body(), ignored).await),
        }
    }

    /// Revokes a token derived without the restrictions asked for, and says so.
    async fn undo(&self, derived: DeriveApiTokenResponse, ignored: &str) -> Error {
        let scoped = self.client.with_credentials(derived.credentials());
        let revoked = scoped.api_tokens().revoke_token(&derived.token_id).await;
        let outcome = match revoked {
            Ok(_) => "it was revoked".to_owned(),
            Err(error) => format!("revoking it failed ({error}): revoke it yourself"),
        };
        Error::Unsupported(format!(
            "the service ignored {ignored} (it does not implement SPEC C2) and derived token {} without it; {outcome}",
            derived.token_id
        ))
    }

    /// Rotates a live token of the partner (SPEC C2): a successor with its label, scopes,
    /// addresses and expiry, whose secret the answer holds; the rotated token keeps working
    /// for `overlap` (the service's default, an hour, when `None`; at most a week) and then
    /// expires. Revoking it cuts the overlap short. Not retried once it may have reached the
    /// service.
    pub async fn rotate_token(
        &self,
        token_id: impl AsRef<str>,
        overlap: Option<std::time::Duration>,
    ) -> Result<DeriveApiTokenResponse, Error> {
        let overlap_seconds = overlap
            .map(|overlap| {
                u32::try_from(overlap.as_secs())
                    .ok()
                    .filter(|seconds| *seconds <= MAX_OVERLAP_SECONDS)
                    .ok_or_else(|| Error::InvalidInput("the overlap is longer than a week".into()))
            })
            .transpose()?;
        let input = RotateApiTokenInput { overlap_seconds };
        let path = format!("{}/rotate", token_path(token_id.as_ref())?);
        self.client
            .post(path)
            .json(&input)
            .send_decoded()
            .await
            .map(ApiResponse::into_body)
    }

    /// The calling token, as the list shows it (SPEC C2): its scopes, expiry and addresses.
    pub async fn current_token(&self) -> Result<ApiToken, Error> {
        self.client
            .get("/auth/api-tokens/self")
            .send_decoded()
            .await
            .map(ApiResponse::into_body)
    }

    /// The partner's audit events after `after` (a `next` of an earlier page; `None`: from the
    /// first), oldest first, at most `limit` (1 to 500; `None`: 100). Poll with the page's
    /// `next` to follow (SPEC C2).
    pub async fn events(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<TokenEventPage, Error> {
        let mut request = self.client.get("/auth/api-tokens/events");
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        if let Some(limit) = limit {
            request = request.query(&[("limit", limit)]);
        }
        request.send_decoded().await.map(ApiResponse::into_body)
    }

    /// The partner's live tokens (never their secrets).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, Error> {
        self.list_tokens_with_response()
            .await
            .map(ApiResponse::into_body)
    }

    /// [`ApiTokens::list_tokens`] with the response's status and headers.
    pub async fn list_tokens_with_response(&self) -> Result<ApiResponse<Vec<ApiToken>>, Error> {
        self.client.get("/auth/api-tokens").send_decoded().await
    }

    /// Revokes a token of the partner, effective at once; returns the service's message.
    pub async fn revoke_token(&self, token_id: impl AsRef<str>) -> Result<String, Error> {
        self.revoke_token_with_response(token_id)
            .await
            .map(|response| response.into_body().message)
    }

    /// [`ApiTokens::revoke_token`] with the response's status and headers.
    pub async fn revoke_token_with_response(
        &self,
        token_id: impl AsRef<str>,
    ) -> Result<ApiResponse<RevokeApiTokenResponse>, Error> {
        self.client
            .delete(token_path(token_id.as_ref())?)
            .send_decoded()
            .await
    }
}

#[cfg(test)]
mod tests {
    use lmts_core::Scope;

    use super::*;

    #[test]
    fn token_ids_are_encoded_as_one_segment() {
        assert_eq!(
            utf8_percent_encode("tok/with spaces", SEGMENT).to_string(),
            "tok%2Fwith%20spaces"
        );
        assert_eq!(
            utf8_percent_encode("lmts_a-b.c~d", SEGMENT).to_string(),
            "lmts_a-b.c~d"
        );
    }

    #[test]
    fn input_is_checked_before_sending() {
        assert!(check_identity_token("  ").is_err());
        assert!(check_identity_token("a b").is_err());
        assert_eq!(check_identity_token(" abc ").unwrap(), "abc");
        let long = DeriveApiTokenInput {
            label: Some("é".repeat(129)),
            scopes: vec![],
            ..Default::default()
        };
        assert!(check_derive_input(&long).is_err());
        let at_limit = DeriveApiTokenInput {
            label: Some("é".repeat(128)),
            scopes: vec![],
            ..Default::default()
        };
        assert!(check_derive_input(&at_limit).is_ok());
        let orphan = DeriveApiTokenInput {
            label: None,
            scopes: vec![Scope::DelegatedSigning],
            ..Default::default()
        };
        assert!(matches!(
            check_derive_input(&orphan),
            Err(Error::InvalidInput(_))
        ));
        let block = |i: u8| format!("10.0.{i}.0/24").parse().unwrap();
        let many = |count: u8| DeriveApiTokenInput {
            allowed_ips: (0..count).map(block).collect(),
            ..Default::default()
        };
        assert!(check_derive_input(&many(32)).is_ok());
        assert!(matches!(
            check_derive_input(&many(33)),
            Err(Error::InvalidInput(message)) if message.contains("at most 32")
        ));
    }
}
