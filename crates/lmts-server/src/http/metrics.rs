//! `GET /metrics` in the Prometheus text format, and the layers that count every answer by
//! the route the router matched (its pattern, so the labels stay few), method and status.

use std::{sync::Arc, time::Instant};

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
        |Route(route)| SharedString::from_shared(Arc::from(route.as_str())),
    );
    telemetry::answered(route, method, response.status().as_u16(), started.elapsed());
    response
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
