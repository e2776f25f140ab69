//! `outcore synth`: a random model with the real shapes of a size class and a donor's tokenizer,
//! written streaming (GGUF, or an HF directory of sharded safetensors).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use outcore_convert::hf::Arch;
use outcore_convert::synth::{parse_size, synth, SynthFormat, SynthOptions};
use outcore_convert::{FileType, ModeChoice};

use super::convert::{print_summary, threads, Bar};

#[derive(Args, Debug, Clone)]
pub struct SynthArgs {
    /// llama (Llama 3.2 1B/3B, 3.1 8B, SmolLM2-135M shapes) or qwen2 (Qwen2.5 0.5B/1.5B/3B/7B).
    #[arg(long, default_value = "llama")]
    pub arch: String,
    /// Size class: 135M, 1B, 1.7B (llama only), 3B, 8B (or tiny, for tests).
    #[arg(long, default_value = "1B")]
    pub params: String,
    /// GGUF type (f32 f16 bf16 q8_0 q4_0 ... q4_k ...); f32/f16/bf16 for --format safetensors.
    #[arg(long = "type", default_value = "f16")]
    pub ty: String,
    /// Output: a .gguf file, or a directory for --format safetensors.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// gguf or safetensors (an HF directory: config.json, shards + index, tokenizer files).
    #[arg(long, default_value = "gguf")]
    pub format: String,
    /// Largest shard for --format safetensors (decimal units: 2G, 500M).
    #[arg(long = "shard-size", default_value = "2G")]
    pub shard_size: String,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Vocabulary donor: a GGUF or an HF directory (default: the demo model).
    #[arg(long)]
    pub donor: Option<PathBuf>,
    /// Overwrite existing output.
    #[arg(long)]
    pub force: bool,
    /// Memory mode: auto, standard or low-memory.
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
}

fn default_donor() -> Result<PathBuf> {
    let p = std::env::var("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !p.exists() {
        bail!(
            "no --donor given and the demo model {} is missing: run scripts/fetch-demo-model.sh",
            p.display()
        );
    }
    Ok(p)
}

pub fn run(args: &SynthArgs) -> Result<()> {
    let arch = match args.arch.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => bail!("unknown --arch {other} (expected llama or qwen2)"),
    };
    let format = match args.format.as_str() {
        "gguf" => SynthFormat::Gguf,
        "safetensors" => SynthFormat::Safetensors,
        other => bail!("unknown --format {other} (expected gguf or safetensors)"),
    };
    let donor = match &args.donor {
        Some(d) => d.clone(),
        None => default_donor()?,
    };
    let opts = SynthOptions {
        arch,
        params: args.params.clone(),
        ftype: FileType::parse(&args.ty)?,
        output: args.output.clone(),
        format,
        shard_size: parse_size(&args.shard_size)?,
        seed: args.seed,
        donor,
        force: args.force,
        mode: ModeChoice::parse(&args.mode)?,
        threads: threads(args.threads),
    };
    let bar = Bar::new("synth");
    let report =
        synth(&opts, &bar).with_context(|| format!("writing {}", args.output.display()))?;
    print_summary("wrote", &args.output, &report, false);
    Ok(())
}
