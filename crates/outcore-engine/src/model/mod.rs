//! A loaded model: its source (GGUF or HF safetensors, mapped), config, bound weights, tokenizer,
//! chat template and compute pool. `State` is one sequence (KV cache + position + scratch).

pub mod llama;
pub mod llama2c;
pub mod runq;

pub use runq::Numerics;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outcore_format::gguf::GgufFile;
use outcore_format::mapping::{LoadMode, Mapping};
use outcore_format::safetensors::SafetensorsModel;
use outcore_format::TensorView;
use outcore_kernels::Arith;

use crate::chat::{ChatMessage, ChatTemplate, RenderOptions};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::kv_cache::{CacheType, KvCache};
use crate::memory::plan::{plan, LoadStrategy, ModelSizes, Plan, PlanRequest, Strategy};
use crate::memory::probe::MemLimits;
use crate::names::Scheme;
use crate::residency::{self, Filled, Residency, ResidencyConfig};
use crate::tokenizer::Tokenizer;
use crate::weights::{self, TensorLookup, WRef, Weights};
use llama::{Scratch, SeqBatch, WeightBytes};

/// Where the weights come from.
pub enum Source {
    Gguf(GgufFile),
    Hf(SafetensorsModel),
    /// A llama2.c v2 int8 checkpoint, re-laid out in memory (see [`llama2c`]).
    Llama2c(llama2c::Llama2cSource),
}

impl Source {
    /// The file behind each mapping, in shard order.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Source::Gguf(f) => vec![f.path().to_path_buf()],
            Source::Hf(m) => m.shards().iter().map(|s| s.path().to_path_buf()).collect(),
            Source::Llama2c(s) => vec![s.image.path().to_path_buf()],
        }
    }

    /// The mappings behind the weights, in shard order.
    pub fn mappings(&self) -> Vec<&Mapping> {
        match self {
            Source::Gguf(f) => vec![f.mapping()],
            Source::Hf(m) => m.shards().iter().map(|s| s.mapping()).collect(),
            Source::Llama2c(s) => vec![&s.image],
        }
    }
}

impl TensorLookup for Source {
    fn lookup(&self, name: &str) -> Result<Option<TensorView<'_>>> {
        match self {
            Source::Gguf(f) => Ok(f.tensor(name)),
            Source::Llama2c(s) => Ok(s.tensor(name)),
            Source::Hf(m) if !m.contains(name) => Ok(None),
            Source::Hf(m) => m.get(name).map(Some).map_err(|e| EngineError::Format {
                path: m.root().to_path_buf(),
                source: e,
            }),
        }
    }

    fn shard_bases(&self) -> Vec<(usize, usize)> {
        self.mappings()
            .iter()
            .map(|m| (m.as_ptr() as usize, m.len()))
            .collect()
    }
}

/// Whether weights are streamed through the residency manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Streaming {
    /// Stream only what does not fit the memory budget (the default).
    #[default]
    Auto,
    /// Stream every unit beyond the budget even if the model would fit (`--load stream`).
    Force,
    /// Plain mmap: let the page cache do what it does (`--load mmap`, for comparison).
    Off,
}

/// How to open a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub load: LoadMode,
    pub streaming: Streaming,
    /// Memory budget for this process (weights kept resident + KV cache + scratch), if capped.
    pub max_ram: Option<u64>,
    /// Context size the budget must leave room for (KV cache).
    pub n_ctx_hint: usize,
    pub n_threads: usize,
    pub cache_type: CacheType,
    /// Override of the chat template: a built-in name (`chatml`, `llama3`, ...) or a Jinja source.
    pub chat_template: Option<String>,
    /// Tokenizer for a checkpoint that has none inside (llama2.c): a tokenizer.bin, a GGUF file or
    /// an HF directory (default: tokenizer.bin beside the checkpoint).
    pub tokenizer: Option<PathBuf>,
    /// The forward pass's arithmetic: llama.cpp's (default) or runq.c's (llama2.c checkpoints;
    /// an F32 KV cache, no streaming).
    pub numerics: Numerics,
    /// Streamed units are read in pieces of whole tensors of at most the largest tensor, or
    /// this many bytes when larger ([`residency::PIECE_MIN`]; tests make it small).
    pub stream_piece_min: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            load: LoadMode::Mmap,
            streaming: Streaming::Auto,
            max_ram: None,
            n_ctx_hint: 4096,
            n_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cache_type: CacheType::F16,
            chat_template: None,
            tokenizer: None,
            numerics: Numerics::default(),
            stream_piece_min: residency::PIECE_MIN,
        }
    }
}

