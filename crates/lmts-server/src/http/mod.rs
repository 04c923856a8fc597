//! The HTTP surface: routes, the HMAC middleware, the identity extractor, thin handlers over
//! the [`TokenService`], and the error shape.

mod body;
pub mod error;
mod health;
mod hmac;
mod identity;
pub mod openapi;
mod tokens;

use axum::{
    http::Request,
    middleware,
    routing::{delete, get, post},
    Router,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

pub use hmac::require_hmac;

use crate::service::{ServiceError, TokenService};
use error::ApiError;

/// The service's router: the four endpoints of SPEC A1, `/health`, `/ready` and
/// `/openapi.json`.
pub fn app(service: TokenService) -> Router {
    let hmac_routes = Router::new()
        .route("/auth/api-tokens", get(tokens::list))
        .route("/auth/api-tokens/{token_id}", delete(tokens::revoke))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            require_hmac,
        ));
    Router::new()
        .route("/auth/api-tokens/capabilities", get(tokens::capabilities))
        .route("/auth/api-tokens/derive", post(tokens::derive))
        .merge(hmac_routes)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::from(ServiceError::NotFound("no such endpoint".into())) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
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
