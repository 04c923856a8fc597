//! The identity extractor of capabilities and derive: a verified Privy identity token, mapped
//! to the caller's partner profile (created on first sight).

use axum::{extract::FromRequestParts, http::request::Parts};
use lmts_core::signing::{HEADER_API_KEY, HEADER_IDENTITY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use super::error::ApiError;
use crate::{
    auth::{hmac::single_header, identity::IdentityError},
    state::AppState,
    store::PartnerProfile,
};

/// The partner profile of the caller's identity token.
#[derive(Debug, Clone)]
pub struct CallerProfile(pub PartnerProfile);

const IDENTITY_SCHEME: &str =
    "this endpoint takes a Privy identity token in the identity header (identity: Bearer <token>)";

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::NoWallet => ApiError::Forbidden(error.to_string()),
            IdentityError::KeysUnavailable(_) => {
                tracing::warn!(error = %super::error::error_chain(&error), "identity keys unavailable");
                ApiError::Unavailable(
                    "identity verification keys are unavailable; try again shortly".into(),
                )
            }
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl FromRequestParts<AppState> for CallerProfile {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hmac_present = [HEADER_API_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE]
            .iter()
            .any(|name| parts.headers.contains_key(*name));
        let value = single_header(&parts.headers, HEADER_IDENTITY)?;
        let value = match (value, hmac_present) {
            (Some(_), true) => {
                return Err(ApiError::unauthorized(format!(
                    "{IDENTITY_SCHEME}; a request carries one authentication scheme, not two"
                )))
            }
            (Some(value), false) => value,
            (None, true) => {
                return Err(ApiError::unauthorized(format!(
                    "{IDENTITY_SCHEME}, not HMAC headers"
                )))
            }
            (None, false) if parts.headers.contains_key("x-api-key") => {
                return Err(ApiError::unauthorized(format!(
                    "{IDENTITY_SCHEME}, not X-API-Key"
                )))
            }
            (None, false) => {
                return Err(ApiError::unauthorized(format!(
                    "missing authentication: {IDENTITY_SCHEME}"
                )))
            }
        };
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("identity header must be: Bearer <Privy identity token>")
            })?;
        let now = state.clock.now();
        let identity = state.identity.verify(token, now).await?;
        state.check_rate(&identity.subject)?;
        let profile = state
            .store
            .upsert_profile(&identity.subject, &identity.account, now)
            .await?;
        Ok(CallerProfile(profile))
    }
}