pub struct Model {
    pub config: ModelConfig,
    pub weights: Weights,
    source: Source,
    tokenizer: Option<Tokenizer>,
    chat_template: Option<ChatTemplate>,
    pool: rayon::ThreadPool,
    path: PathBuf,
    cache_type: CacheType,
    residency: Option<Residency>,
    plan: Plan,
    /// Set with `--numerics runq`: the forward pass runs runq.c's arithmetic on this instead.
    runq: Option<runq::RunqModel>,
    /// Prefill micro-batch: [`UBATCH`], or [`STREAM_UBATCH`] when streaming.
    ubatch: usize,
    /// The products' arithmetic (`Fast` with `Numerics::Fast`).
    arith: Arith,
    pub load_time: Duration,
}

struct Bytes<'a> {
    maps: &'a [&'a Mapping],
    residency: Option<&'a Residency>,
    arith: Arith,
}

impl WeightBytes for Bytes<'_> {
    fn arith(&self) -> Arith {
        self.arith
    }

    fn bytes(&self, w: &WRef) -> &[u8] {
        &self.maps[w.shard][w.range()]
    }

    fn begin_unit(&self, u: usize) -> Option<Filled> {
        self.residency?.begin(u)
    }

    fn next_piece(&self, prev: Filled) -> Option<Filled> {
        self.residency?.next_piece(prev)
    }

    fn end_unit(&self, _u: usize, f: Option<Filled>) {
        if let Some(r) = self.residency {
            r.end(f);
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Model {
    /// Opens a GGUF file or a Hugging Face directory (config.json + safetensors).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
        let t0 = Instant::now();
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let (source, config, scheme, tokenizer, template) = if meta.is_dir() {
            let cfg_path = path.join("config.json");
            if !cfg_path.is_file() {
                return Err(EngineError::NotAModel {
                    path: path.to_path_buf(),
                });
            }
            let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| EngineError::Json {
                    path: cfg_path.clone(),
                    source,
                })?;
            let config = ModelConfig::from_hf_json(&json)?;
            let st = SafetensorsModel::open_with(path, opts.load).map_err(|source| {
                EngineError::Format {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            let tok_path = path.join("tokenizer.json");
            let (tokenizer, template) = if tok_path.is_file() {
                let tc = path.join("tokenizer_config.json");
                let tc = tc.is_file().then_some(tc);
                let tok = Tokenizer::from_hf_json(&tok_path, tc.as_deref())
                    .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
                let tmpl = match tok.chat_template() {
                    Some(src) => Some(
                        ChatTemplate::new(src)
                            .map_err(|e| EngineError::Tokenizer(e.to_string()))?,
                    ),
                    None => None,
                };
                (Some(tok), tmpl)
            } else {
                (None, None)
            };
            (Source::Hf(st), config, Scheme::Hf, tokenizer, template)
        } else if llama2c::is_llama2c(path) {
            let s = llama2c::Llama2cSource::open(path)?;
            let tok = s.tokenizer(path, opts.tokenizer.as_deref())?;
            let config = s.config.clone();
            (Source::Llama2c(s), config, Scheme::Gguf, tok, None)
        } else {
            let is_gguf = {
                use std::io::Read;
                let mut magic = [0u8; 4];
                std::fs::File::open(path)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok()
                    && &magic == b"GGUF"
            };
            if !is_gguf {
                return Err(EngineError::NotAModel {
                    path: path.to_path_buf(),
                });
            }
            let f = GgufFile::open(path, opts.load).map_err(|source| EngineError::Format {
                path: path.to_path_buf(),
                source,
            })?;
            let n_tokens = f
                .metadata()
                .get_str_array("tokenizer.ggml.tokens")
                .ok()
                .map(|t| t.len());
            let config = ModelConfig::from_gguf(f.metadata(), n_tokens)?;
            let tokenizer = if f.metadata().contains("tokenizer.ggml.model") {
                Some(
                    Tokenizer::from_metadata(f.metadata())
                        .map_err(|e| EngineError::Tokenizer(e.to_string()))?,
                )
            } else {
                None
            };
            let template = match f.metadata().opt_str(crate::tokenizer::keys::CHAT_TEMPLATE) {
                Ok(Some(src)) => Some(
                    ChatTemplate::new(src).map_err(|e| EngineError::Tokenizer(e.to_string()))?,
                ),
                _ => None,
            };
            (Source::Gguf(f), config, Scheme::Gguf, tokenizer, template)
        };
        let chat_template = match &opts.chat_template {
            Some(name) => Some(
                ChatTemplate::from_name_or_source(name)
                    .map_err(|e| EngineError::Tokenizer(format!("--chat-template: {e}")))?,
            ),
            None => template,
        };
        let weights = weights::bind(&source, scheme, &config)?;
        let (runq, opts) = match opts.numerics {
            Numerics::Llamacpp | Numerics::Fast => (None, opts.clone()),
            Numerics::Runq => (
                Some(runq::RunqModel::open(path, opts.load)?),
                LoadOptions {
                    streaming: Streaming::Off,
                    cache_type: CacheType::F32,
                    ..opts.clone()
                },
            ),
        };
        let opts = &opts;
        let (plan, residency, ubatch) = plan_residency(&source, &config, &weights, opts)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.n_threads.max(1))
            .thread_name(|i| format!("outcore-compute-{i}"))
            .build()
            .map_err(|e| EngineError::Unsupported {
                what: format!("thread pool: {e}"),
            })?;
        Ok(Model {
            config,
            weights,
            source,
            tokenizer,
            chat_template,
            pool,
            path: path.to_path_buf(),
            cache_type: opts.cache_type,
            residency,
            plan,
            runq,
            ubatch,
            arith: match opts.numerics {
                Numerics::Fast => Arith::Fast,
                _ => Arith::Exact,
            },
            load_time: t0.elapsed(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The arithmetic the model was loaded with.
    pub fn numerics(&self) -> Numerics {
        match (self.arith, self.runq.is_some()) {
            (_, true) => Numerics::Runq,
            (Arith::Fast, false) => Numerics::Fast,
            (Arith::Exact, false) => Numerics::Llamacpp,
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Renders a conversation with the chat template (BOS/EOS text taken from the tokenizer).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self.chat_template.as_ref().ok_or_else(|| {
            EngineError::Tokenizer(
                "this model has no chat template; pass --chat-template chatml (or another name)"
                    .into(),
            )
        })?;
        let opts = match &self.tokenizer {
            Some(t) => RenderOptions::for_tokenizer(t, add_generation_prompt),
            None => RenderOptions {
                add_generation_prompt,
                ..Default::default()
            },
        };
        tmpl.render(messages, &opts)
            .map_err(|e| EngineError::Tokenizer(format!("chat template: {e}")))
    }

    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Bytes of weights on disk (all mapped shards).
    pub fn file_bytes(&self) -> u64 {
        self.source.mappings().iter().map(|m| m.len() as u64).sum()
    }

    /// A fresh sequence with a KV cache of `n_ctx` positions (capped at nothing: the caller decides).
    pub fn new_state(&self, n_ctx: usize) -> State {
        let c = &self.config;
        State {
            kv: KvCache::new(self.cache_type, c.n_layer, n_ctx.max(1), c.kv_dim()),
            pos: 0,
            scratch: Scratch::default(),
        }
    }

    fn run(&self, seqs: &mut [SeqBatch<'_>], scratch: &mut Scratch) -> Result<Vec<Vec<f32>>> {
        self.run_observed(seqs, scratch, None)
    }

    fn run_observed(
        &self,
        seqs: &mut [SeqBatch<'_>],
        scratch: &mut Scratch,
        obs: Option<&dyn llama::Observer>,
    ) -> Result<Vec<Vec<f32>>> {
        if let Some(rq) = &self.runq {
            if obs.is_some() {
                return Err(EngineError::Unsupported {
                    what: "observing layer inputs with --numerics runq".into(),
                });
            }
            return self.pool.install(|| {
                let _spin = Spinners::start(rayon::current_num_threads().saturating_sub(1));
                rq.forward(seqs)
            });
        }
        let maps = self.source.mappings();
        let residency = self.residency.as_ref().filter(|r| r.is_streaming());
        let _one_pass = residency.map(|r| r.gate.lock().unwrap_or_else(|e| e.into_inner()));
        let bytes = Bytes {
            maps: &maps,
            residency,
            arith: self.arith,
        };
        self.pool.install(|| {
            let _spin = Spinners::start(rayon::current_num_threads().saturating_sub(1));
            llama::forward_observed(&self.config, &self.weights, &bytes, seqs, scratch, obs)
        })
    }

    /// Evaluates `tokens` in one micro-batch while `obs` sees every linear layer's input
    /// (calibration); returns the logits of the last token.
    pub fn forward_observed(
        &self,
        state: &mut State,
        tokens: &[u32],
        obs: &dyn llama::Observer,
    ) -> Result<Vec<f32>> {
        let mut scratch = std::mem::take(&mut state.scratch);
        let mut seqs = [SeqBatch {
            kv: &mut state.kv,
            pos: state.pos,
            tokens,
            all_logits: false,
        }];
        let r = self.run_observed(&mut seqs, &mut scratch, Some(obs));
        state.scratch = scratch;
        let mut l = r?;
        state.pos += tokens.len();
        Ok(std::mem::take(&mut l[0]))
    }

    /// The residency manager, when the model is (partly) streamed.
    pub fn residency(&self) -> Option<&Residency> {
        self.residency.as_ref()
    }

    /// How the weights were planned: memory figures, resident and streamed layers, the reason.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Bytes of the KV cache for `n_ctx` positions.
    pub fn kv_bytes(&self, n_ctx: usize) -> u64 {
        KvCache::bytes_for(
            self.cache_type,
            self.config.n_layer,
            n_ctx,
            self.config.kv_dim(),
        )
    }

    /// Evaluates `tokens` at the state's position; returns the logits of the last one.
    pub fn forward(&self, state: &mut State, tokens: &[u32]) -> Result<Vec<f32>> {
        self.forward_inner(state, tokens, false)
    }

    /// Evaluates `tokens`; returns the logits of every one (n_tokens x n_vocab).
    pub fn forward_all(&self, state: &mut State, tokens: &[u32]) -> Result<Vec<f32>> {
        self.forward_inner(state, tokens, true)
    }

    fn forward_inner(&self, state: &mut State, tokens: &[u32], all: bool) -> Result<Vec<f32>> {
        if state.pos + tokens.len() > state.kv.n_ctx {
            return Err(EngineError::PromptTooLong {
                n_prompt: state.pos + tokens.len(),
                n_ctx: state.kv.n_ctx,
            });
        }
        // Prefill in micro-batches to bound scratch memory.
        let mut out = Vec::new();
        let mut scratch = std::mem::take(&mut state.scratch);
        let chunks: Vec<&[u32]> = tokens.chunks(self.ubatch.max(1)).collect();
        let last = chunks.len().saturating_sub(1);
        let mut result = Ok(());
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let mut seqs = [SeqBatch {
                kv: &mut state.kv,
                pos: state.pos,
                tokens: chunk,
                all_logits: all,
            }];
            match self.run(&mut seqs, &mut scratch) {
                Ok(mut l) => {
                    state.pos += chunk.len();
                    if all {
                        out.extend_from_slice(&l[0]);
                    } else if ci == last {
                        out = std::mem::take(&mut l[0]);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        state.scratch = scratch;
        result.map(|_| out)
    }

    /// One decoding step for several sequences at once (continuous batching): `tokens[i]` is fed to
    /// `states[i]`; returns each sequence's logits.
    pub fn forward_batch(
        &self,
        states: &mut [&mut State],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>> {
        let per_seq: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
        self.forward_mixed(states, &per_seq)
    }

    /// One forward step over several sequences with any number of tokens each: prompt chunks of
    /// newly admitted sequences ride along with the one-token decode steps of the others, so a
    /// new request does not stall the running ones. `tokens[i]` is fed to `states[i]` (an empty
    /// slice leaves that state alone and gets empty logits); returns each sequence's logits for
    /// its last token. The caller bounds the total token count (scratch grows with it; 512 is
    /// the single-sequence micro-batch).
    pub fn forward_mixed(
        &self,
        states: &mut [&mut State],
        tokens: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>> {
        if states.len() != tokens.len() {
            return Err(EngineError::BadConfig {
                what: "forward_mixed: one token slice per state".into(),
            });
        }
        let active: Vec<usize> = (0..states.len())
            .filter(|&i| !tokens[i].is_empty())
            .collect();
        let mut out = vec![Vec::new(); states.len()];
        let Some(&first) = active.first() else {
            return Ok(out);
        };
        for &i in &active {
            let s = &states[i];
            if s.pos + tokens[i].len() > s.kv.n_ctx {
                return Err(EngineError::ContextFull { n_ctx: s.kv.n_ctx });
            }
        }
        let mut scratch = std::mem::take(&mut states[first].scratch);
        let mut seqs: Vec<SeqBatch<'_>> = Vec::with_capacity(active.len());
        let mut it = active.iter().peekable();
        for (i, s) in states.iter_mut().enumerate() {
            if it.peek() == Some(&&i) {
                it.next();
                seqs.push(SeqBatch {
                    kv: &mut s.kv,
                    pos: s.pos,
                    tokens: tokens[i],
                    all_logits: false,
                });
            }
        }
        let r = self.run(&mut seqs, &mut scratch);
        drop(seqs);
        states[first].scratch = scratch;
        let logits = r?;
        for (&i, l) in active.iter().zip(logits) {
            states[i].pos += tokens[i].len();
            out[i] = l;
        }
        Ok(out)
    }
}

/// One sequence: KV cache, the next position, reusable scratch buffers.
pub struct State {
    pub kv: KvCache,
    pub pos: usize,
    scratch: Scratch,
}

impl State {
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Forgets everything after position `pos` (e.g. to restart a conversation).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }
}

/// Prefill micro-batch (tokens per forward pass of a long prompt).
pub const UBATCH: usize = 512;
/// The micro-batch when layers are streamed: its scratch is a quarter of [`UBATCH`]'s (1.7B:
/// 16 MB instead of 63 MB), room that goes to resident layers and so saves disk reads on every
/// decoded token; a long prompt reads the streamed layers once per 128 tokens instead of 512.
pub const STREAM_UBATCH: usize = 128;

/// Scratch activations for one sequence with prefill micro-batches of `ubatch` tokens (a rough
/// upper bound used by the budget).
pub fn scratch_bytes(cfg: &ModelConfig, n_ctx: usize, ubatch: usize) -> u64 {
    let ub = ubatch.min(n_ctx).max(1);
    let per_tok = 4 * (3 * cfg.n_embd + cfg.q_dim() * 2 + 2 * cfg.kv_dim() + 2 * cfg.n_ff) as u64;
    per_tok * ub as u64 + 4 * cfg.n_vocab as u64 * 2 + 8 * n_ctx as u64 * cfg.n_head as u64
}

/// Safety margin kept free inside the budget (allocator slack, thread stacks, the binary).
pub const SAFETY_MARGIN: u64 = 48 << 20;

/// The planner's view of a bound model: per-layer bytes from the residency units (so the sizes
/// are exactly what the streamer reads), the largest streamed piece for `opts.stream_piece_min`,
/// the output matrix (`None` when tied to the embedding table), KV cache per position and
/// scratch for `n_ctx` with micro-batches of `ubatch` tokens.
pub fn model_sizes(
    source: &Source,
    cfg: &ModelConfig,
    w: &Weights,
    opts: &LoadOptions,
    n_ctx: usize,
    ubatch: usize,
) -> ModelSizes {
    let units = residency::units(w, residency::piece_cap(w, opts.stream_piece_min));
    let n = w.layers.len();
    let layer_bytes: Vec<u64> = (0..n)
        .map(|l| {
            units[residency::attention_unit(l)].bytes()
                + units[residency::feed_forward_unit(l)].bytes()
        })
        .collect();
    let max_piece_bytes = units[..residency::output_unit(n)]
        .iter()
        .map(|u| u.max_piece_bytes())
        .max()
        .unwrap_or(0);
    let file_bytes: u64 = source.mappings().iter().map(|m| m.len() as u64).sum();
    ModelSizes {
        file_bytes,
        layer_bytes,
        token_embd_bytes: w.token_embd.len as u64,
        output_bytes: (!w.output_tied).then_some(w.output.len as u64),
        other_bytes: w.output_norm.len as u64,
        kv_bytes_per_token: KvCache::bytes_for(opts.cache_type, cfg.n_layer, 1, cfg.kv_dim()),
        scratch_bytes: scratch_bytes(cfg, n_ctx, ubatch),
        max_piece_bytes,
    }
}

/// What the planner is asked for a given set of load options.
fn plan_request(opts: &LoadOptions) -> PlanRequest {
    let mut req = PlanRequest::new(opts.n_ctx_hint);
    req.max_ram = opts.max_ram;
    req.force = match (opts.load, opts.streaming) {
        (LoadMode::Read, _) => Some(LoadStrategy::Read),
        (LoadMode::Mlock, _) => Some(LoadStrategy::Mlock),
        (LoadMode::Mmap, Streaming::Off) => Some(LoadStrategy::Mmap),
        (LoadMode::Mmap, Streaming::Force) => Some(LoadStrategy::Stream),
        (LoadMode::Mmap, Streaming::Auto) => None,
    };
    req
}

/// Ring buffers for streamed pieces: two overlap reading with compute; one when memory is short.
const RING: usize = 2;

/// How the streamer runs, decided with the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSetup {
    /// Ring buffers (0: nothing is streamed).
    pub ring: usize,
    /// O_DIRECT reads instead of buffered reads with readahead.
    pub direct_io: bool,
    /// Prefill micro-batch.
    pub ubatch: usize,
    /// Units of streamed layers that stay resident as well (half layers that fit the room the
    /// whole resident layers leave), by unit index.
    pub extra_resident: Vec<usize>,
}

/// `OUTCORE_STREAM_READ=direct|readahead` forces a read method (`Some(true)` = O_DIRECT).
fn forced_read_method() -> Option<bool> {
    match std::env::var("OUTCORE_STREAM_READ").as_deref() {
        Ok("direct") => Some(true),
        Ok("readahead") => Some(false),
        _ => None,
    }
}

/// Plans how to load a bound model under `limits` (see [`crate::memory::plan`]). When layers are
/// streamed, the plan is made again with the smaller prefill micro-batch [`STREAM_UBATCH`], and
/// the streamer's memory ([`residency::window_bytes`]: ring buffers of the largest piece, plus
/// the pieces in the page cache with buffered reads) is counted in the budget: resident layers
/// are given back, last first, until it fits. O_DIRECT reads into two ring buffers, or one
/// when even that does not fit; `OUTCORE_STREAM_READ=readahead` for buffered reads.
pub fn plan_load(
    source: &Source,
    cfg: &ModelConfig,
    w: &Weights,
    opts: &LoadOptions,
    limits: &MemLimits,
) -> (Plan, StreamSetup) {
    let req = plan_request(opts);
    let no_stream = |p: Plan, ubatch| {
        (
            p,
            StreamSetup {
                ring: 0,
                direct_io: false,
                ubatch,
                extra_resident: Vec::new(),
            },
        )
    };
    let sizes = model_sizes(source, cfg, w, opts, opts.n_ctx_hint, UBATCH);
    let p = plan(&sizes, limits, &req);
    if !matches!(&p.strategy, Strategy::Stream { streamed_layers, .. } if !streamed_layers.is_empty())
    {
        return no_stream(p, UBATCH);
    }
    let sizes = model_sizes(source, cfg, w, opts, opts.n_ctx_hint, STREAM_UBATCH);
    let mut p = plan(&sizes, limits, &req);
    let Strategy::Stream {
        resident_layers,
        streamed_layers,
    } = p.strategy.clone()
    else {
        // With the smaller scratch everything fits after all.
        return no_stream(p, STREAM_UBATCH);
    };
    if streamed_layers.is_empty() {
        return no_stream(p, STREAM_UBATCH);
    }
    let max_piece = p.window_bytes;
    let k0 = resident_layers.end;
    let fit = |ring: usize, direct: bool| -> Option<(usize, u64)> {
        let window = residency::window_bytes(max_piece, ring, direct);
        let mut k = k0;
        let mut resident = p.resident_bytes;
        while k > 0 && resident.saturating_add(window) > p.budget {
            k -= 1;
            resident -= sizes.layer_bytes[k];
        }
        (resident.saturating_add(window) <= p.budget).then_some((k, resident))
    };
    // O_DIRECT by default: it needs no page cache beside the ring (two pieces less than
    // readahead), and with piece-sized reads it was as fast or faster here (1.7B at a 75% cap,
    // alternating runs: 1.24-1.69 tok/s against 1.19-1.22 with readahead);
    // OUTCORE_STREAM_READ=readahead for buffered reads.
    let forced = forced_read_method();
    let choices = [(RING, true), (RING, false), (1, true)];
    let chosen = choices
        .iter()
        .filter(|(_, d)| forced.is_none_or(|f| f == *d))
        .find_map(|&(ring, direct)| fit(ring, direct).map(|(k, res)| (ring, direct, k, res)));
    // Nothing fits (the plan carries the error): the planner's split, one buffer.
    let (ring, direct_io, k, resident) =
        chosen.unwrap_or((1, forced.unwrap_or(true), k0, p.resident_bytes));
    let n = sizes.n_layers();
    if k != k0 {
        p.reason = p.reason.replace(
            &format!("{k0} of {n} layers stay resident, {} are", n - k0),
            &format!("{k} of {n} layers stay resident, {} are", n - k),
        );
    }
    let window = residency::window_bytes(max_piece, ring, direct_io);
    // The room whole layers leave: half layers of the streamed ones, in order, where they fit.
    let units = residency::units(w, residency::piece_cap(w, opts.stream_piece_min));
    let mut room = p.budget.saturating_sub(resident.saturating_add(window));
    let mut extra_resident = Vec::new();
    if chosen.is_some() {
        for l in k..n {
            for u in [
                residency::attention_unit(l),
                residency::feed_forward_unit(l),
            ] {
                let b = units[u].bytes();
                if b <= room {
                    room -= b;
                    extra_resident.push(u);
                }
            }
        }
    }
    let extra: u64 = extra_resident.iter().map(|&u| units[u].bytes()).sum();
    let streamed: u64 = sizes.layer_bytes[k..].iter().sum::<u64>() - extra;
    p.strategy = Strategy::Stream {
        resident_layers: 0..k,
        streamed_layers: k..n,
    };
    p.resident_bytes = resident + extra;
    p.streamed_bytes = streamed;
    p.window_bytes = window;
    if !extra_resident.is_empty() {
        let names: Vec<&str> = extra_resident
            .iter()
            .map(|&u| units[u].name.as_str())
            .collect();
        p.reason = format!(
            "{} ({} of them stay resident too: {})",
            p.reason,
            crate::memory::fmt_bytes(extra),
            names.join(", ")
        );
    }
    p.reason = format!(
        "{} in pieces of up to {} through a ring of {ring} buffer{}{} ({} in all), prefill in micro-batches of {STREAM_UBATCH} tokens",
        p.reason,
        crate::memory::fmt_bytes(max_piece),
        if ring == 1 { "" } else { "s" },
        if direct_io {
            " with O_DIRECT reads".to_string()
        } else {
            format!(
                " with readahead ({} more piece{} in the page cache)",
                1 + residency::read_ahead(),
                if residency::read_ahead() == 0 { "" } else { "s" }
            )
        },
        crate::memory::fmt_bytes(p.window_bytes)
    );
    (
        p,
        StreamSetup {
            ring,
            direct_io,
            ubatch: STREAM_UBATCH,
            extra_resident,
        },
    )
}

/// Decides which units stay resident (the [`plan_load`] plan) and starts the streamer when
/// some layers are streamed. Returns the plan, the residency manager and the prefill
/// micro-batch.
fn plan_residency(
    source: &Source,
    cfg: &ModelConfig,
    w: &Weights,
    opts: &LoadOptions,
) -> Result<(Plan, Option<Residency>, usize)> {
    // Without a readable /proc only --max-ram (if given) limits the plan.
    let limits = MemLimits::probe().unwrap_or_else(|_| MemLimits::unconstrained(u64::MAX));
    let (p, setup) = plan_load(source, cfg, w, opts, &limits);
    let Strategy::Stream {
        resident_layers, ..
    } = &p.strategy
    else {
        return Ok((p, None, setup.ubatch));
    };
    if setup.ring == 0 {
        return Ok((p, None, setup.ubatch));
    }
    let units = residency::units(w, residency::piece_cap(w, opts.stream_piece_min));
    // Layers in the resident range, the half layers the plan adds and the output matrix (a hot
    // non-layer tensor) stay mapped.
    let resident: Vec<bool> = (0..units.len())
        .map(|u| {
            setup.extra_resident.contains(&u)
                || residency::unit_layer(u, w.layers.len())
                    .is_none_or(|l| resident_layers.contains(&l))
        })
        .collect();
    let rc = ResidencyConfig {
        resident,
        ring: setup.ring,
        direct_io: setup.direct_io,
    };
    let r = Residency::new(units, &rc, &source.paths()).map_err(|e| EngineError::Io {
        path: source.paths()[0].clone(),
        source: e,
    })?;
    // Streamed units are read into the ring, never through the mapping: let their pages go.
    for (u, unit) in r.units.iter().enumerate() {
        if !r.is_resident(u) {
            for part in &unit.parts {
                let m = source.mappings()[part.shard];
                let _ = m.advise_dontneed(part.range.clone());
            }
        }
    }
    Ok((p, Some(r), setup.ubatch))
}

/// Keeps the other workers of the compute pool spinning on rayon's queues for the length of one
/// forward pass, so the many small parallel steps of a token (one per matmul, attention, ...)
/// start at spin latency instead of a futex wake-up each (rayon parks idle workers after a few
/// rounds). A spinner that finds no work for 2 ms stops (spin briefly, then park).
struct Spinners(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Spinners {
    fn start(n: usize) -> Spinners {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..n {
            let stop = stop.clone();
            rayon::spawn(move || {
                use std::sync::atomic::Ordering;
                let mut last_work = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    match rayon::yield_now() {
                        Some(rayon::Yield::Executed) => last_work = std::time::Instant::now(),
                        _ => {
                            if last_work.elapsed() > std::time::Duration::from_millis(2) {
                                break;
                            }
                            std::hint::spin_loop();
                        }
                    }
                }
            });
        }
        Spinners(stop)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
