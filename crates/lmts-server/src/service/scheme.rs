//! Which authentication scheme a request presents (SPEC A1, A4, B2): a Privy identity token
//! for capabilities and derive, the three HMAC headers for everything else, never both. The
//! refusals name the scheme the endpoint takes.

use http::HeaderMap;
use lmts_core::signing::{HEADER_API_KEY, HEADER_IDENTITY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use super::ServiceError;

/// The deprecated scheme the published SDKs still know; refused by name.
const LEGACY_API_KEY: &str = "x-api-key";

const IDENTITY_SCHEME: &str =
    "this endpoint takes a Privy identity token in the identity header (identity: Bearer <token>)";

const HMAC_SCHEME: &str =
    "this endpoint takes HMAC authentication: lmts-api-key, lmts-timestamp and lmts-signature headers";

/// The three `lmts-*` header values of a signed request.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaderValues<'a> {
    /// `lmts-api-key`: the token id.
    pub api_key: &'a str,
    /// `lmts-timestamp`: the signing time as sent.
    pub timestamp: &'a str,
    /// `lmts-signature`: the base64 signature as sent.
    pub signature: &'a str,
}

/// The single value of header `name`: `None` when absent, refused when repeated or not text.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ServiceError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ServiceError::unauthenticated(format!(
            "header {name} must appear once"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| ServiceError::unauthenticated(format!("header {name} must be visible ASCII")))
}

/// The bearer token of the `identity` header, when the request presents that scheme alone.
pub fn identity_token(headers: &HeaderMap) -> Result<&str, ServiceError> {
    let hmac_present = [HEADER_API_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE]
        .iter()
        .any(|name| headers.contains_key(*name));
    let refusal = match (single_header(headers, HEADER_IDENTITY)?, hmac_present) {
        (Some(value), false) => return bearer(value),
        (Some(_), true) => {
            format!("{IDENTITY_SCHEME}; a request carries one authentication scheme, not two")
        }
        (None, true) => format!("{IDENTITY_SCHEME}, not HMAC headers"),
        (None, false) if headers.contains_key(LEGACY_API_KEY) => {
            format!("{IDENTITY_SCHEME}, not X-API-Key")
        }
        (None, false) => format!("missing authentication: {IDENTITY_SCHEME}"),
    };
    Err(ServiceError::Unauthenticated(refusal))
}

/// The token of `Bearer <token>`.
fn bearer(value: &str) -> Result<&str, ServiceError> {
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ServiceError::unauthenticated("identity header must be: Bearer <Privy identity token>")
        })
}

/// The three HMAC headers, when the request presents that scheme alone and completely.
pub fn signed_headers(headers: &HeaderMap) -> Result<SignedHeaderValues<'_>, ServiceError> {
    let api_key = single_header(headers, HEADER_API_KEY)?;
    let timestamp = single_header(headers, HEADER_TIMESTAMP)?;
    let signature = single_header(headers, HEADER_SIGNATURE)?;
    if headers.contains_key(HEADER_IDENTITY) {
        return Err(ServiceError::unauthenticated(format!(
            "{HMAC_SCHEME}, not an identity token"
        )));
    }
    let refusal = match (api_key, timestamp, signature) {
        (Some(api_key), Some(timestamp), Some(signature)) => {
            return Ok(SignedHeaderValues {
                api_key,
                timestamp,
                signature,
            })
        }
        (None, None, None) if headers.contains_key(LEGACY_API_KEY) => {
            format!("{HMAC_SCHEME}, not X-API-Key")
        }
        (None, None, None) => format!("missing authentication: {HMAC_SCHEME}"),
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
            format!(
                "incomplete HMAC authentication: missing header {}",
                missing.join(", ")
            )
        }
    };
    Err(ServiceError::Unauthenticated(refusal))
}
