//! GET /health, GET /metrics, and the fallbacks.

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::metrics::{render, ModelRow};
use crate::AppState;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let models = state.registry.models();
    let loaded = models.iter().filter(|m| m.loaded).count();
    Json(json!({"status": "ok", "models": models.len(), "loaded": loaded}))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let models = state.registry.models();
    let rows: Vec<ModelRow<'_>> = models
        .iter()
        .map(|m| ModelRow {
            name: &m.name,
            loaded: m.loaded,
            memory: m.memory,
            stats: &m.stats,
        })
        .collect();
    let text = render(&rows, &state.http, state.registry.queue.waiting());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::bad_request(format!("Method {method} is not allowed on {}", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_code("method_not_allowed")
}
