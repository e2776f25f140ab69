//! GET /v1/models, GET /v1/models/{id}, POST /v1/models/{id}/unload

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::ModelInfo;
use crate::AppState;

fn model_object(m: &ModelInfo, created: u64) -> Value {
    json!({
        "id": m.name,
        "object": "model",
        "created": created,
        "owned_by": "outcore",
        "status": m.state,
    })
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .registry
        .models()
        .iter()
        .map(|m| model_object(m, state.started))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .registry
        .models()
        .iter()
        .find(|m| m.name == id)
        .map(|m| Json(model_object(m, state.started)))
        .ok_or_else(|| ApiError::model_not_found(&id))
}

pub async fn unload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let was_loaded = state.registry.unload(&id).await?;
    Ok(Json(
        json!({"id": id, "object": "model", "unloaded": was_loaded, "status": "unloaded"}),
    ))
}
