//! OpenAI request bodies and their validation into what the worker needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::engine::{ChatMessage, Sampling};
use crate::error::ApiError;

/// OpenAI caps `stop` at 4 sequences.
pub const MAX_STOP: usize = 4;

/// The body of `/v1/completions` and `/v1/chat/completions` (each requires its own input field).
/// Unknown fields are ignored, as OpenAI clients send many optional ones.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationRequest {
    pub model: String,
    pub prompt: Option<Prompt>,
    pub messages: Option<Vec<Message>>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub n: Option<i64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub echo: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// What to feed the model: text to tokenize or token ids.
#[derive(Debug, PartialEq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// Validated generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// `None` = until the context is full.
    pub max_tokens: Option<usize>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

fn check_range(
    param: &str,
    v: Option<f64>,
    lo: f64,
    hi: f64,
    default: f64,
) -> Result<f32, ApiError> {
    match v {
        None => Ok(default as f32),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x as f32),
        Some(x) => Err(ApiError::invalid(
            param,
            format!("'{param}' must be between {lo} and {hi}, got {x}"),
        )
        .with_code("invalid_value")),
    }
}

impl GenerationRequest {
    pub fn params(&self) -> Result<GenParams, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(
                    ApiError::invalid("n", format!("Only n = 1 is supported, got {n}"))
                        .with_code("invalid_value"),
                );
            }
        }
        if self.echo == Some(true) {
            return Err(ApiError::invalid("echo", "echo = true is not supported")
                .with_code("unsupported_value"));
        }
        let (max_param, max) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => ("max_completion_tokens", Some(v)),
            (None, v) => ("max_tokens", v),
        };
        let max_tokens = match max {
            None => None,
            Some(v) if v >= 1 => Some(usize::try_from(v).unwrap_or(usize::MAX)),
            Some(v) => {
                return Err(ApiError::invalid(
                    max_param,
                    format!("'{max_param}' must be at least 1, got {v}"),
                )
                .with_code("invalid_value"))
            }
        };
        let top_k = match self.top_k {
            None => 0,
            Some(k) if k >= 0 => usize::try_from(k).unwrap_or(usize::MAX),
            Some(k) => {
                return Err(ApiError::invalid(
                    "top_k",
                    format!("'top_k' must be 0 (off) or more, got {k}"),
                )
                .with_code("invalid_value"))
            }
        };
        let rp = check_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0, 1.0)?;
        if rp <= 0.0 {
            return Err(
                ApiError::invalid("repeat_penalty", "'repeat_penalty' must be above 0")
                    .with_code("invalid_value"),
            );
        }
        let top_p = check_range("top_p", self.top_p, 0.0, 1.0, 1.0)?;
        let sampling = Sampling {
            temperature: check_range("temperature", self.temperature, 0.0, 2.0, 1.0)?,
            top_p: if top_p <= 0.0 {
                f32::MIN_POSITIVE
            } else {
                top_p
            },
            top_k,
            min_p: check_range("min_p", self.min_p, 0.0, 1.0, 0.0)?,
            repeat_penalty: rp,
            seed: self.seed.map_or_else(random_seed, |s| s as u64),
        };
        let stop: Vec<String> = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "At most {MAX_STOP} stop sequences are allowed, got {}",
                    stop.len()
                ),
            )
            .with_code("invalid_value"));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let stream = self.stream.unwrap_or(false);
        let include_usage = stream
            && self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false);
        Ok(GenParams {
            max_tokens,
            sampling,
            stop,
            stream,
            include_usage,
        })
    }

    /// The completion prompt (`prompt` is required).
    pub fn prompt_input(&self) -> Result<PromptInput, ApiError> {
        match &self.prompt {
            None => Err(
                ApiError::invalid("prompt", "Missing required field 'prompt'")
                    .with_code("missing_field"),
            ),
            Some(Prompt::Text(s)) => Ok(PromptInput::Text(s.clone())),
            Some(Prompt::Texts(v)) if v.len() == 1 => Ok(PromptInput::Text(v[0].clone())),
            Some(Prompt::Texts(v)) => Err(ApiError::invalid(
                "prompt",
                format!("Only one prompt per request is supported, got {}", v.len()),
            )
            .with_code("unsupported_value")),
            Some(Prompt::Tokens(t)) if t.is_empty() => {
                Err(ApiError::invalid("prompt", "'prompt' is empty"))
            }
            Some(Prompt::Tokens(t)) => Ok(PromptInput::Tokens(t.clone())),
        }
    }

    /// The chat turns (`messages` is required), content parts joined.
    pub fn chat_messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let msgs = self.messages.as_ref().ok_or_else(|| {
            ApiError::invalid("messages", "Missing required field 'messages'")
                .with_code("missing_field")
        })?;
        if msgs.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "'messages' must have at least one message",
            ));
        }
        msgs.iter()
            .enumerate()
            .map(|(i, m)| {
                if !matches!(
                    m.role.as_str(),
                    "system" | "developer" | "user" | "assistant" | "tool"
                ) {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "Unknown role '{}': use system, developer, user, assistant or tool",
                            m.role
                        ),
                    ));
                }
                let content = match &m.content {
                    None => String::new(),
                    Some(Content::Text(s)) => s.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut s = String::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (p.kind.as_str(), &p.text) {
                                ("text", Some(t)) => s.push_str(t),
                                _ => {
                                    return Err(ApiError::invalid(
                                        format!("messages[{i}].content[{j}]"),
                                        format!(
                                            "Only text content parts are supported, got type '{}'",
                                            p.kind
                                        ),
                                    ))
                                }
                            }
                        }
                        s
                    }
                };
                // The engine's templates know "system", not OpenAI's newer "developer".
                let role = if m.role == "developer" {
                    "system".to_string()
                } else {
                    m.role.clone()
                };
                Ok(ChatMessage { role, content })
            })
            .collect()
    }
}

