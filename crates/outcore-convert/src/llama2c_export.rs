//! GGUF or HF checkpoint -> llama2.c "version 2" int8 checkpoint + `tokenizer.bin`
//! (as karpathy/llama2.c `export.py::version2_export` writes them, read by `runq.c`).
//!
//! RoPE layout: llama2.c rotates pairs (2i, 2i+1) on Meta's q/k row order, which is exactly
//! llama.cpp's GGUF order (its converter permutes HF rows for the "normal" RoPE). So GGUF q/k
//! rows are written as stored, and HF rows go through the converter's permutation
//! ([`crate::names::permuted_source_row`]).
//!
//! Streaming: each tensor is read a block of rows at a time, quantized, and its int8 values
//! written at once; only its f32 scales (1/16 of the f32 size at group 64) are held until the
//! tensor ends. The output goes through [`AtomicFile`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use outcore_format::gguf::GgufFile;
use outcore_format::llama2c::{self, Kind, Llama2cConfig, Llama2cVocab};
use outcore_format::mapping::LoadMode;
use outcore_format::{AtomicFile, GgmlType, Metadata};
use rayon::prelude::*;

use crate::codec::decode_row;
use crate::error::{ConvertError, Result};
use crate::hf::HfConfig;
use crate::names::{self, TensorPlan};
use crate::pipeline::Progress;
use crate::source::Checkpoint;

/// A model's weights as f32 rows by GGUF name, whatever the file: the reader shared by the
/// llama2.c export and the low-rank compressor.
pub enum WeightSource {
    Gguf(GgufFile),
    Hf {
        ck: Checkpoint,
        cfg: HfConfig,
        plans: HashMap<String, TensorPlan>,
    },
}

fn bad(tensor: &str, problem: impl Into<String>) -> ConvertError {
    ConvertError::BadTensor {
        tensor: tensor.to_string(),
        problem: problem.into(),
    }
}

impl WeightSource {
    /// Opens a GGUF file or an HF checkpoint directory.
    pub fn open(path: &Path) -> Result<WeightSource> {
        if path.is_dir() {
            let cfg = HfConfig::load(path)?;
            let ck = Checkpoint::open(path)?;
            let plans = names::plan(&cfg)
                .into_iter()
                .map(|p| (p.gguf_name.clone(), p))
                .collect();
            Ok(WeightSource::Hf { ck, cfg, plans })
        } else {
            Ok(WeightSource::Gguf(GgufFile::open(path, LoadMode::Mmap)?))
        }
    }

    /// ggml shape [row length, rows] of a tensor, `None` when absent.
    pub fn shape(&self, name: &str) -> Option<[u64; 2]> {
        let s: Vec<u64> = match self {
            WeightSource::Gguf(f) => f.tensor(name)?.shape.to_vec(),
            WeightSource::Hf { ck, plans, .. } => {
                let p = plans.get(name)?;
                ck.info(&p.hf_name)?
                    .hf_shape
                    .iter()
                    .rev()
                    .copied()
                    .collect()
            }
        };
        Some([s[0], s.iter().skip(1).product::<u64>().max(1)])
    }

    /// Reads rows `r0..r0 + dst.len() / row_len` of `name` as f32 (HF q/k rows permuted into
    /// GGUF order).
    pub fn read_rows(&self, name: &str, r0: u64, dst: &mut [f32]) -> Result<()> {
        let [ne0, ne1] = self.shape(name).ok_or_else(|| bad(name, "missing"))?;
        let n = dst.len() as u64 / ne0.max(1);
        if r0 + n > ne1 {
            return Err(bad(name, format!("rows {r0}+{n} beyond {ne1}")));
        }
        let (view, map_row): (_, Box<dyn Fn(u64) -> u64 + Sync>) = match self {
            WeightSource::Gguf(f) => (f.tensor(name).ok_or_else(|| bad(name, "missing"))?, {
                Box::new(|r| r)
            }),
            WeightSource::Hf { ck, plans, .. } => {
                let p = &plans[name];
                let v = ck
                    .view(&p.hf_name)
                    .ok_or_else(|| ConvertError::MissingTensor {
                        tensor: p.hf_name.clone(),
                        gguf: name.to_string(),
                    })?;
                match p.permute_heads {
                    Some(h) => {
                        let per = ne1 / h;
                        (v, Box::new(move |r| names::permuted_source_row(r, per)))
                    }
                    None => (v, Box::new(|r| r)),
                }
            }
        };
        let rb = view
            .ty
            .row_bytes(ne0)
            .ok_or_else(|| bad(name, "row length"))? as usize;
        dst.par_chunks_mut(ne0 as usize)
            .enumerate()
            .try_for_each(|(i, out)| {
                let src = map_row(r0 + i as u64) as usize;
                decode_row(view.ty, &view.bytes[src * rb..(src + 1) * rb], out, name)
            })
    }

