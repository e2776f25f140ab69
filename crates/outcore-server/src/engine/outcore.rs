//! The adapter from [`Engine`] to the real `outcore_engine::model::Model`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use outcore_engine::chat::{ChatMessage as EngineMessage, RenderOptions};
use outcore_engine::memory::plan::{Plan, Strategy};
use outcore_engine::memory::probe::MemLimits;
use outcore_engine::model::{plan_load, LoadOptions, Model, Numerics, State, Streaming};
use outcore_engine::sampler::{Sampler, SamplingParams};
use outcore_engine::tokenizer::{StreamDecoder, Tokenizer};
use outcore_format::mapping::LoadMode;

use super::{
    fallback_estimate, ChatMessage, Engine, EngineError, Loader, MemoryUsage, PlanInfo, Sampling,
    SeqState, TextDecoder, TokenSampler,
};
use crate::config::{ModelConfig, ServeNumerics};
use crate::files::{FileId, LoadedFile};

/// Context per sequence when the config names none: the model's, capped to bound the KV cache
/// (each slot keeps its own; SmolLM2-135M's f16 cache is 23 MiB per 1024 positions).
pub const DEFAULT_N_CTX_CAP: usize = 2048;

/// Loads GGUF files / HF directories with `outcore_engine`.
pub struct OutcoreLoader;

fn load_err(cfg: &ModelConfig, reason: impl ToString) -> EngineError {
    EngineError::Load {
        name: cfg.name.clone(),
        path: cfg.path.clone(),
        reason: reason.to_string(),
    }
}

fn file_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The training context from a GGUF header without binding the weights.
fn gguf_n_ctx_train(path: &Path) -> Option<usize> {
    let f = outcore_format::gguf::GgufFile::open(path, LoadMode::Mmap).ok()?;
    outcore_engine::ModelConfig::from_gguf(&f.metadata, None)
        .ok()
        .map(|c| c.n_ctx_train)
}

/// Context per sequence: the config's, else the model's training context capped.
fn n_ctx_for(cfg: &ModelConfig, n_ctx_train: usize) -> usize {
    cfg.n_ctx
        .unwrap_or(n_ctx_train.min(DEFAULT_N_CTX_CAP))
        .max(8)
}

/// The engine's load options for `cfg` with `n_ctx` positions per slot: the planner sizes the
/// KV cache for every slot (`n_ctx x parallel`) and honours the model's own `max_ram`.
fn load_options(cfg: &ModelConfig, n_ctx: usize) -> LoadOptions {
    let load = if cfg.use_mlock {
        LoadMode::Mlock
    } else if cfg.use_mmap {
        LoadMode::Mmap
    } else {
        LoadMode::Read
    };
    let defaults = LoadOptions::default();
    LoadOptions {
        load,
        n_threads: cfg.n_threads.unwrap_or(defaults.n_threads),
        max_ram: cfg.max_ram,
        n_ctx_hint: n_ctx.saturating_mul(cfg.parallel.max(1)),
        chat_template: cfg.chat_template.clone(),
        numerics: match cfg.numerics {
            ServeNumerics::Fast => Numerics::Fast,
            ServeNumerics::Llamacpp => Numerics::Llamacpp,
        },
        ..defaults
    }
}

/// RAM a model takes under `plan`: the weights it keeps in memory (every byte when read or
/// locked; the hot set when mapped; the resident layers plus the streaming ring otherwise),
/// the KV cache and the scratch buffers. The planner's safety margin is per process and is not
/// counted per model.
pub fn planned_ram(plan: &Plan) -> u64 {
    let weights = match plan.strategy {
        Strategy::Read | Strategy::Mlock => plan.file_bytes.max(
            plan.resident_bytes
                .saturating_add(plan.cold_non_layer_bytes),
        ),
        Strategy::Mmap => plan.resident_bytes,
        Strategy::Stream { .. } => plan.resident_bytes.saturating_add(plan.window_bytes),
    };
    weights
        .saturating_add(plan.kv_bytes)
        .saturating_add(plan.scratch_bytes)
}

