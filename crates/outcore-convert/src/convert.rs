//! HF checkpoint directory -> GGUF: validate everything, then stream tensor by tensor.

use std::path::{Path, PathBuf};

use outcore_engine::memory::{fmt_bytes, MemLimits};
use outcore_format::{GgmlType, Metadata};

use crate::codec::decode_row;
use crate::error::{ConvertError, Result};
use crate::hf::{default_name, Arch, HfConfig};
use crate::mix::{choose_type, FileType, MixContext};
use crate::names::{self, permuted_source_row, TensorPlan};
use crate::pipeline::{self, Mode, OutTensor, Progress, RowSource, VecRows, WriteStats};
use crate::source::Checkpoint;
use crate::vocab::Vocab;

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeChoice {
    Auto,
    Standard,
    LowMemory,
}

impl ModeChoice {
    pub fn parse(s: &str) -> Result<ModeChoice> {
        match s {
            "auto" => Ok(ModeChoice::Auto),
            "standard" => Ok(ModeChoice::Standard),
            "low-memory" => Ok(ModeChoice::LowMemory),
            _ => Err(ConvertError::Invalid {
                what: format!("unknown mode `{s}` (expected auto, standard, low-memory)"),
            }),
        }
    }

    /// Resolves `auto` against the detected memory; returns the mode and a sentence saying why.
    pub fn resolve(self, largest_f32: u64) -> (Mode, String) {
        match self {
            ModeChoice::Standard => (Mode::Standard, "requested".into()),
            ModeChoice::LowMemory => (Mode::LowMemory, "requested".into()),
            ModeChoice::Auto => match MemLimits::probe() {
                Ok(limits) => auto_mode(largest_f32, &limits),
                Err(e) => (Mode::LowMemory, format!("available memory unknown ({e})")),
            },
        }
    }
}

/// `--mode auto`: standard when the largest tensor in f32 twice over (its source pages and its f32
/// rows, both of which may sit in the page cache and in flight) plus 512 MB of headroom fits in
/// what the engine's probe says this process may still take (MemAvailable, every cgroup v1/v2
/// level's limit less its working set, RLIMIT_AS); low-memory otherwise. Returns the mode and why.
pub fn auto_mode(largest_tensor_f32: u64, limits: &MemLimits) -> (Mode, String) {
    let need = largest_tensor_f32.saturating_mul(2) + (512 << 20);
    let eff = limits.effective();
    let (mode, cmp) = if eff.bytes >= need {
        (Mode::Standard, ">=")
    } else {
        (Mode::LowMemory, "<")
    };
    let why = format!(
        "{} {} {cmp} {} (2 x largest tensor in f32 + 512 MB)",
        eff.source,
        fmt_bytes(eff.bytes),
        fmt_bytes(need)
    );
    (mode, why)
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    pub ftype: FileType,
    pub force: bool,
    pub mode: ModeChoice,
    pub threads: usize,
    /// llama-quantize --pure: no per-tensor mix, only the shape fallback.
    pub pure: bool,
    /// `general.name` (default: the directory name).
    pub name: Option<String>,
    /// Convert without tokenizer metadata when the checkpoint has no tokenizer.json.
    pub no_tokenizer: bool,
    /// Overrides the detected `tokenizer.ggml.pre`.
    pub tokenizer_pre: Option<String>,
}

/// The summary of a run.
#[derive(Clone, Debug)]
pub struct Report {
    pub stats: WriteStats,
    pub mode: Mode,
    pub mode_reason: String,
    pub peak_rss: Option<u64>,
    pub largest_tensor_f32: u64,
}

/// HF rows: decoded from the mapped shard, q/k rows permuted for llama.
struct HfRows<'a> {
    ckpt: &'a Checkpoint,
    name: String,
    ty: GgmlType,
    row_len: usize,
    /// Rows per head when permuted.
    permute: Option<usize>,
    one_d: bool,
    bytes: u64,
}

