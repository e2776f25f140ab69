//! POST /v1/completions

use axum::extract::State;
use axum::response::Response;

use super::generate::{generate, Input, Kind};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openai::GenerationRequest;
use crate::AppState;

pub async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<GenerationRequest>,
) -> Result<Response, ApiError> {
    let params = req.params()?;
    let input = Input::Prompt(req.prompt_input()?);
    generate(state, req.model, input, params, Kind::Completion).await
}
