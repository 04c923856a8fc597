//! The HTTP surface: routes, the HMAC middleware, the identity extractor, thin handlers over
//! the [`TokenService`], and the error shape.

mod body;
pub mod error;
pub mod gateway;
mod health;
mod hmac;
mod identity;
mod metrics;
pub mod openapi;
pub mod proxy;
mod tokens;

use axum::{
    http::Request,
    middleware,
    routing::{any, delete, get, post},
    Router,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

pub use hmac::require_hmac;

use crate::service::{Gateway, ServiceError, TokenService};
use error::ApiError;
use gateway::GatewayState;
use proxy::{ProxyState, Upstream};

/// Which doors a router opens besides `/health` and `/ready`.
#[derive(Debug, Clone)]
pub struct Doors {
    /// The four endpoints of SPEC A1 and `/openapi.json` (off for `lmts gateway`).
    pub token_endpoints: bool,
    /// The route policy: with the token endpoints it opens `/ext-authz` and `/forward-auth`,
    /// with an upstream it governs the proxy.
    pub gateway: Option<Gateway>,
    /// Where every route the router does not answer itself is proxied (needs a policy).
    pub upstream: Option<Upstream>,
    /// `GET /metrics` (off when it has a listener of its own).
    pub metrics: bool,
    /// The listener speaks TLS (the proxy tells the upstream `X-Forwarded-Proto: https`).
    pub tls: bool,
}

impl Default for Doors {
    fn default() -> Self {
        Self {
            token_endpoints: true,
            gateway: None,
            upstream: None,
            metrics: true,
            tls: false,
        }
    }
}

/// The token service's router: the four endpoints of SPEC A1, `/health`, `/ready` and
/// `/openapi.json`.
pub fn app(service: TokenService) -> Router {
    app_with(service, Doors::default())
}

/// `GET /metrics` alone, for its own listener (`--metrics-listen`).
pub fn metrics_app() -> Router {
    Router::new().route("/metrics", get(metrics::serve))
}

/// The router of `doors`.
pub fn app_with(service: TokenService, doors: Doors) -> Router {
    let mut proxied = false;
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(|| async { ApiError::from(ServiceError::NotFound("no such endpoint".into())) });
    if doors.token_endpoints {
        router = router.merge(token_routes(&service));
    }
    if doors.metrics {
        router = router.route("/metrics", get(metrics::serve));
    }
    if let Some(gateway) = doors.gateway {
        let state = GatewayState {
            service: service.clone(),
            gateway,
        };
        if doors.token_endpoints {
            router = router.merge(authorization_routes(state.clone()));
        }
        if let Some(upstream) = doors.upstream {
            proxied = true;
            router = router.fallback_service(Router::new().fallback(proxy::proxy).with_state(
                ProxyState {
                    gateway: state,
                    upstream,
                    client_scheme: if doors.tls { "https" } else { "http" },
                },
            ));
        }
    }
    let unmatched = if proxied { "proxy" } else { "unmatched" };
    router
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn(metrics::note_route))
        .layer(middleware::from_fn(move |request, next| {
            metrics::count(unmatched, request, next)
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(service)
}

/// The endpoints of SPEC A1 and the OpenAPI document.
fn token_routes(service: &TokenService) -> Router<TokenService> {
    let hmac_routes = Router::new()
        .route("/auth/api-tokens", get(tokens::list))
        .route("/auth/api-tokens/self", get(tokens::current))
        .route("/auth/api-tokens/events", get(tokens::events))
        .route("/auth/api-tokens/{token_id}", delete(tokens::revoke))
        .route("/auth/api-tokens/{token_id}/rotate", post(tokens::rotate))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            require_hmac,
        ));
    Router::new()
        .route("/auth/api-tokens/capabilities", get(tokens::capabilities))
        .route("/auth/api-tokens/derive", post(tokens::derive))
        .merge(hmac_routes)
        .route("/openapi.json", get(openapi::serve))
}

/// `ANY /ext-authz/{target}` and `ANY /forward-auth` (SPEC C1).
fn authorization_routes(state: GatewayState) -> Router<TokenService> {
    Router::new()
        .route("/ext-authz/", any(gateway::ext_authz))
        .route("/ext-authz/{*target}", any(gateway::ext_authz))
        .route("/forward-auth", any(gateway::forward_auth))
        .with_state(state)
}