/// The plan a load of `cfg` would make here and now. Like `outcore plan`, this binds the
/// weights over a plain mapping (the header is parsed; no weight is read) and runs the engine's
/// planner with the memory limits probed now.
pub fn dry_plan(cfg: &ModelConfig) -> Result<Plan, EngineError> {
    let probe = LoadOptions {
        load: LoadMode::Mmap,
        streaming: Streaming::Off,
        n_threads: 1,
        ..LoadOptions::default()
    };
    let model = Model::load(&cfg.path, &probe).map_err(|e| load_err(cfg, e))?;
    let opts = load_options(cfg, n_ctx_for(cfg, model.config.n_ctx_train));
    let limits = MemLimits::probe().unwrap_or_else(|_| MemLimits::unconstrained(u64::MAX));
    Ok(plan_load(
        model.source(),
        &model.config,
        &model.weights,
        &opts,
        &limits,
    )
    .0)
}

impl Loader for OutcoreLoader {
    fn estimate_bytes(&self, cfg: &ModelConfig) -> u64 {
        match dry_plan(cfg) {
            Ok(plan) => planned_ram(&plan),
            Err(e) => {
                eprintln!("outcore-server: cannot plan model '{}' yet ({e}); budgeting its file size until it loads", cfg.name);
                fallback_estimate(
                    file_bytes(&cfg.path),
                    cfg.n_ctx.unwrap_or(DEFAULT_N_CTX_CAP),
                    cfg.parallel,
                )
            }
        }
    }

    fn load(&self, cfg: &ModelConfig) -> Result<Arc<dyn Engine>, EngineError> {
        // The KV hint needs the context before the model is open: read it from the header.
        let hint = gguf_n_ctx_train(&cfg.path)
            .map_or(cfg.n_ctx.unwrap_or(DEFAULT_N_CTX_CAP), |t| {
                n_ctx_for(cfg, t)
            });
        let model =
            Model::load(&cfg.path, &load_options(cfg, hint)).map_err(|e| load_err(cfg, e))?;
        if model.tokenizer().is_none() {
            return Err(load_err(cfg, "the model has no tokenizer"));
        }
        let n_ctx = n_ctx_for(cfg, model.config.n_ctx_train);
        let kv_bytes = model.kv_bytes(n_ctx);
        Ok(Arc::new(OutcoreEngine {
            model: Arc::new(model),
            n_ctx,
            kv_bytes,
            live: Arc::default(),
        }))
    }
}

pub struct OutcoreEngine {
    model: Arc<Model>,
    n_ctx: usize,
    kv_bytes: u64,
    /// Sequences alive, in use or kept by a worker's free slots (their KV caches count as resident).
    live: Arc<AtomicUsize>,
}

impl OutcoreEngine {
    fn tokenizer(&self) -> Result<&Tokenizer, EngineError> {
        self.model.tokenizer().ok_or(EngineError::NoTokenizer)
    }
}

struct Seq {
    state: State,
    live: Arc<AtomicUsize>,
}

impl Drop for Seq {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

fn state(seq: &mut SeqState) -> Result<&mut State, EngineError> {
    seq.downcast_mut::<Seq>()
        .map(|s| &mut s.state)
        .ok_or_else(|| EngineError::Forward("foreign sequence state".into()))
}

impl Engine for OutcoreEngine {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn n_vocab(&self) -> usize {
        self.model.config.n_vocab
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        Ok(self.tokenizer()?.encode(text, true, true))
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let tmpl = self.model.chat_template().ok_or_else(|| {
            EngineError::Template(
                "the model has no chat template; set chat_template in the config".into(),
            )
        })?;
        let msgs: Vec<EngineMessage> = messages
            .iter()
            .map(|m| EngineMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        let opts = RenderOptions::for_tokenizer(self.tokenizer()?, true);
        let text = tmpl
            .render(&msgs, &opts)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        // The template writes the BOS token itself; tokenize() adds one too, so drop the textual one.
        Ok(
            match (opts.bos_token.is_empty(), self.tokenizer()?.add_bos()) {
                (false, true) => text
                    .strip_prefix(opts.bos_token.as_str())
                    .map(str::to_string)
                    .unwrap_or(text),
                _ => text,
            },
        )
    }

