//! `outcore compress`: low-rank compression of a GGUF model's 2-D weights (randomized SVD per
//! tensor, or SVD-LLM's activation-aware whitening with `--calibration TEXT`), written as factor
//! pairs `NAME.lr_a` / `NAME.lr_b` that any outcore model load binds.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use outcore_convert::calibrate::Calibrator;
use outcore_convert::lowrank::{
    compress, CompressOptions, CompressProgress, RankSpec, SvdOptions, TensorReport,
};
use outcore_format::GgmlType;

#[derive(Args, Debug, Clone)]
pub struct CompressArgs {
    /// Model: a .gguf file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Output .gguf.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Rank: an integer, or a fraction of full rank (0.25).
    #[arg(long, default_value = "64")]
    pub rank: String,
    /// Energy target instead of a rank: keep this fraction of each matrix's squared Frobenius norm.
    #[arg(long)]
    pub energy: Option<f64>,
    /// Parameter reduction instead of a rank: each matrix gets the largest rank whose two factors
    /// hold at most (1 - P) of its parameters (0.2: 20% fewer parameters).
    #[arg(long)]
    pub reduction: Option<f64>,
    /// Power iterations of the range finder.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Which tensors (`*` wildcards, comma-separated; default: every 2-D blk.* weight).
    #[arg(long)]
    pub tensors: Option<String>,
    /// Type of the factors (the rank is rounded up to its block size).
    #[arg(long = "type", default_value = "q8_0")]
    pub ty: String,
    /// Calibration text file: activation-aware (whitened) SVD instead of plain SVD.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Calibration token ids instead of text (a file of integers separated by commas or
    /// whitespace), for models without a usable tokenizer.
    #[arg(long = "calibration-ids", conflicts_with = "calibration")]
    pub calibration_ids: Option<PathBuf>,
    /// Calibration tokens at most.
    #[arg(long = "calibration-tokens", default_value_t = 2048)]
    pub calibration_tokens: usize,
    /// Tokens per calibration context.
    #[arg(long = "calibration-ctx", default_value_t = 512)]
    pub calibration_ctx: usize,
    /// Force one layer at a time (default: parallel over layers when memory allows).
    #[arg(long)]
    pub sequential: bool,
    /// Overwrite existing output.
    #[arg(long)]
    pub force: bool,
}

struct Bar(Option<ProgressBar>);

impl CompressProgress for Bar {
    fn start(&self, n: usize) {
        if let Some(b) = &self.0 {
            b.set_length(n as u64);
        }
    }
    fn done(&self, r: &TensorReport) {
        if let Some(b) = &self.0 {
            b.set_message(r.name.clone());
            b.inc(1);
        }
    }
}

pub fn run(args: &CompressArgs) -> Result<()> {
    let rank = match (args.energy, args.reduction) {
        (Some(_), Some(_)) => bail!("give --energy or --reduction, not both"),
        (Some(e), _) if e > 0.0 && e <= 1.0 => RankSpec::Energy(e),
        (Some(e), _) => bail!("--energy {e}: expected a fraction in (0, 1]"),
        (_, Some(p)) if p > 0.0 && p < 1.0 => RankSpec::Reduction(p),
        (_, Some(p)) => bail!("--reduction {p}: expected a fraction in (0, 1)"),
        (None, None) => RankSpec::parse(&args.rank)
            .with_context(|| format!("--rank {}: expected an integer or a fraction", args.rank))?,
    };
    let ty = GgmlType::from_name(&args.ty.to_ascii_lowercase())
        .or_else(|| GgmlType::from_name(&args.ty.to_ascii_uppercase()))
        .with_context(|| format!("unknown --type {}", args.ty))?;
    let calib = match &args.calibration {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let c = Calibrator::new(
                &args.model,
                &text,
                args.calibration_tokens,
                args.calibration_ctx,
            )?;
            eprintln!("calibration: {} tokens from {}", c.n_tokens(), p.display());
            Some(c)
        }
        None => match &args.calibration_ids {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let mut ids = Vec::new();
                for w in text.split(|c: char| c == ',' || c.is_whitespace()) {
                    if !w.is_empty() {
                        ids.push(w.parse::<u32>().with_context(|| {
                            format!("{}: `{w}` is not a token id", p.display())
                        })?);
                    }
                }
                ids.truncate(args.calibration_tokens);
                if ids.is_empty() {
                    bail!("{}: no token ids", p.display());
                }
                let c = Calibrator::from_tokens(&args.model, ids, args.calibration_ctx)?;
                eprintln!(
                    "calibration: {} token ids from {}",
                    c.n_tokens(),
                    p.display()
                );
                Some(c)
            }
            None => None,
        },
    };
    let opts = CompressOptions {
        input: args.model.clone(),
        output: args.output.clone(),
        force: args.force,
        svd: SvdOptions {
            rank,
            iters: args.iters,
            ..Default::default()
        },
        pattern: args.tensors.clone(),
        ty,
        parallel: args.sequential.then_some(false),
    };
    let bar = Bar(std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("compress [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    }));
    let r = compress(&opts, calib.as_ref(), &bar)
        .with_context(|| format!("cannot compress {}", args.model.display()))?;
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    println!(
        "{:<28} {:>12} {:>6} {:>10} {:>12} {:>12}",
        "tensor", "shape", "rank", "rel.err", "bytes", "after"
    );
    let (mut before, mut after) = (0u64, 0u64);
    for t in &r.tensors {
        before += t.bytes_before;
        after += t.bytes_after;
        println!(
            "{:<28} {:>12} {:>6} {:>10.4} {:>12} {:>12}",
            t.name,
            format!("{}x{}", t.shape[1], t.shape[0]),
            t.rank.map_or("kept".to_string(), |k| k.to_string()),
            t.rel_error,
            t.bytes_before,
            t.bytes_after
        );
    }
    let out_len = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    let in_len = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{} tensors ({} factored), {} -> {} bytes of weights; file {} -> {} bytes; {} SVD, {}; {:.1} s",
        r.tensors.len(),
        r.tensors.iter().filter(|t| t.rank.is_some()).count(),
        before,
        after,
        in_len,
        out_len,
        if r.calibrated { "calibrated" } else { "plain" },
        r.memory_note,
        r.elapsed.as_secs_f64()
    );
    Ok(())
}
