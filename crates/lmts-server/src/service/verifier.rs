//! The one check of a signed request (SPEC A4, B5 to B7, B13), whichever door it came through:
//! the token endpoints' middleware calls it, and so will the gateway. It takes the parts of
//! the request as received and answers the token that signed it, or why not.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};
use http::Method;
use lmts_core::signing::{CanonicalMessage, VerifyError};

use super::{caches::CachedToken, scheme::SignedHeaderValues, Core, ServiceError};

/// The token that signed a request: its cached verification state (id, profile, scopes),
/// shared rather than copied per request.
#[derive(Debug, Clone)]
pub struct VerifiedToken(Arc<CachedToken>);

impl std::ops::Deref for VerifiedToken {
    type Target = CachedToken;

    fn deref(&self) -> &CachedToken {
        &self.0
    }
}

/// The parts of a signed request, exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target: path and query as sent on the wire, never decoded.
    pub target: &'a str,
    /// The three `lmts-*` headers.
    pub headers: SignedHeaderValues<'a>,
    /// The raw body bytes.
    pub body: &'a [u8],
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The time of arrival.
    pub now: DateTime<Utc>,
}

/// Verifies signed requests: window, signature (constant time), revocation, rate limit and
/// the replay record. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier(pub(super) Arc<Core>);

const UNKNOWN_TOKEN: &str = "unknown or revoked API token";

impl Verifier {
    /// The token that signed `request`, or why it is refused.
    pub async fn verify(&self, request: &SignedRequest<'_>) -> Result<VerifiedToken, ServiceError> {
        let result = self.check(request).await;
        if let Err(error) = &result {
            tracing::debug!(client = ?request.client, token_id = request.headers.api_key, %error, "signed request refused");
        }
        result
    }

    async fn check(&self, request: &SignedRequest<'_>) -> Result<VerifiedToken, ServiceError> {
        let core = &self.0;
        let headers = &request.headers;
        let token = core
            .caches
            .token(core.store.as_ref(), &core.keyring, headers.api_key)
            .await?
            .ok_or_else(|| ServiceError::unauthenticated(UNKNOWN_TOKEN))?;
        let message = CanonicalMessage::new(
            headers.timestamp,
            request.method.as_str(),
            request.target,
            request.body,
        );
        let window = core.settings.window;
        let verified = token
            .signer
            .verify(&message, headers.signature, request.now, window)
            .map_err(refusal)?;
        Core::check_rate(&core.token_rates, &token.token_id)?;
        if is_state_changing(request.method) {
            let expires_at = verified.signed_at() + window;
            let fresh = core
                .store
                .record_signature(
                    token.token_id.as_str(),
                    verified.signature.as_bytes(),
                    expires_at,
                )
                .await?;
            if !fresh {
                return Err(ServiceError::unauthenticated(
                    "replayed request: this signature was already accepted; sign each request afresh",
                ));
            }
        }
        core.usage.record(&token.token_id, request.now);
        Ok(VerifiedToken(token))
    }
}

/// Whether a request changes state, so that its signature is remembered (SPEC B6).
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The refusal of a signature check, in words a client can act on.
fn refusal(error: VerifyError) -> ServiceError {
    let message = match error {
        VerifyError::MalformedTimestamp => {
            "lmts-timestamp is not an RFC 3339 date-time (e.g. 2026-03-23T12:34:56.789Z)".to_owned()
        }
        VerifyError::OutsideWindow { skew_ms, window_ms } => format!(
            "lmts-timestamp is {:.1} s {} server time, outside the window of {} s; check the client's clock",
            skew_ms.unsigned_abs() as f64 / 1000.0,
            if skew_ms > 0 { "ahead of" } else { "behind" },
            window_ms / 1000
        ),
        VerifyError::MalformedSignature => {
            "lmts-signature is not standard base64 (with padding) of an HMAC-SHA256".to_owned()
        }
        _ => "lmts-signature does not match the request".to_owned(),
    };
    ServiceError::Unauthenticated(message)
}
