//! `GET /metrics` in the Prometheus text format, and the layers that count every answer by
//! the route the router matched (its pattern, so the labels stay few), method and status.

use std::time::Instant;

use metrics::SharedString;

use axum::{
    extract::{MatchedPath, Request},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::telemetry;

/// The route of an answer, as the router matched it: carried from the inner layer, which sees
/// the match, to the outer one, which sees every answer.
#[derive(Debug, Clone)]
struct Route(MatchedPath);

/// `GET /metrics`.
pub async fn serve() -> Response {
    match telemetry::recorder() {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
                .into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are off\n").into_response(),
    }
}

/// Inner layer (on the matched routes): notes the route on the answer.
pub async fn note_route(route: MatchedPath, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Route(route));
    response
}

/// Outer layer (on every request): counts the answer, and the time to its head. An answer
/// no route matched is the proxy's (`fallback` names it).
pub async fn count(fallback: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = response.extensions().get::<Route>().map_or_else(
        || SharedString::const_str(fallback),
        |Route(route)| route_label(route.as_str()),
    );
    telemetry::answered(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// The router's route patterns (`super::app_with`), as labels that cost no allocation per
/// answer; a pattern missing here is labelled all the same, at the cost of one.
const ROUTES: [&str; 14] = [
    "/metrics",
    "/health",
    "/ready",
    "/auth/api-tokens",
    "/auth/api-tokens/self",
    "/auth/api-tokens/events",
    "/auth/api-tokens/{token_id}",
    "/auth/api-tokens/{token_id}/rotate",
    "/auth/api-tokens/capabilities",
    "/auth/api-tokens/derive",
    "/openapi.json",
    "/ext-authz/",
    "/ext-authz/{*target}",
    "/forward-auth",
];

/// The label of the route pattern `route`.
fn route_label(route: &str) -> SharedString {
    ROUTES.iter().find(|known| **known == route).map_or_else(
        || SharedString::from_owned(route.to_owned()),
        |known| SharedString::const_str(known),
    )
}

/// A method as a label: the standard ones by name, any other as `other` (labels stay few).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::ROUTES;

    #[test]
    fn every_route_of_the_router_has_its_label() {
        let router = include_str!("mod.rs");
        let patterns: Vec<&str> = router
            .split(".route(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(patterns.len() >= ROUTES.len(), "{patterns:?}");
        for pattern in patterns {
            assert!(ROUTES.contains(&pattern), "{pattern} has no label");
        }
    }
}
