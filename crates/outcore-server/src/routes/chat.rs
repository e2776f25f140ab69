//! POST /v1/chat/completions

use axum::extract::State;
use axum::response::Response;

use super::generate::{generate, Input, Kind};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openai::GenerationRequest;
use crate::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<GenerationRequest>,
) -> Result<Response, ApiError> {
    let params = req.params()?;
    let input = Input::Chat(req.chat_messages()?);
    generate(state, req.model, input, params, Kind::Chat).await
}