impl RowSource for HfRows<'_> {
    fn fill(&self, first: usize, out: &mut [f32]) -> Result<()> {
        let view = self.ckpt.view(&self.name).expect("validated at plan time");
        let rb = self.ty.row_bytes(self.row_len as u64).expect("float types") as usize;
        if self.one_d {
            decode_row(
                self.ty,
                &view.bytes[first * rb..(first + 1) * rb],
                out,
                &self.name,
            )?;
            if let Some(rph) = self.permute {
                let src = out.to_vec();
                for (i, o) in out.iter_mut().enumerate() {
                    *o = src[permuted_source_row(i as u64, rph as u64) as usize];
                }
            }
            return Ok(());
        }
        for (i, row) in out.chunks_exact_mut(self.row_len).enumerate() {
            let dst = (first + i) as u64;
            let src = match self.permute {
                Some(rph) => permuted_source_row(dst, rph as u64) as usize,
                None => dst as usize,
            };
            decode_row(
                self.ty,
                &view.bytes[src * rb..(src + 1) * rb],
                row,
                &self.name,
            )?;
        }
        Ok(())
    }

    fn prefetch(&self, first: usize, n: usize) {
        let rb = self.ty.row_bytes(self.row_len as u64).unwrap_or(0) as usize;
        // A chunk covers whole heads, so its permuted source rows are the same row range.
        self.ckpt.prefetch(&self.name, first * rb..(first + n) * rb);
    }

    fn release(&self, first: usize, n: usize, drop_cache: bool) {
        let rb = self.ty.row_bytes(self.row_len as u64).unwrap_or(0) as usize;
        self.ckpt
            .release(&self.name, first * rb..(first + n) * rb, drop_cache);
    }

    fn row_align(&self) -> usize {
        if self.one_d {
            1
        } else {
            self.permute.unwrap_or(1)
        }
    }

    fn input_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Everything checked and planned, nothing written yet.
pub struct Prepared {
    pub config: HfConfig,
    pub ckpt: Checkpoint,
    pub metadata: Metadata,
    pub plan: Vec<(TensorPlan, GgmlType)>,
    pub rope_freqs: Option<Vec<f32>>,
    pub largest_f32: u64,
}

/// Reads and validates the checkpoint: config, shards, tensor names, dtypes and shapes, tokenizer,
/// output types. Every input error surfaces here, before any output file exists.
pub fn prepare(opts: &ConvertOptions) -> Result<Prepared> {
    if !opts.force && opts.output.exists() {
        return Err(ConvertError::OutputExists {
            path: opts.output.clone(),
        });
    }
    let config = HfConfig::load(&opts.input)?;
    let ckpt = Checkpoint::open(&opts.input)?;
    let plans = names::plan(&config);
    let known = names::known_hf_names(&config);
    let mut unknown: Vec<&str> = ckpt.names().filter(|n| !known(n)).collect();
    drop(known);
    if !unknown.is_empty() {
        unknown.truncate(8);
        return Err(ConvertError::UnknownTensors {
            path: opts.input.clone(),
            names: unknown.join(", "),
        });
    }
    let mut kept = Vec::new();
    for p in plans {
        let Some(info) = ckpt.info(&p.hf_name) else {
            if p.optional {
                continue;
            }
            return Err(ConvertError::MissingTensor {
                tensor: p.hf_name.clone(),
                gguf: p.gguf_name.clone(),
            });
        };
        if info.hf_shape != p.hf_shape {
            return Err(ConvertError::ShapeMismatch {
                tensor: p.hf_name.clone(),
                expected: p.hf_shape.clone(),
                found: info.hf_shape.clone(),
            });
        }
        kept.push(p);
    }
    let has_output = kept.iter().any(|p| p.gguf_name == "output.weight");
    let mix = MixContext {
        ftype: opts.ftype,
        n_layer: config.n_layer as usize,
        has_output,
        pure: opts.pure,
    };
    let plan: Vec<(TensorPlan, GgmlType)> = kept
        .into_iter()
        .map(|p| {
            let src = ckpt.info(&p.hf_name).expect("checked").ty;
            let ty = choose_type(&mix, &p.gguf_name, &p.gguf_shape(), src);
            (p, ty)
        })
        .collect();
    for (p, ty) in &plan {
        let ne0 = p.gguf_shape()[0];
        if ty.row_bytes(ne0).is_none() {
            return Err(ConvertError::BadRowLength {
                tensor: p.gguf_name.clone(),
                ty: *ty,
                n_cols: ne0,
                block: ty.block_size(),
            });
        }
        if !crate::codec::can_encode(*ty) {
            return Err(ConvertError::Kernel {
                tensor: p.gguf_name.clone(),
                ty: *ty,
                problem: "no quantizer available".into(),
            });
        }
    }

    let mut vocab = if opts.no_tokenizer && !opts.input.join("tokenizer.json").exists() {
        None
    } else {
        match Vocab::load(
            &opts.input,
            config.n_vocab,
            &config.token_ids,
            opts.tokenizer_pre.as_deref(),
        )? {
            Some(v) => Some(v),
            None if opts.no_tokenizer => None,
            None => {
                return Err(ConvertError::NoTokenizer {
                    dir: opts.input.clone(),
                })
            }
        }
    };
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| default_name(&opts.input));
    let mut metadata = Metadata::new();
    for (k, v) in config.gguf_metadata(&name, opts.ftype.id()) {
        metadata.insert(k, v);
    }
    if let Some(v) = &mut vocab {
        if config.arch == Arch::Llama {
            // LlamaModel.set_vocab: SmolLM-style 49152-token vocabularies never add BOS.
            if config.n_vocab == 49152 {
                v.add_bos = Some(false);
            }
        } else {
            v.add_space_prefix = None;
        }
    }
    if let Some(v) = &vocab {
        for (k, val) in v.gguf_metadata() {
            metadata.insert(k, val);
        }
    }
    let rope_freqs = config.rope_freqs();
    let largest_f32 = plan
        .iter()
        .map(|(p, _)| p.hf_shape.iter().product::<u64>() * 4)
        .max()
        .unwrap_or(0);
    Ok(Prepared {
        config,
        ckpt,
        metadata,
        plan,
        rope_freqs,
        largest_f32,
    })
}

