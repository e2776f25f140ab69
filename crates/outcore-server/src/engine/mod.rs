//! What the server needs from a model, as one object-safe trait.
//!
//! Handlers and the batching worker only talk to [`Engine`]; `outcore.rs` adapts the real
//! `outcore_engine::Model`, and `fake.rs` is a deterministic stand-in for unit tests of routing,
//! errors, lifecycle, batching, queueing and auth.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::files::LoadedFile;

pub mod fake;
#[cfg(feature = "engine")]
pub mod outcore;

/// One sequence's state (KV cache, position) owned by the worker; engines downcast it.
pub type SeqState = Box<dyn Any + Send>;

/// One chat turn after the request's content parts are joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The OpenAI sampling fields after validation, with the server's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables.
    pub top_k: usize,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: 0,
        }
    }
}

/// Memory a loaded model holds, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes of the model resident in RAM now (mapped pages in core plus heap).
    pub resident_bytes: u64,
    /// Bytes backed by the model file (the mapping's length; 0 when read into heap).
    pub file_backed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("loading model '{name}' from {path}: {reason}")]
    Load {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("model has no tokenizer")]
    NoTokenizer,
    #[error("tokenizing: {0}")]
    Tokenize(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("forward pass: {0}")]
    Forward(String),
    #[error("engine panicked in {during}: {message}")]
    Panic {
        during: &'static str,
        message: String,
    },
}

/// Turns tokens into text incrementally, holding back incomplete UTF-8.
pub trait TextDecoder: Send {
    fn push(&mut self, token: u32) -> String;
    /// Whatever is still held back at the end of the sequence.
    fn finish(&mut self) -> String;
}

/// Picks the next token from logits; seeded, so runs repeat.
pub trait TokenSampler: Send {
    fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32;
}

/// A loaded model, shared by the handlers (tokenize, render) and its worker thread (forward).
pub trait Engine: Send + Sync {
    /// Context length each sequence gets (the config's `n_ctx`, or the model's).
    fn n_ctx(&self) -> usize;
    fn n_vocab(&self) -> usize;
    /// Tokenizes a prompt as a prompt: BOS per the model's settings, special tokens parsed.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError>;
    /// Renders messages with the chat template, with the assistant generation prompt at the end.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError>;
    /// End of generation (EOS, EOT, ...).
    fn is_eog(&self, token: u32) -> bool;
    fn decoder(&self) -> Box<dyn TextDecoder>;
    fn sampler(&self, sampling: &Sampling) -> Box<dyn TokenSampler>;
    /// A fresh sequence with a KV cache of `n_ctx()` positions. Workers keep one per slot and
    /// reuse it, so this runs at most `parallel` times per load.
    fn new_sequence(&self) -> Result<SeqState, EngineError>;
    /// Empties a sequence for the next request (position 0; the KV memory is kept).
    fn reset_sequence(&self, seq: &mut SeqState) -> Result<(), EngineError>;
    /// Positions a sequence holds in its KV cache (0 where the engine does not track them).
    fn sequence_len(&self, _seq: &SeqState) -> usize {
        0
    }
    /// Keeps the first `len` positions of a sequence's KV cache for the next request (its
    /// prompt starts with the same tokens) and returns how many were kept; the default keeps
    /// none. Sound only where a position's KV does not depend on what else shared its forward
    /// steps, as with the outcore engine (its batched products give each token its own bits).
    fn keep_prefix(&self, seq: &mut SeqState, _len: usize) -> Result<usize, EngineError> {
        self.reset_sequence(seq).map(|()| 0)
    }
    /// One forward step over several sequences (continuous batching): `tokens[i]` is fed to
    /// `seqs[i]`, a prompt chunk of a newly admitted sequence or the one sampled token of a
    /// decoding one; an empty slice leaves that sequence alone. Returns each sequence's logits
    /// for its last token (empty for a skipped one). On error no sequence has advanced, so the
    /// caller may retry them one by one. The caller bounds the total token count.
    fn forward_mixed(
        &self,
        seqs: &mut [&mut SeqState],
        tokens: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EngineError>;
    fn memory(&self) -> MemoryUsage;
    /// The files behind the weights as they were opened (identity, mapped or copied), for
    /// reloads and the in-place truncation check. Empty when the engine has no files.
    fn files(&self) -> Vec<LoadedFile> {
        Vec::new()
    }
    /// How the engine's planner laid the model out, if it has one.
    fn plan(&self) -> Option<PlanInfo> {
        None
    }
}

/// The engine planner's view of a loaded model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanInfo {
    /// The planner's one-paragraph summary (what `outcore run --stats` prints).
    pub summary: String,
    /// RAM the model takes under that plan (resident weights or streaming ring, KV cache for
    /// every slot, scratch): what the server's budget counts.
    pub ram_bytes: u64,
}

/// Opens models named in the config. The registry calls it on a blocking thread.
pub trait Loader: Send + Sync {
    /// RAM the model will take once loaded (weights + KV cache for all slots), for the budget.
    /// Called once per model at start; after each load the engine's own [`Engine::plan`]
    /// replaces it.
    fn estimate_bytes(&self, cfg: &ModelConfig) -> u64;
    fn load(&self, cfg: &ModelConfig) -> Result<Arc<dyn Engine>, EngineError>;
}

/// A rough estimate for when the engine's planner cannot run (the file does not open): the file
/// plus 2 (K,V) x f16 x a 135M-class model's layers x kv width, scaled by context and slots.
/// Used only for the budget until the first load brings the planner's figure.
pub fn fallback_estimate(file_bytes: u64, n_ctx: usize, parallel: usize) -> u64 {
    const KV_BYTES_PER_POSITION: u64 = 2 * 2 * 30 * 192;
    file_bytes + KV_BYTES_PER_POSITION * n_ctx as u64 * parallel as u64
}
