//! GET /v1/models, GET /v1/models/{id}, POST /v1/models/{id}/unload,
//! POST /v1/models/{id}/reload, POST /v1/reload (every model)

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::{ModelInfo, ReloadOutcome};
use crate::AppState;

fn model_object(m: &ModelInfo, created: u64) -> Value {
    let mut v = json!({
        "id": m.name,
        "object": "model",
        "created": created,
        "owned_by": "outcore",
        "status": m.state,
    });
    // Which file is being served (to see a reload take effect); no paths are shown.
    if let Some(f) = m.files.first() {
        v["file"] = json!({
            "size": f.id.size,
            "inode": f.id.inode,
            "mtime": f.id.mtime.0,
            "mapped": f.mapped,
        });
    }
    v
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

fn reload_object(id: &str, outcome: &ReloadOutcome) -> Value {
    json!({
        "id": id,
        "object": "model",
        "reloaded": outcome.reloaded(),
        "detail": outcome.detail(),
    })
}

/// Maps the model's file again if it changed (dev, inode, mtime or size) since it was loaded.
/// Requests in flight finish on the old mapping. 503 if the new file does not load (the old one
/// keeps serving).
pub async fn reload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let outcome = state.registry.reload(&id).await?;
    Ok(Json(reload_object(&id, &outcome)))
}

/// Reloads every model whose file changed (what SIGHUP does). One entry per model; failures are
/// reported in their entry (`error`) and make the answer a 503.
pub async fn reload_all(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let results = state.registry.reload_all().await;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let data: Vec<Value> = results
        .iter()
        .map(|(id, r)| match r {
            Ok(o) => reload_object(id, o),
            Err(e) => {
                json!({"id": id, "object": "model", "reloaded": false, "error": e.body()["error"]})
            }
        })
        .collect();
    let status = if failed == 0 {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"object": "list", "data": data, "failed": failed})),
    )
        .into_response()
}