    /// Bytes of a tensor as stored.
    pub fn stored_bytes(&self, name: &str) -> u64 {
        match self {
            WeightSource::Gguf(f) => f.tensor(name).map_or(0, |t| t.bytes.len() as u64),
            WeightSource::Hf { ck, plans, .. } => plans
                .get(name)
                .and_then(|p| ck.info(&p.hf_name))
                .map_or(0, |i| i.len),
        }
    }

    /// GGUF-style metadata: the file's own, or built from config.json + tokenizer files.
    pub fn metadata(&self) -> Result<Metadata> {
        match self {
            WeightSource::Gguf(f) => Ok(f.metadata().clone()),
            WeightSource::Hf { ck, cfg, .. } => {
                let mut md = Metadata::new();
                for (k, v) in cfg.gguf_metadata("model", 0) {
                    md.insert(k, v);
                }
                if let Some(v) =
                    crate::vocab::Vocab::load(&ck.dir, cfg.n_vocab, &cfg.token_ids, None)?
                {
                    for (k, v) in v.gguf_metadata() {
                        md.insert(k, v);
                    }
                }
                Ok(md)
            }
        }
    }
}

/// How the int8 values of a group are rounded (the scale is `max|w| / 127` either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rounding {
    /// ggml's Q8_0 reference quantizer (`quantize_row_q8_0_ref`, also gguf-py's):
    /// `q = round_half_away(w * (1 / s))`. With group size 32 the int8 values are exactly those
    /// of the same weights quantized to Q8_0 in GGUF, and the scales round to its f16 `d`.
    #[default]
    Ggml,
    /// export.py's `quantize_q80`: `q = round_half_even(w / s)`. It differs from `Ggml` by one
    /// unit on values that lie within a float rounding error of a half-integer (about 1e-4 of
    /// the demo model's values).
    ExportPy,
}

/// Symmetric int8 groups as ggml's Q8_0 rounds them (see [`Rounding::Ggml`]). Appends to `q`
/// and `scales`; returns the largest absolute reconstruction error.
pub fn quantize_groups_ggml(src: &[f32], gs: usize, q: &mut Vec<i8>, scales: &mut Vec<f32>) -> f32 {
    let mut err = 0f32;
    for g in src.chunks(gs) {
        let amax = g.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        scales.push(d);
        for &x in g {
            // f32::round is C's roundf: halves away from zero.
            let v = (x * id).round().clamp(-127.0, 127.0);
            q.push(v as i8);
            err = err.max((v * d - x).abs());
        }
    }
    err
}

/// Options of `outcore export --format llama2c`.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Where `tokenizer.bin` goes (None: no tokenizer).
    pub tokenizer_out: Option<PathBuf>,
    pub group_size: u32,
    pub rounding: Rounding,
    /// max_seq_len in the header (default: the model's training context).
    pub max_seq_len: Option<u32>,
    pub force: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub config: Option<Llama2cConfig>,
    pub warnings: Vec<String>,
    pub bytes: u64,
    /// Largest absolute quantization error over all groups.
    pub max_error: f32,
    pub tokenizer_tokens: usize,
}

fn md_u(md: &Metadata, arch: &str, k: &str) -> Result<u64> {
    let key = format!("{arch}.{k}");
    md.get(&key)
        .and_then(|v| v.as_int())
        .map(|v| v as u64)
        .ok_or_else(|| ConvertError::BadConfig {
            path: PathBuf::from("metadata"),
            key,
            problem: "missing or not an integer".into(),
        })
}

