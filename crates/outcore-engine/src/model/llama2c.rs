//! Loading llama2.c "version 2" int8 checkpoints (`outcore export --format llama2c`, runq.c).
//!
//! The int8 groups (one f32 scale per `group_size` values) are re-laid out at load time as Q8_0
//! blocks in memory when the group size is a multiple of 32: the int8 values are kept, each
//! 32-block takes its group's scale rounded to f16 (the one numeric change; relative 2^-11 on the
//! scale). Other group sizes are expanded to F32. The forward pass then runs on the normal
//! kernels; q/k rows are in Meta's order, i.e. llama.cpp's interleaved RoPE layout.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use outcore_format::gguf::GgufFile;
use outcore_format::llama2c::{Llama2cFile, Llama2cVocab};
use outcore_format::mapping::{LoadMode, Mapping};
use outcore_format::{Array, GgmlType, Metadata, TensorView, Value};

use crate::config::{Arch, ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::tokenizer::{keys, Tokenizer};

/// True when the file at `path` starts with llama2.c's v2 magic.
pub fn is_llama2c(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && outcore_format::llama2c::has_magic(&magic)
}

/// A llama2.c checkpoint re-laid out in memory, by GGUF tensor name.
pub struct Llama2cSource {
    pub image: Mapping,
    index: HashMap<String, (GgmlType, [u64; 2], Range<usize>)>,
    pub config: ModelConfig,
    pub vocab_size: usize,
}

fn fmt_err(path: &Path, e: outcore_format::llama2c::Llama2cError) -> EngineError {
    EngineError::Unsupported {
        what: format!("llama2.c checkpoint {}: {e}", path.display()),
    }
}

impl Llama2cSource {
    pub fn open(path: &Path) -> Result<Llama2cSource> {
        let f = Llama2cFile::open(path, LoadMode::Mmap).map_err(|e| fmt_err(path, e))?;
        let c = f.config().clone();
        let mut image = Vec::new();
        let mut index = HashMap::new();
        for t in f.tensors() {
            // Keep every tensor 32-byte aligned in the image.
            image.resize(image.len().div_ceil(32) * 32, 0);
            let start = image.len();
            let ty = f.relayout(t, &mut image);
            index.insert(t.name.clone(), (ty, t.shape, start..image.len()));
        }
        let image = Mapping::from_bytes(path, &image).map_err(|source| EngineError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        let head_dim = c.head_dim() as usize;
        let config = ModelConfig {
            arch: Arch::Llama,
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "llama2c".into()),
            n_vocab: c.vocab_size as usize,
            n_embd: c.dim as usize,
            n_layer: c.n_layers as usize,
            n_head: c.n_heads as usize,
            n_head_kv: c.n_kv_heads as usize,
            head_dim,
            n_ff: c.hidden_dim as usize,
            rms_eps: c.rms_eps(),
            rope_base: c.rope_theta(),
            rope_freq_scale: 1.0,
            rope_dims: head_dim,
            rope_style: RopeStyle::Interleaved,
            n_ctx_train: c.max_seq_len as usize,
            qkv_bias: false,
        };
        Ok(Llama2cSource {
            image,
            index,
            config,
            vocab_size: c.vocab_size as usize,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let (ty, shape, r) = self.index.get(name)?;
        let shape: &[u64] = if shape[1] == 1 { &shape[..1] } else { shape };
        Some(TensorView {
            name: self.index.get_key_value(name)?.0,
            ty: *ty,
            shape,
            bytes: &self.image[r.clone()],
        })
    }

    /// The tokenizer: `explicit`, else `tokenizer.bin` beside the checkpoint. A GGUF file or an
    /// HF directory gives the exact tokenizer; a llama2.c tokenizer.bin becomes a SentencePiece
    /// vocabulary (pieces as text with ' ' -> '▁', single non-UTF-8 bytes as `<0xXX>`).
    pub fn tokenizer(&self, model: &Path, explicit: Option<&Path>) -> Result<Option<Tokenizer>> {
        let beside = model.with_file_name("tokenizer.bin");
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if beside.is_file() => beside,
            None => return Ok(None),
        };
        let tok_err = |e: String| EngineError::Tokenizer(format!("{}: {e}", path.display()));
        if path.is_dir() {
            let tc = path.join("tokenizer_config.json");
            let tc = tc.is_file().then_some(tc);
            return Tokenizer::from_hf_json(path.join("tokenizer.json"), tc.as_deref())
                .map(Some)
                .map_err(|e| tok_err(e.to_string()));
        }
        if let Ok(g) = GgufFile::open(&path, LoadMode::Mmap) {
            return Tokenizer::from_metadata(g.metadata())
                .map(Some)
                .map_err(|e| tok_err(e.to_string()));
        }
        let v =
            Llama2cVocab::read(&path, Some(self.vocab_size)).map_err(|e| tok_err(e.to_string()))?;
        Tokenizer::from_metadata(&vocab_metadata(&v))
            .map(Some)
            .map_err(|e| tok_err(e.to_string()))
    }
}

/// GGUF-style SentencePiece metadata for a llama2.c vocabulary (bos 1, eos 2 as llama2.c).
fn vocab_metadata(v: &Llama2cVocab) -> Metadata {
    let mut tokens = Vec::with_capacity(v.pieces.len());
    let mut types = Vec::with_capacity(v.pieces.len());
    let mut seen = std::collections::HashSet::new();
    for (i, p) in v.pieces.iter().enumerate() {
        let (text, ty) = match std::str::from_utf8(p) {
            Ok(s) if s.starts_with("<0x") && s.len() == 6 => (s.to_string(), 6),
            Ok(s) if i < 3 && s.starts_with('<') => (s.to_string(), if i == 0 { 2 } else { 3 }),
            Ok(s) => (s.replace(' ', "\u{2581}"), 1),
            Err(_) if p.len() == 1 => (format!("<0x{:02X}>", p[0]), 6),
            Err(_) => (String::from_utf8_lossy(p).replace(' ', "\u{2581}"), 1),
        };
        // Pieces must stay unique: a lossy or '▁'-mapped text that collides gets the byte escapes.
        let text = if seen.insert(text.clone()) {
            text
        } else {
            let esc: String = p.iter().map(|b| format!("<0x{b:02X}>")).collect();
            seen.insert(esc.clone());
            esc
        };
        tokens.push(text);
        types.push(ty);
    }
    let mut md = Metadata::new();
    md.insert(keys::MODEL, Value::String("llama".into()));
    md.insert(keys::TOKENS, Value::Array(Array::String(tokens)));
    md.insert(keys::SCORES, Value::Array(Array::F32(v.scores.clone())));
    md.insert(keys::TOKEN_TYPE, Value::Array(Array::I32(types)));
    md.insert(keys::BOS_ID, Value::U32(1));
    md.insert(keys::EOS_ID, Value::U32(2));
    md
}
