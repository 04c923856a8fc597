//! HMAC authentication of the signed endpoints, as a middleware: it reads the three headers,
//! buffers the body within the limit and asks the service's [`Verifier`] about the raw request
//! target and raw body bytes. Handlers receive the [`VerifiedToken`] in the request's
//! extensions and never see an unauthenticated request.
//!
//! [`Verifier`]: crate::service::Verifier

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use http::{request::Parts, uri::PathAndQuery, Extensions, HeaderMap, Method, Uri};
use std::net::{IpAddr, SocketAddr};

use super::{body::read_body, error::ApiError};
use crate::service::{SignedHead, TokenService, VerifiedToken};

/// The middleware: verifies the request or answers the refusal itself. The head is checked
/// before a byte of body is read; the body only for a live token inside the window.
pub async fn require_hmac(
    State(service): State<TokenService>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let head = head_of(&service, &parts, &parts.method, raw_target(&parts.uri));
    let admitted = service.verifier().admit(head).await?;
    let body = read_body(&service, head.headers, body).await?;
    let token: VerifiedToken = admitted.verify(&body.bytes).await?;
    parts.extensions.insert(ClientAddress(head.client));
    parts.extensions.insert(token);
    let request = Request::from_parts(parts, Body::from(body.bytes.clone()));
    let response = next.run(request).await;
    drop(body);
    Ok(response)
}

/// The address of a signed request's client, as the verifier saw it: in the request's
/// extensions beside the [`VerifiedToken`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

/// The peer's address, when the server was started with connection info.
pub(super) fn peer_address(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The client's address: the peer's, or the one a trusted proxy forwarded for.
pub(super) fn client_address(
    service: &TokenService,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    service.client(peer_address(extensions), headers)
}

/// The request target exactly as received: path and query, never decoded.
pub(super) fn raw_target(uri: &Uri) -> &str {
    uri.path_and_query()
        .map_or_else(|| uri.path(), PathAndQuery::as_str)
}

/// The head the verifier reads: `method` on `target` (the request's own, or the original
/// request a gateway door describes) with the request's headers, client and time of arrival.
pub(super) fn head_of<'a>(
    service: &TokenService,
    parts: &'a Parts,
    method: &'a Method,
    target: &'a str,
) -> SignedHead<'a> {
    SignedHead {
        method,
        target,
        headers: &parts.headers,
        client: client_address(service, &parts.extensions, &parts.headers),
        now: service.now(),
    }
}
