//! The prefill/decode loop: evaluate the prompt, then sample one token at a time until EOS/EOT,
//! a stop string, the token limit, a full context or the caller says stop.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::model::{Model, State};
use crate::sampler::{Sampler, SamplingParams};

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token (EOS/EOT).
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The KV cache is full.
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_time: Duration,
    pub generation_time: Duration,
    /// From the start of the prompt evaluation to the first generated token.
    pub time_to_first_token: Duration,
}

impl GenerateStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn generation_tps(&self) -> f64 {
        // The first token comes out of the prompt pass; the rest are decode steps.
        let steps = self.generated_tokens.saturating_sub(1);
        steps as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

/// What the callback sees for each generated token.
pub struct TokenEvent<'a> {
    pub id: u32,
    /// Text that is now safe to show (complete UTF-8, not part of a possible stop string).
    pub text: &'a str,
}

pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub stats: GenerateStats,
}

/// Holds back text that may be the start of a stop string.
struct StopMatcher<'a> {
    stops: &'a [String],
    pending: String,
}

impl StopMatcher<'_> {
    /// Adds text; returns (text safe to emit, whether a stop string was hit).
    fn push(&mut self, s: &str) -> (String, bool) {
        self.pending.push_str(s);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.pending), false);
        }
        if let Some(at) = self
            .stops
            .iter()
            .filter(|t| !t.is_empty())
            .filter_map(|t| self.pending.find(t.as_str()))
            .min()
        {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for t in self.stops {
            for k in (1..t.len().min(self.pending.len()) + 1).rev() {
                if t.is_char_boundary(k) && self.pending.ends_with(&t[..k]) {
                    keep = keep.max(k);
                    break;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Generates after `prompt` (which is evaluated first, from the state's current position).
/// `on_token` returns false to stop early.
pub fn generate(
    model: &Model,
    state: &mut State,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_token: impl FnMut(&TokenEvent<'_>) -> bool,
) -> Result<Generation> {
    let tok = model.tokenizer();
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut stats = GenerateStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let mut history: Vec<u32> = prompt.to_vec();
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut decoder = tok.map(|_| crate::tokenizer::StreamDecoder::new());
    let mut stop = StopMatcher {
        stops: &params.stop,
        pending: String::new(),
    };

    let t0 = Instant::now();
    let mut logits = model.forward(state, prompt)?;
    stats.prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut finish = FinishReason::Length;
    while ids.len() < params.max_tokens {
        let id = sampler.sample(&mut logits, &history);
        if ids.is_empty() {
            stats.time_to_first_token = t0.elapsed();
        }
        let eog = tok.map(|t| t.is_eog(id)).unwrap_or(false);
        if eog && !params.ignore_eos {
            finish = FinishReason::Eos;
            break;
        }
        ids.push(id);
        history.push(id);
        let piece = match (&mut decoder, tok) {
            (Some(d), Some(t)) => d.push(t, id),
            _ => String::new(),
        };
        let (emit, hit) = stop.push(&piece);
        text.push_str(&emit);
        let go_on = on_token(&TokenEvent { id, text: &emit });
        if hit {
            finish = FinishReason::Stop;
            break;
        }
        if !go_on {
            finish = FinishReason::Cancelled;
            break;
        }
        if ids.len() >= params.max_tokens {
            break;
        }
        if state.pos >= state.n_ctx() {
            finish = FinishReason::ContextFull;
            break;
        }
        logits = model.forward(state, &[id])?;
    }
    if finish != FinishReason::Stop {
        let mut rest = decoder.as_mut().map(|d| d.finish()).unwrap_or_default();
        rest.insert_str(0, &stop.flush());
        if !rest.is_empty() {
            text.push_str(&rest);
            on_token(&TokenEvent {
                id: u32::MAX,
                text: &rest,
            });
        }
    }
    stats.generated_tokens = ids.len();
    stats.generation_time = t1.elapsed();
    Ok(Generation {
        ids,
        text,
        finish,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_holds_back_prefixes() {
        let stops = vec!["</s>".to_string()];
        let mut m = StopMatcher {
            stops: &stops,
            pending: String::new(),
        };
        assert_eq!(m.push("hello <"), ("hello ".to_string(), false));
        assert_eq!(m.push("/"), (String::new(), false));
        assert_eq!(m.push("s> tail"), (String::new(), true));
        let mut m = StopMatcher {
            stops: &stops,
            pending: String::new(),
        };
        assert_eq!(m.push("a<b"), ("a<b".to_string(), false));
    }
}
