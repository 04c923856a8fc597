//! The endpoints of the API-token lifecycle (SPEC A1, and C2's rotation and introspection),
//! as thin adapters over the [`TokenService`]: HTTP in, a service call, HTTP out.

use axum::{
    body::{Body, Bytes},
    extract::{rejection::PathRejection, Path, State},
    http::{header, HeaderMap, StatusCode, Uri},
    response::IntoResponse,
    Extension, Json,
};
use lmts_core::wire::{
    DeriveApiTokenResponse, RevokeApiTokenResponse, TokenEventPage, FEATURES_HEADER,
    IDEMPOTENT_DERIVE,
};

use super::{body::read_body, error::ApiError, hmac::ClientAddress, identity::CallerProfile};
use crate::service::{TokenService, VerifiedToken};

/// What capabilities and derive answers say of this service's extensions: that a derive may
/// be repeated under its `Idempotency-Key` (SPEC C2), which SDKs rely on before retrying one.
const FEATURES: [(&str, &str); 1] = [(FEATURES_HEADER, IDEMPOTENT_DERIVE)];

/// `GET /auth/api-tokens/capabilities`.
pub async fn capabilities(
    State(service): State<TokenService>,
    CallerProfile(profile, _): CallerProfile,
) -> Result<impl IntoResponse, ApiError> {
    Ok((FEATURES, Json(service.capabilities(&profile).await?)))
}

/// `POST /auth/api-tokens/derive`: answers 201 with the secret, shown this once.
pub async fn derive(
    State(service): State<TokenService>,
    CallerProfile(profile, client): CallerProfile,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let body = read_body(&service, &headers, body).await?;
    let derived = service
        .derive(&profile, client, &headers, &body.bytes)
        .await?;
    Ok((StatusCode::CREATED, FEATURES, Json(derived)))
}

/// `GET /auth/api-tokens`: the caller's live tokens, oldest first.
pub async fn list(
    State(service): State<TokenService>,
    Extension(caller): Extension<VerifiedToken>,
) -> Result<impl IntoResponse, ApiError> {
    let body = service.list(&caller).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `DELETE /auth/api-tokens/{tokenId}`.
pub async fn revoke(
    State(service): State<TokenService>,
    Extension(caller): Extension<VerifiedToken>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    token_id: Result<Path<String>, PathRejection>,
) -> Result<Json<RevokeApiTokenResponse>, ApiError> {
    // A segment that does not percent-decode to text names no token: the service answers it
    // as it answers every id it does not know.
    let token_id = token_id.map(|Path(id)| id).unwrap_or_default();
    Ok(Json(service.revoke(&caller, client, &token_id).await?))
}

/// `POST /auth/api-tokens/{tokenId}/rotate` (SPEC C2): answers 201 with the successor's secret.
pub async fn rotate(
    State(service): State<TokenService>,
    Extension(caller): Extension<VerifiedToken>,
    Extension(ClientAddress(client)): Extension<ClientAddress>,
    token_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeriveApiTokenResponse>), ApiError> {
    let token_id = token_id.map(|Path(id)| id).unwrap_or_default();
    let rotated = service.rotate(&caller, client, &token_id, &body).await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}

/// `GET /auth/api-tokens/self` (SPEC C2): the calling token.
pub async fn current(
    State(service): State<TokenService>,
    Extension(caller): Extension<VerifiedToken>,
) -> Result<impl IntoResponse, ApiError> {
    let body = service.current(&caller).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `GET /auth/api-tokens/events` (SPEC C2): the partner's audit events after a cursor.
pub async fn events(
    State(service): State<TokenService>,
    Extension(caller): Extension<VerifiedToken>,
    uri: Uri,
) -> Result<Json<TokenEventPage>, ApiError> {
    Ok(Json(service.events(&caller, uri.query()).await?))
}
