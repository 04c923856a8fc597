//! The gateway's doors over HTTP (SPEC C1): `ANY /ext-authz/{target}` for Envoy's `ext_authz`,
//! `ANY /forward-auth` for Traefik's `forwardAuth` and alike, and the verifying reverse proxy
//! ([`super::proxy`]). Each describes the original request as a [`SignedHead`] and passes it
//! through [`pass`]; the rules are the [`Gateway`]'s and the [`Verifier`]'s.
//!
//! [`Verifier`]: crate::service::Verifier

use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{
    body::{read_body, ReceivedBody},
    error::ApiError,
    hmac::{head_of, raw_target},
};
use crate::service::{
    gateway::GRANT_HEADERS_BOTH_SPELLINGS, Gateway, Grant, Passage, ServiceError, SignedHead,
    TokenService,
};

/// The prefix Envoy is configured with (`path_prefix`): what follows it is the original target.
pub const EXT_AUTHZ_PREFIX: &str = "/ext-authz";

/// Envoy's `ext_authz` reads this answer header as the list of headers to remove from the
/// request it forwards: a public route's grant is that no client copy of ours survives.
const ENVOY_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// What the gateway's doors share.
#[derive(Debug, Clone)]
pub struct GatewayState {
    /// The token service, for its verifier and limits.
    pub service: TokenService,
    /// The route policy.
    pub gateway: Gateway,
}

/// The body of a request that passed: still unread (a public route's, streamed on), or read
/// whole because its signature covers it.
#[derive(Debug)]
pub enum PassedBody {
    /// Not read.
    Stream(Body),
    /// Read and verified; the allowance is held until the request is done.
    Read(ReceivedBody),
}

/// The one path through the gateway: the policy's decision, then (unless the route is public)
/// the signature over the head and the body, then the route's scopes.
pub async fn pass(
    state: &GatewayState,
    head: SignedHead<'_>,
    body: Body,
) -> Result<(Grant, PassedBody), ApiError> {
    let scopes = match state.gateway.passage(head.method.as_str(), head.target)? {
        Passage::Public => return Ok((Grant::Public, PassedBody::Stream(body))),
        Passage::Signed(scopes) => scopes,
    };
    let admitted = state.service.verifier().admit(head).await?;
    let body = read_body(&state.service, head.headers, body).await?;
    let token = admitted.verify(&body.bytes).await?;
    Ok((Gateway::authorize(token, scopes)?, PassedBody::Read(body)))
}

/// `ANY /ext-authz/{target}`: Envoy's check of the original request, whose target follows the
/// prefix exactly as received and whose body Envoy forwards (`with_request_body`).
pub async fn ext_authz(State(state): State<GatewayState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = match raw_target(&parts.uri).strip_prefix(EXT_AUTHZ_PREFIX) {
        Some(target) if target.starts_with('/') => target,
        _ => {
            return ApiError::from(ServiceError::NotFound(format!(
                "the original target follows {EXT_AUTHZ_PREFIX}/"
            )))
            .into_response()
        }
    };
    let head = head_of(&state.service, &parts, &parts.method, target);
    answer(pass(&state, head, body).await, true)
}

/// `ANY /forward-auth`: the original request described by `X-Forwarded-Method` and
/// `X-Forwarded-Uri`, its body forwarded as is (Traefik's `forwardBody: true`).
pub async fn forward_auth(State(state): State<GatewayState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, target) = match forwarded_request(&parts.headers) {
        Ok(described) => described,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let head = head_of(&state.service, &parts, &method, target);
    answer(pass(&state, head, body).await, false)
}

/// The method and target a forward-auth request describes.
fn forwarded_request(headers: &HeaderMap) -> Result<(Method, &str), ServiceError> {
    let text = |name: &str| {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(ServiceError::invalid(format!(
                "{name} is repeated: the proxy must set it, not append to the client's"
            )));
        }
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "{name} is required: the proxy describes the original request with X-Forwarded-Method and X-Forwarded-Uri"
                ))
            })
    };
    let method = Method::from_bytes(text("x-forwarded-method")?.as_bytes())
        .map_err(|_| ServiceError::invalid("X-Forwarded-Method is not an HTTP method"))?;
    let target = text("x-forwarded-uri")?;
    if !target.starts_with('/') {
        return Err(ServiceError::invalid(
            "X-Forwarded-Uri must be the original request target (path and query, from /)",
        ));
    }
    Ok((method, target))
}

/// The answer of an authorization door: 200 with the grant's headers, or the refusal.
fn answer(passed: Result<(Grant, PassedBody), ApiError>, for_envoy: bool) -> Response {
    let grant = match passed {
        Ok((grant, _body)) => grant,
        Err(error) => return error.into_response(),
    };
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    grant.apply_to(headers);
    if for_envoy && matches!(grant, Grant::Public) {
        headers.insert(
            ENVOY_HEADERS_TO_REMOVE,
            HeaderValue::from_static(GRANT_HEADERS_BOTH_SPELLINGS),
        );
    }
    response
}
