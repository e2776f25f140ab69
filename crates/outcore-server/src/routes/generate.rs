//! The shared generation path: queue ticket -> model lease (loads on demand) -> prompt tokens ->
//! job for the worker -> an SSE stream or one JSON response from the job's event channel.
//!
//! Dropping the response (client gone) drops the event receiver, which the worker notices at its
//! next step and frees the slot.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::engine::ChatMessage;
use crate::error::ApiError;
use crate::openai::{new_id, unix_time, GenParams, PromptInput};
use crate::registry::Lease;
use crate::worker::{Event, Finish, Job};
use crate::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Completion,
    Chat,
}

pub enum Input {
    Prompt(PromptInput),
    Chat(Vec<ChatMessage>),
}

impl Kind {
    fn input_param(self) -> &'static str {
        match self {
            Kind::Completion => "prompt",
            Kind::Chat => "messages",
        }
    }
}

/// Tokens for the input; rendering and tokenizing run on a blocking thread.
async fn prompt_tokens(lease: &Lease, input: Input, kind: Kind) -> Result<Vec<u32>, ApiError> {
    let engine = lease.model.engine.clone();
    let param = kind.input_param();
    let tokens = tokio::task::spawn_blocking(move || match input {
        Input::Prompt(PromptInput::Tokens(t)) => Ok(t),
        Input::Prompt(PromptInput::Text(text)) => engine.tokenize(&text),
        Input::Chat(messages) => engine
            .render_chat(&messages)
            .and_then(|text| engine.tokenize(&text)),
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
    .map_err(|e| ApiError::invalid(param, format!("Could not prepare the {param}: {e}")))?;
    let n_vocab = lease.model.engine.n_vocab();
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid(
            param,
            format!("Token id {bad} is out of range (the vocabulary has {n_vocab})"),
        ));
    }
    if tokens.is_empty() {
        return Err(ApiError::invalid(param, format!("The {param} is empty")));
    }
    Ok(tokens)
}

pub async fn generate(
    state: AppState,
    model: String,
    input: Input,
    params: GenParams,
    kind: Kind,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    let stats = registry
        .stats(&model)
        .ok_or_else(|| ApiError::model_not_found(&model))?;
    let ticket = registry
        .queue
        .ticket(stats)
        .ok_or_else(|| ApiError::queue_full(registry.queue.max()))?;
    let lease = registry.acquire(&model).await?;
    let tokens = prompt_tokens(&lease, input, kind).await?;
    let n_ctx = lease.model.engine.n_ctx();
    if tokens.len() >= n_ctx {
        return Err(ApiError::invalid(
            kind.input_param(),
            format!(
                "This model's maximum context length is {n_ctx} tokens, but the {} has {} tokens",
                kind.input_param(),
                tokens.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    if let Some(m) = params.max_tokens {
        if m > n_ctx {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("'max_tokens' is {m}, more than the context length of {n_ctx} tokens"),
            )
            .with_code("invalid_value"));
        }
    }
    let room = n_ctx - tokens.len();
    let max_tokens = params.max_tokens.map_or(room, |m| m.min(room));
    let (tx, rx) = unbounded_channel();
    lease.model.submit(Job {
        prompt: tokens,
        max_tokens,
        sampling: params.sampling.clone(),
        stop: params.stop.clone(),
        events: tx,
        ticket: Some(ticket),
    })?;
    let meta = Meta {
        id: new_id(kind.id_prefix()),
        created: unix_time(),
        model,
        kind,
    };
    if params.stream {
        Ok(sse(meta, rx, lease, params.include_usage).into_response())
    } else {
        collect(meta, rx, lease).await
    }
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Kind {
    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Completion => "cmpl",
            Kind::Chat => "chatcmpl",
        }
    }
}

fn usage(f: &Finish) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": f.cached_tokens},
    })
}

async fn collect(
    meta: Meta,
    mut rx: UnboundedReceiver<Event>,
    lease: Lease,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    let finish = loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done(f)) => break f,
            Some(Event::Error(e)) => {
                return Err(ApiError::internal(format!("Generation failed: {e}")))
            }
            None => return Err(ApiError::internal("Generation stopped without a result")),
        }
    };
    drop(lease);
    let reason = finish.reason.as_str();
    let body = match meta.kind {
        Kind::Completion => json!({
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": reason}],
            "usage": usage(&finish),
        }),
        Kind::Chat => json!({
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": reason,
            }],
            "usage": usage(&finish),
        }),
    };
    Ok(Json(body).into_response())
}

struct StreamState {
    meta: Meta,
    rx: UnboundedReceiver<Event>,
    /// Held until the stream ends or is dropped, so the model stays loaded.
    _lease: Lease,
    include_usage: bool,
    queued: VecDeque<SseEvent>,
    ended: bool,
}

impl StreamState {
    fn chunk(&self, text: Option<&str>, finish: Option<&str>, first: bool) -> SseEvent {
        let choice = match self.meta.kind {
            Kind::Completion => json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish,
            }),
            Kind::Chat => {
                let delta = match (first, text) {
                    (true, _) => json!({"role": "assistant", "content": ""}),
                    (false, Some(t)) => json!({"content": t}),
                    (false, None) => json!({}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        let mut body = json!({
            "id": self.meta.id,
            "object": self.object(),
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": [choice],
        });
        if self.include_usage {
            body["usage"] = Value::Null;
        }
        SseEvent::default().data(body.to_string())
    }

    fn object(&self) -> &'static str {
        match self.meta.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion.chunk",
        }
    }

    fn on_event(&mut self, event: Option<Event>) {
        match event {
            Some(Event::Text(t)) => {
                let c = self.chunk(Some(&t), None, false);
                self.queued.push_back(c);
            }
            Some(Event::Done(f)) => {
                let c = self.chunk(None, Some(f.reason.as_str()), false);
                self.queued.push_back(c);
                if self.include_usage {
                    let body = json!({
                        "id": self.meta.id,
                        "object": self.object(),
                        "created": self.meta.created,
                        "model": self.meta.model,
                        "choices": [],
                        "usage": usage(&f),
                    });
                    self.queued
                        .push_back(SseEvent::default().data(body.to_string()));
                }
                self.end();
            }
            Some(Event::Error(e)) => {
                let err = ApiError::internal(format!("Generation failed: {e}"));
                self.queued
                    .push_back(SseEvent::default().data(err.body().to_string()));
                self.end();
            }
            None => {
                let err = ApiError::internal("Generation stopped without a result");
                self.queued
                    .push_back(SseEvent::default().data(err.body().to_string()));
                self.end();
            }
        }
    }

    fn end(&mut self) {
        self.queued.push_back(SseEvent::default().data("[DONE]"));
        self.ended = true;
        self.rx.close();
    }
}

fn sse(
    meta: Meta,
    rx: UnboundedReceiver<Event>,
    lease: Lease,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut st = StreamState {
        meta,
        rx,
        _lease: lease,
        include_usage,
        queued: VecDeque::new(),
        ended: false,
    };
    if st.meta.kind == Kind::Chat {
        let c = st.chunk(None, None, true);
        st.queued.push_back(c);
    }
    let events = stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.queued.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.ended {
                return None;
            }
            let ev = st.rx.recv().await;
            st.on_event(ev);
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