/// The llama2.c header for a source, and the group size actually used.
pub fn plan_config(
    src: &WeightSource,
    md: &Metadata,
    group_size: u32,
    max_seq_len: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<Llama2cConfig> {
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("llama")
        .to_string();
    if arch != "llama" && arch != "mistral" {
        return Err(ConvertError::UnsupportedArch { arch });
    }
    let dim = md_u(md, &arch, "embedding_length")? as u32;
    let n_heads = md_u(md, &arch, "attention.head_count")? as u32;
    let n_kv_heads = md_u(md, &arch, "attention.head_count_kv").unwrap_or(n_heads as u64) as u32;
    let [_, vocab] = src
        .shape("token_embd.weight")
        .ok_or_else(|| bad("token_embd.weight", "missing"))?;
    let cfg_ff = md_u(md, &arch, "feed_forward_length")? as u32;
    let n_layers = md_u(md, &arch, "block_count")? as u32;
    if let Some(kl) = md.get(&format!("{arch}.attention.key_length")) {
        if kl.as_int() != Some((dim / n_heads.max(1)) as i128) {
            return Err(ConvertError::BadConfig {
                path: PathBuf::from("metadata"),
                key: format!("{arch}.attention.key_length"),
                problem: "llama2.c needs head_dim = dim / n_heads".into(),
            });
        }
    }
    let ctx = md_u(md, &arch, "context_length").unwrap_or(2048) as u32;
    let theta = md
        .get(&format!("{arch}.rope.freq_base"))
        .and_then(|v| v.as_f64())
        .unwrap_or(10000.0) as f32;
    let eps = md
        .get(&format!("{arch}.attention.layer_norm_rms_epsilon"))
        .and_then(|v| v.as_f64())
        .unwrap_or(1e-5) as f32;
    let mut gs = group_size.max(1);
    while gs > 1 && !(dim.is_multiple_of(gs) && cfg_ff.is_multiple_of(gs)) {
        let next = gs / 2;
        warnings.push(format!(
            "group size {gs} does not divide dim {dim} and hidden_dim {cfg_ff}; using {next}"
        ));
        gs = next;
    }
    Ok(Llama2cConfig {
        dim,
        hidden_dim: cfg_ff,
        n_layers,
        n_heads,
        n_kv_heads,
        vocab_size: vocab as u32,
        max_seq_len: max_seq_len.unwrap_or(ctx),
        shared_classifier: src.shape("output.weight").is_none(),
        group_size: gs,
        rope_theta: Some(theta),
        rms_eps: Some(eps),
    })
}

/// GPT-2's byte <-> printable-unicode map, inverted: char -> byte.
fn gpt2_unicode_to_byte() -> HashMap<char, u8> {
    let mut m = HashMap::new();
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let c = if printable {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        m.insert(char::from_u32(c).unwrap_or('\u{0}'), b);
    }
    m
}

/// llama2.c's tokenizer from GGUF tokenizer metadata. SentencePiece pieces get '▁' -> ' ';
/// GPT-2 byte-level pieces are turned back into raw bytes (control tokens keep their text).
/// Scores: the file's, or -id (merge priority follows ids in BPE vocabularies).
pub fn vocab_from_metadata(md: &Metadata) -> Result<Llama2cVocab> {
    let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
    let model = md.opt_str("tokenizer.ggml.model")?.unwrap_or("llama");
    let scores = md
        .get("tokenizer.ggml.scores")
        .and_then(|v| v.as_array())
        .and_then(|a| match a {
            outcore_format::Array::F32(v) => Some(v.clone()),
            _ => None,
        });
    let types = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .and_then(|a| a.to_i64_vec());
    let inv = gpt2_unicode_to_byte();
    let mut pieces = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let ty = types.as_ref().and_then(|v| v.get(i)).copied().unwrap_or(1);
        let p: Vec<u8> = if model == "gpt2" && ty != 3 && ty != 4 {
            match t
                .chars()
                .map(|c| inv.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
            {
                Some(b) => b,
                None => t.as_bytes().to_vec(),
            }
        } else {
            t.replace('\u{2581}', " ").into_bytes()
        };
        pieces.push(p);
    }
    let scores = match scores {
        Some(s) if s.len() == tokens.len() => s,
        _ => (0..tokens.len()).map(|i| -(i as f32)).collect(),
    };
    Ok(Llama2cVocab::new(pieces, scores))
}

/// Writes the llama2.c checkpoint (and tokenizer.bin).
pub fn export_llama2c(opts: &ExportOptions, progress: &dyn Progress) -> Result<ExportReport> {
    let src = WeightSource::open(&opts.input)?;
    let md = src.metadata()?;
    let mut report = ExportReport::default();
    let cfg = plan_config(
        &src,
        &md,
        opts.group_size,
        opts.max_seq_len,
        &mut report.warnings,
    )?;
    let layout = cfg.layout();
    // Check every tensor before writing anything.
    for t in &layout {
        let got = src
            .shape(&t.name)
            .ok_or_else(|| ConvertError::MissingTensor {
                tensor: t.name.clone(),
                gguf: t.name.clone(),
            })?;
        if got != t.shape {
            return Err(ConvertError::ShapeMismatch {
                tensor: t.name.clone(),
                expected: t.shape.to_vec(),
                found: got.to_vec(),
            });
        }
    }
    let total: u64 = layout.iter().map(|t| src.stored_bytes(&t.name)).sum();
    progress.start(total);
    let mut out = AtomicFile::create(&opts.output, opts.force)?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ConvertError::io(&p, e)
    };
    let tmp = out.temp_path().to_path_buf();
    out.write_all(&cfg.to_header()).map_err(io(&tmp))?;
    let gs = cfg.group_size as usize;
    // Blocks of about 4M values.
    let mut buf = Vec::new();
    for t in &layout {
        progress.tensor(
            &t.name,
            if t.kind == Kind::F32 {
                GgmlType::F32
            } else {
                GgmlType::Q8_0
            },
        );
        let [ne0, ne1] = t.shape;
        let rows_per = ((1u64 << 22) / ne0).max(1);
        let (mut q, mut scales) = (Vec::new(), Vec::new());
        let mut r0 = 0;
        while r0 < ne1 {
            let n = rows_per.min(ne1 - r0);
            buf.resize((n * ne0) as usize, 0f32);
            src.read_rows(&t.name, r0, &mut buf)?;
            match t.kind {
                Kind::F32 => {
                    let bytes: Vec<u8> = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
                    out.write_all(&bytes).map_err(io(&tmp))?;
                }
                Kind::Q8 => {
                    q.clear();
                    let err = match opts.rounding {
                        Rounding::Ggml => quantize_groups_ggml(&buf, gs, &mut q, &mut scales),
                        Rounding::ExportPy => {
                            llama2c::quantize_groups(&buf, gs, &mut q, &mut scales)
                        }
                    };
                    report.max_error = report.max_error.max(err);
                    let qb: Vec<u8> = q.iter().map(|&v| v as u8).collect();
                    out.write_all(&qb).map_err(io(&tmp))?;
                }
            }
            r0 += n;
        }
        if t.kind == Kind::Q8 {
            let sb: Vec<u8> = scales.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.write_all(&sb).map_err(io(&tmp))?;
        }
        progress.advance(src.stored_bytes(&t.name));
    }
    out.commit()?;
    report.bytes = cfg.file_len();
    if let Some(tp) = &opts.tokenizer_out {
        let vocab = vocab_from_metadata(&md)?;
        if vocab.pieces.len() != cfg.vocab_size as usize {
            report.warnings.push(format!(
                "the tokenizer has {} tokens, the embeddings {} rows",
                vocab.pieces.len(),
                cfg.vocab_size
            ));
        }
        let mut tf = AtomicFile::create(tp, opts.force)?;
        let tmp = tf.temp_path().to_path_buf();
        vocab.write_to(&mut tf).map_err(io(&tmp))?;
        tf.commit()?;
        report.tokenizer_tokens = vocab.pieces.len();
    }
    progress.finish();
    report.config = Some(cfg);
    Ok(report)
}