    fn is_eog(&self, token: u32) -> bool {
        self.model.tokenizer().is_some_and(|t| t.is_eog(token))
    }

    fn decoder(&self) -> Box<dyn TextDecoder> {
        Box::new(Decoder {
            model: self.model.clone(),
            inner: StreamDecoder::new(),
        })
    }

    fn sampler(&self, s: &Sampling) -> Box<dyn TokenSampler> {
        let params = SamplingParams {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            seed: s.seed,
            ..SamplingParams::default()
        };
        Box::new(EngineSampler(Sampler::new(params)))
    }

    fn new_sequence(&self) -> Result<SeqState, EngineError> {
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(Seq {
            state: self.model.new_state(self.n_ctx),
            live: self.live.clone(),
        }))
    }

    fn reset_sequence(&self, seq: &mut SeqState) -> Result<(), EngineError> {
        state(seq)?.truncate(0);
        Ok(())
    }

    fn sequence_len(&self, seq: &SeqState) -> usize {
        seq.downcast_ref::<Seq>().map_or(0, |s| s.state.pos)
    }

    /// Only with the fast numerics, where a position's KV is the same however the prompt was
    /// cut into steps; llama.cpp's numerics give a prompt's tokens another attention order when
    /// they come several per step than one by one, so there a kept prefix would change the bits.
    fn keep_prefix(&self, seq: &mut SeqState, len: usize) -> Result<usize, EngineError> {
        let keep = if self.model.numerics() == Numerics::Fast {
            len
        } else {
            0
        };
        let st = state(seq)?;
        st.truncate(keep);
        Ok(st.pos)
    }

    fn forward_mixed(
        &self,
        seqs: &mut [&mut SeqState],
        tokens: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut states: Vec<&mut State> = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut() {
            states.push(state(s)?);
        }
        self.model
            .forward_mixed(&mut states, tokens)
            .map_err(|e| EngineError::Forward(e.to_string()))
    }

    fn memory(&self) -> MemoryUsage {
        let mut usage = MemoryUsage::default();
        for m in self.model.source().mappings() {
            let len = m.len() as u64;
            if m.mode() == LoadMode::Read {
                usage.resident_bytes += len;
            } else {
                usage.file_backed_bytes += len;
                usage.resident_bytes += m.resident_bytes(0..m.len()).unwrap_or(0);
            }
        }
        usage.resident_bytes += self.live.load(Ordering::Relaxed) as u64 * self.kv_bytes;
        usage
    }

    fn files(&self) -> Vec<LoadedFile> {
        self.model
            .source()
            .mappings()
            .iter()
            .map(|m| {
                let id = m.file_identity();
                LoadedFile {
                    path: m.path().to_path_buf(),
                    id: FileId {
                        dev: id.dev,
                        inode: id.inode,
                        size: id.size,
                        mtime: id.mtime,
                    },
                    mapped: m.mode() != LoadMode::Read,
                }
            })
            .collect()
    }

    fn plan(&self) -> Option<PlanInfo> {
        let plan = self.model.plan();
        Some(PlanInfo {
            summary: plan.summary(),
            ram_bytes: planned_ram(plan),
        })
    }
}

struct Decoder {
    model: Arc<Model>,
    inner: StreamDecoder,
}

impl TextDecoder for Decoder {
    fn push(&mut self, token: u32) -> String {
        match self.model.tokenizer() {
            Some(t) => self.inner.push(t, token),
            None => String::new(),
        }
    }

    fn finish(&mut self) -> String {
        self.inner.finish()
    }
}

struct EngineSampler(Sampler);

impl TokenSampler for EngineSampler {
    fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.0.sample(logits, history)
    }
}
