//! A deterministic fake engine for tests: bytes are tokens, and the "model" answers with a fixed
//! reply, one byte per step, then EOS (or repeats it forever in `endless` mode).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    ChatMessage, Engine, EngineError, Loader, MemoryUsage, Sampling, SeqState, TextDecoder,
    TokenSampler,
};
use crate::config::ModelConfig;
use crate::files::{FileId, LoadedFile};

pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
const BYTE_BASE: u32 = 3;
const N_VOCAB: usize = 256 + BYTE_BASE as usize;

/// Counters tests look at.
#[derive(Debug, Default)]
pub struct FakeStats {
    pub loads: AtomicUsize,
    pub drops: AtomicUsize,
    /// Prompt tokens fed (in chunks, by `forward_mixed`).
    pub prompt_tokens: AtomicUsize,
    /// Forward steps (`forward_mixed` calls that fed at least one token).
    pub decode_steps: AtomicUsize,
    /// Steps that fed a prompt chunk of one sequence and a decode token of another.
    pub mixed_steps: AtomicUsize,
    /// Largest number of sequences fed in one step.
    pub max_batch: AtomicUsize,
    /// Most tokens fed in one step, and in one sequence's slice of a step.
    pub max_step_tokens: AtomicUsize,
    pub max_chunk: AtomicUsize,
    /// Sequences alive now (created and not dropped): at most `parallel` while loaded.
    pub live_sequences: AtomicUsize,
    /// Sequences reused for a new request.
    pub resets: AtomicUsize,
}

#[derive(Clone, Debug)]
pub struct FakeOptions {
    pub reply: String,
    /// Repeat the reply instead of ending with EOS.
    pub endless: bool,
    pub step_delay: Duration,
    pub load_delay: Duration,
    pub n_ctx: usize,
    /// Loads fail (to test 503s).
    pub fail_load: bool,
    /// The reply is the model file's contents (to tell a reloaded file from the old one); a
    /// file that starts with "FAIL" does not load.
    pub reply_from_file: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            reply: "Hello there!".into(),
            endless: false,
            step_delay: Duration::ZERO,
            load_delay: Duration::ZERO,
            n_ctx: 64,
            fail_load: false,
            reply_from_file: false,
        }
    }
}

pub struct FakeLoader {
    pub options: FakeOptions,
    pub stats: Arc<FakeStats>,
}

impl FakeLoader {
    pub fn new(options: FakeOptions) -> Arc<FakeLoader> {
        Arc::new(FakeLoader {
            options,
            stats: Arc::default(),
        })
    }
}

impl Loader for FakeLoader {
    fn estimate_bytes(&self, cfg: &ModelConfig) -> u64 {
        std::fs::metadata(&cfg.path).map(|m| m.len()).unwrap_or(0)
    }

    fn load(&self, cfg: &ModelConfig) -> Result<Arc<dyn Engine>, EngineError> {
        std::thread::sleep(self.options.load_delay);
        if self.options.fail_load {
            return Err(EngineError::Load {
                name: cfg.name.clone(),
                path: cfg.path.clone(),
                reason: "fake load failure".into(),
            });
        }
        let load_err = |reason: String| EngineError::Load {
            name: cfg.name.clone(),
            path: cfg.path.clone(),
            reason,
        };
        // Like a real engine: the identity of the file as opened, then its bytes.
        let file = std::fs::File::open(&cfg.path).map_err(|e| load_err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| load_err(e.to_string()))?;
        let mut options = self.options.clone();
        if options.reply_from_file {
            let text = std::io::read_to_string(file).map_err(|e| load_err(e.to_string()))?;
            if text.starts_with("FAIL") {
                return Err(load_err("the file says FAIL".into()));
            }
            options.reply = text;
        }
        self.stats.loads.fetch_add(1, Ordering::SeqCst);
        let n_ctx = cfg.n_ctx.unwrap_or(self.options.n_ctx);
        Ok(Arc::new(FakeEngine {
            options,
            n_ctx,
            stats: self.stats.clone(),
            file: LoadedFile {
                path: cfg.path.clone(),
                id: FileId::from_metadata(&meta),
                mapped: true,
            },
        }))
    }
}

pub struct FakeEngine {
    options: FakeOptions,
    n_ctx: usize,
    stats: Arc<FakeStats>,
    file: LoadedFile,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.stats.drops.fetch_add(1, Ordering::SeqCst);
    }
}

struct FakeSeq {
    pos: usize,
    /// Reply bytes fed back so far: a one-token feed equal to `expect` is a decode step.
    generated: usize,
    /// The token the last logits chose.
    expect: Option<u32>,
    stats: Arc<FakeStats>,
}

impl Drop for FakeSeq {
    fn drop(&mut self) {
        self.stats.live_sequences.fetch_sub(1, Ordering::SeqCst);
    }
}

fn seq(state: &mut SeqState) -> Result<&mut FakeSeq, EngineError> {
    state
        .downcast_mut::<FakeSeq>()
        .ok_or_else(|| EngineError::Forward("not a fake sequence".into()))
}