fn random_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of time ^ counter
    let mut z = nanos ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `cmpl-...` / `chatcmpl-...` ids, unique within the process.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{c:06x}", unix_time())
}

pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse;

    fn req(json: &str) -> GenerationRequest {
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn params_defaults_and_ranges() {
        let p = req(r#"{"model":"m","prompt":"hi"}"#).params().unwrap();
        assert_eq!(p.max_tokens, None);
        assert!(!p.stream);
        assert_eq!(p.sampling.temperature, 1.0);
        let p = req(r#"{"model":"m","prompt":"hi","max_tokens":5,"temperature":0,"stop":"\n","seed":7,
            "stream":true,"stream_options":{"include_usage":true},"top_k":40,"min_p":0.05,"repeat_penalty":1.1}"#)
        .params()
        .unwrap();
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.stop, vec!["\n".to_string()]);
        assert_eq!(p.sampling.seed, 7);
        assert_eq!(p.sampling.top_k, 40);
        assert!(p.stream && p.include_usage);
        for (body, param) in [
            (r#"{"model":"m","n":2}"#, "n"),
            (r#"{"model":"m","max_tokens":0}"#, "max_tokens"),
            (
                r#"{"model":"m","max_completion_tokens":-3}"#,
                "max_completion_tokens",
            ),
            (r#"{"model":"m","temperature":2.5}"#, "temperature"),
            (r#"{"model":"m","top_p":1.5}"#, "top_p"),
            (r#"{"model":"m","top_k":-1}"#, "top_k"),
            (r#"{"model":"m","min_p":-0.1}"#, "min_p"),
            (r#"{"model":"m","repeat_penalty":0}"#, "repeat_penalty"),
            (r#"{"model":"m","stop":["a","b","c","d","e"]}"#, "stop"),
        ] {
            let e = req(body).params().unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn prompts_and_messages() {
        assert_eq!(
            req(r#"{"model":"m","prompt":["a"]}"#)
                .prompt_input()
                .unwrap(),
            PromptInput::Text("a".into())
        );
        assert_eq!(
            req(r#"{"model":"m","prompt":[1,2]}"#)
                .prompt_input()
                .unwrap(),
            PromptInput::Tokens(vec![1, 2])
        );
        assert_eq!(
            req(r#"{"model":"m"}"#)
                .prompt_input()
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
        assert_eq!(
            req(r#"{"model":"m","prompt":["a","b"]}"#)
                .prompt_input()
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
        let m = req(
            r#"{"model":"m","messages":[{"role":"developer","content":"s"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .chat_messages()
        .unwrap();
        assert_eq!(
            m[0],
            ChatMessage {
                role: "system".into(),
                content: "s".into()
            }
        );
        assert_eq!(m[1].content, "ab");
        let e = req(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#)
            .chat_messages()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = req(r#"{"model":"m","messages":[]}"#)
            .chat_messages()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e =
            req(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#)
                .chat_messages()
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }
}
