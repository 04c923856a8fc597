//! The identity extractor of capabilities and derive: the caller's partner profile, from the
//! Privy identity token the request presents.

use std::net::IpAddr;

use axum::{extract::FromRequestParts, http::request::Parts};

use super::error::ApiError;
use crate::{service::TokenService, store::PartnerProfile};

/// The partner profile of the caller's identity token, and the caller's address.
#[derive(Debug, Clone)]
pub struct CallerProfile(pub PartnerProfile, pub Option<IpAddr>);

impl FromRequestParts<TokenService> for CallerProfile {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &TokenService,
    ) -> Result<Self, ApiError> {
        let client = super::hmac::client_address(service, &parts.extensions, &parts.headers);
        Ok(CallerProfile(
            service.identify(&parts.headers, client).await?,
            client,
        ))
    }
}
