//! HMAC authentication of list and revoke (SPEC A4, B5 to B7, B13), as a middleware: it
//! buffers the body within the limit, verifies the raw request target and raw body bytes, and
//! hands handlers a [`VerifiedToken`]. Handlers never see an unauthenticated request.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderMap, Method};
use lmts_core::{
    signing::{
        CanonicalMessage, VerifyError, HEADER_API_KEY, HEADER_IDENTITY, HEADER_SIGNATURE,
        HEADER_TIMESTAMP,
    },
    Signer,
};

use crate::{
    http::{body::read_body, error::ApiError},
    state::AppState,
    token_cache::CachedToken,
};

/// The token that signed the request, put into the request's extensions: its cached
/// verification state (id, profile, scopes), shared rather than copied per request.
#[derive(Debug, Clone)]
pub struct VerifiedToken(pub Arc<CachedToken>);

impl std::ops::Deref for VerifiedToken {
    type Target = CachedToken;

    fn deref(&self) -> &CachedToken {
        &self.0
    }
}

/// The three `lmts-*` header values of a request.
struct SignedHeaderValues<'a> {
    api_key: &'a str,
    timestamp: &'a str,
    signature: &'a str,
}

/// The single value of header `name`: `None` when absent, 401 when repeated or not text.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::unauthorized(format!(
            "header {name} must appear once"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| ApiError::unauthorized(format!("header {name} must be visible ASCII")))
}

const HMAC_SCHEME: &str =
    "this endpoint takes HMAC authentication: lmts-api-key, lmts-timestamp and lmts-signature headers";

fn signed_headers(headers: &HeaderMap) -> Result<SignedHeaderValues<'_>, ApiError> {
    let api_key = single_header(headers, HEADER_API_KEY)?;
    let timestamp = single_header(headers, HEADER_TIMESTAMP)?;
    let signature = single_header(headers, HEADER_SIGNATURE)?;
    if headers.contains_key(HEADER_IDENTITY) {
        return Err(ApiError::unauthorized(format!(
            "{HMAC_SCHEME}, not an identity token"
        )));
    }
    match (api_key, timestamp, signature) {
        (Some(api_key), Some(timestamp), Some(signature)) => Ok(SignedHeaderValues {
            api_key,
            timestamp,
            signature,
        }),
        (None, None, None) if headers.contains_key("x-api-key") => Err(ApiError::unauthorized(
            format!("{HMAC_SCHEME}, not X-API-Key"),
        )),
        (None, None, None) => Err(ApiError::unauthorized(format!(
            "missing authentication: {HMAC_SCHEME}"
        ))),
        _ => {
            let missing: Vec<&str> = [
                (HEADER_API_KEY, api_key),
                (HEADER_TIMESTAMP, timestamp),
                (HEADER_SIGNATURE, signature),
            ]
            .into_iter()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
            Err(ApiError::unauthorized(format!(
                "incomplete HMAC authentication: missing header {}",
                missing.join(", ")
            )))
        }
    }
}

const UNKNOWN_TOKEN: &str = "unknown or revoked API token";

/// The verification state of `token_id`: from the cache, else loaded, decrypted and cached.
async fn load_token(state: &AppState, token_id: &str) -> Result<Arc<CachedToken>, ApiError> {
    if let Some(cached) = state.tokens.get(token_id) {
        return Ok(cached);
    }
    let generation = state.tokens.generation();
    let credentials = state
        .store
        .token_credentials(token_id)
        .await?
        .filter(|credentials| !credentials.revoked)
        .ok_or_else(|| ApiError::unauthorized(UNKNOWN_TOKEN))?;
    let secret = state.keyring.open(token_id, &credentials.sealed)?;
    let entry = Arc::new(CachedToken {
        token_id: credentials.token_id,
        profile: credentials.profile,
        scopes: credentials.scopes,
        signer: Signer::new(&secret),
    });
    state
        .tokens
        .insert(generation, entry.token_id.clone(), entry.clone());
    Ok(entry)
}

fn verify_error(error: VerifyError) -> ApiError {
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
    ApiError::Unauthorized(message)
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: verifies the request or answers 401/413 itself.
pub async fn require_hmac(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let headers = signed_headers(&parts.headers)?;
    let body = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
    let token = load_token(&state, headers.api_key).await?;
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |target| target.as_str());
    let message = CanonicalMessage::new(headers.timestamp, parts.method.as_str(), target, &body);
    let window = state.settings.window;
    let now = state.clock.now();
    let verified = token
        .signer
        .verify(&message, headers.signature, now, window)
        .map_err(verify_error)?;
    state.check_rate(token.token_id.as_str())?;
    if is_state_changing(&parts.method) {
        let fresh = state
            .store
            .record_signature(
                token.token_id.as_str(),
                verified.signature.as_bytes(),
                verified.signed_at() + window,
            )
            .await?;
        if !fresh {
            return Err(ApiError::unauthorized(
                "replayed request: this signature was already accepted; sign each request afresh",
            ));
        }
    }
    state.usage.record(&token.token_id, now);
    parts.extensions.insert(VerifiedToken(token));
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}
