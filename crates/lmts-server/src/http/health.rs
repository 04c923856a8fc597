//! Liveness and readiness.

use axum::{extract::State, Json};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::service::TokenService;

/// `GET /health`: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: the database answers too.
pub async fn ready(State(service): State<TokenService>) -> Result<Json<Value>, ApiError> {
    service.ready().await?;
    Ok(Json(json!({ "status": "ready" })))
}