impl FakeEngine {
    fn logits_for(&self, s: &FakeSeq) -> Vec<f32> {
        let reply = self.options.reply.as_bytes();
        let next = if reply.is_empty() {
            EOS
        } else if self.options.endless {
            reply[s.generated % reply.len()] as u32 + BYTE_BASE
        } else {
            reply
                .get(s.generated)
                .map_or(EOS, |&b| b as u32 + BYTE_BASE)
        };
        let mut logits = vec![0.0; N_VOCAB];
        logits[next as usize] = 100.0;
        logits
    }
}

impl Engine for FakeEngine {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn n_vocab(&self) -> usize {
        N_VOCAB
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        Ok(std::iter::once(BOS)
            .chain(text.bytes().map(|b| b as u32 + BYTE_BASE))
            .collect())
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let mut out = String::new();
        for m in messages {
            out.push_str(&format!("<{}>{}\n", m.role, m.content));
        }
        out.push_str("<assistant>");
        Ok(out)
    }

    fn is_eog(&self, token: u32) -> bool {
        token == EOS
    }

    fn decoder(&self) -> Box<dyn TextDecoder> {
        Box::new(ByteDecoder(Vec::new()))
    }

    fn sampler(&self, _sampling: &Sampling) -> Box<dyn TokenSampler> {
        Box::new(Argmax)
    }

    fn new_sequence(&self) -> Result<SeqState, EngineError> {
        self.stats.live_sequences.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeSeq {
            pos: 0,
            generated: 0,
            expect: None,
            stats: self.stats.clone(),
        }))
    }

    fn reset_sequence(&self, state: &mut SeqState) -> Result<(), EngineError> {
        let s = seq(state)?;
        s.pos = 0;
        s.generated = 0;
        s.expect = None;
        self.stats.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn forward_mixed(
        &self,
        seqs: &mut [&mut SeqState],
        tokens: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        if seqs.len() != tokens.len() {
            return Err(EngineError::Forward("one token slice per sequence".into()));
        }
        // "PANIC" in a prompt exercises the worker's catch_unwind.
        if tokens.iter().any(|t| {
            t.windows(5).any(|w| {
                w.iter()
                    .map(|&t| (t - BYTE_BASE.min(t)) as u8)
                    .eq(*b"PANIC")
            })
        }) {
            panic!("fake engine asked to panic");
        }
        // Check everything first: on error no sequence advances (as the trait promises).
        for (state, t) in seqs.iter_mut().zip(tokens) {
            if seq(state)?.pos + t.len() > self.n_ctx {
                return Err(EngineError::Forward("context full".into()));
            }
        }
        let fed = tokens.iter().filter(|t| !t.is_empty()).count();
        if fed == 0 {
            return Ok(vec![Vec::new(); seqs.len()]);
        }
        std::thread::sleep(self.options.step_delay);
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        let mut prompts = 0;
        let mut decodes = 0;
        let mut out = Vec::with_capacity(seqs.len());
        for (state, t) in seqs.iter_mut().zip(tokens) {
            let s = seq(state)?;
            if t.is_empty() {
                out.push(Vec::new());
                continue;
            }
            self.stats.max_chunk.fetch_max(t.len(), Ordering::SeqCst);
            s.pos += t.len();
            if t.len() == 1 && s.expect == Some(t[0]) {
                s.generated += 1;
                decodes += 1;
            } else {
                self.stats
                    .prompt_tokens
                    .fetch_add(t.len(), Ordering::SeqCst);
                prompts += 1;
            }
            let logits = self.logits_for(s);
            s.expect = Some(Argmax.sample(&mut logits.clone(), &[]));
            out.push(logits);
        }
        self.stats.decode_steps.fetch_add(1, Ordering::SeqCst);
        self.stats.max_batch.fetch_max(fed, Ordering::SeqCst);
        self.stats
            .max_step_tokens
            .fetch_max(total, Ordering::SeqCst);
        if prompts > 0 && decodes > 0 {
            self.stats.mixed_steps.fetch_add(1, Ordering::SeqCst);
        }
        Ok(out)
    }

    fn memory(&self) -> MemoryUsage {
        MemoryUsage {
            resident_bytes: 4096,
            file_backed_bytes: 8192,
        }
    }

    fn files(&self) -> Vec<LoadedFile> {
        vec![self.file.clone()]
    }
}

struct Argmax;

impl TokenSampler for Argmax {
    fn sample(&mut self, logits: &mut [f32], _history: &[u32]) -> u32 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    }
}

/// Bytes to text, holding back an incomplete UTF-8 sequence.
struct ByteDecoder(Vec<u8>);

impl TextDecoder for ByteDecoder {
    fn push(&mut self, token: u32) -> String {
        if token >= BYTE_BASE {
            self.0.push((token - BYTE_BASE) as u8);
        }
        match std::str::from_utf8(&self.0) {
            Ok(s) => {
                let s = s.to_string();
                self.0.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.0[..valid]).into_owned();
                self.0.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.0).into_owned();
                self.0.clear();
                s
            }
        }
    }

    fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.0).into_owned();
        self.0.clear();
        s
    }
}
