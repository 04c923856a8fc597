//! Liveness and readiness.

use axum::{extract::State, Json};
use serde_json::{json, Value};

use super::error::ApiError;
use crate::state::AppState;

/// `GET /health`: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /ready`: the database answers too.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}