/// Converts an HF checkpoint directory to GGUF.
pub fn convert_hf(opts: &ConvertOptions, progress: &dyn Progress) -> Result<Report> {
    let prep = prepare(opts)?;
    let (mode, mode_reason) = opts.mode.resolve(prep.largest_f32);
    let mut tensors: Vec<OutTensor<'_>> = Vec::new();
    if let Some(f) = &prep.rope_freqs {
        tensors.push(OutTensor {
            name: "rope_freqs.weight".into(),
            shape: vec![f.len() as u64],
            ty: GgmlType::F32,
            source: Box::new(VecRows(f.clone())),
        });
    }
    for (p, ty) in &prep.plan {
        let info = prep.ckpt.info(&p.hf_name).expect("validated");
        let shape = p.gguf_shape();
        let one_d = shape.len() == 1;
        let rows_per_head = p.permute_heads.map(|h| (p.hf_shape[0] / h) as usize);
        tensors.push(OutTensor {
            name: p.gguf_name.clone(),
            shape: shape.clone(),
            ty: *ty,
            source: Box::new(HfRows {
                ckpt: &prep.ckpt,
                name: p.hf_name.clone(),
                ty: info.ty,
                row_len: shape[0] as usize,
                permute: rows_per_head,
                one_d,
                bytes: info.len,
            }),
        });
    }
    let stats = pipeline::write_gguf(
        &opts.output,
        opts.force,
        &prep.metadata,
        tensors,
        mode,
        opts.threads,
        progress,
    )?;
    Ok(Report {
        stats,
        mode,
        mode_reason,
        peak_rss: pipeline::peak_rss(),
        largest_tensor_f32: prep.largest_f32,
    })
}

/// Where a conversion would write by default: next to the input, named after it and the type.
pub fn default_output(input: &Path, ftype: FileType) -> PathBuf {
    let name = default_name(input);
    input
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{name}.{}.gguf", ftype.name().to_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_follows_the_engine_probe() {
        let big = MemLimits::unconstrained(8 << 30);
        let (mode, why) = auto_mode(100 << 20, &big);
        assert_eq!(mode, Mode::Standard);
        assert!(why.starts_with("MemAvailable"), "{why}");
        let small = MemLimits::unconstrained(600 << 20);
        assert_eq!(auto_mode(100 << 20, &small).0, Mode::LowMemory);
        assert!(pipeline::peak_rss().is_some_and(|b| b > 0));
    }
}
