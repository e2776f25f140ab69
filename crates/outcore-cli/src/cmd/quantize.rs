//! `outcore quantize`: requantize a GGUF (dequantize -> quantize, streaming), like llama-quantize.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use outcore_convert::mix::MIX_HELP;
use outcore_convert::requantize::{requantize, RequantizeOptions};
use outcore_convert::{FileType, ModeChoice};

use super::convert::{print_summary, threads, Bar};

#[derive(Args, Debug, Clone)]
#[command(after_long_help = MIX_HELP)]
pub struct QuantizeArgs {
    /// Input GGUF.
    pub input: PathBuf,
    /// Output GGUF.
    pub output: PathBuf,
    /// Output type (see --help for the mix).
    #[arg(long = "type")]
    pub ty: String,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Memory mode: auto, standard or low-memory.
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Every quantizable tensor gets the base type.
    #[arg(long)]
    pub pure: bool,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let opts = RequantizeOptions {
        input: args.input.clone(),
        output: args.output.clone(),
        ftype: FileType::parse(&args.ty)?,
        force: args.force,
        mode: ModeChoice::parse(&args.mode)?,
        threads: threads(args.threads),
        pure: args.pure,
    };
    let bar = Bar::new("quantize");
    let report = requantize(&opts, &bar)
        .with_context(|| format!("requantizing {}", args.input.display()))?;
    print_summary("wrote", &args.output, &report, true);
    Ok(())
}
