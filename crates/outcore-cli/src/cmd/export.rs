//! `outcore export --format llama2c`: a GGUF or HF model as llama2.c's int8 checkpoint
//! ("version 2", read by runq.c) plus its tokenizer.bin.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use outcore_convert::llama2c_export::{export_llama2c, ExportOptions, Rounding};

use super::convert::Bar;

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Model: a .gguf file or a Hugging Face directory.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Output format (only llama2c).
    #[arg(long, default_value = "llama2c")]
    pub format: String,
    /// Output checkpoint (e.g. model.bin).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Where tokenizer.bin goes (default: tokenizer.bin beside the output).
    #[arg(long = "tokenizer-out")]
    pub tokenizer_out: Option<PathBuf>,
    /// Quantization group size (halved until it divides dim and hidden_dim, with a warning).
    #[arg(long = "group-size", default_value_t = 64)]
    pub group_size: u32,
    /// Rounding of the int8 values: `ggml` (Q8_0's reference quantizer: with --group-size 32
    /// the export holds exactly the weights of `outcore quantize --type q8_0`) or `export-py`
    /// (llama2.c export.py's round-half-even of w / scale).
    #[arg(long, default_value = "ggml", value_parser = ["ggml", "export-py"])]
    pub rounding: String,
    /// max_seq_len written in the header (default: the model's training context).
    #[arg(long = "max-seq-len")]
    pub max_seq_len: Option<u32>,
    /// Overwrite existing output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    if args.format != "llama2c" {
        bail!("unknown --format {} (expected llama2c)", args.format);
    }
    let tokenizer_out = Some(args.tokenizer_out.clone().unwrap_or_else(|| {
        args.output
            .parent()
            .map(|p| p.join("tokenizer.bin"))
            .unwrap_or_else(|| PathBuf::from("tokenizer.bin"))
    }));
    let opts = ExportOptions {
        input: args.model.clone(),
        output: args.output.clone(),
        tokenizer_out: tokenizer_out.clone(),
        group_size: args.group_size,
        rounding: if args.rounding == "export-py" {
            Rounding::ExportPy
        } else {
            Rounding::Ggml
        },
        max_seq_len: args.max_seq_len,
        force: args.force,
    };
    let t0 = Instant::now();
    let r = export_llama2c(&opts, &Bar::new("export"))
        .with_context(|| format!("cannot export {}", args.model.display()))?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(c) = &r.config {
        eprintln!(
            "wrote {} ({} bytes, llama2.c v2 int8, group size {}, dim {} hidden {} layers {} heads {}/{} vocab {} seq {}, shared classifier {}) in {:.2} s; max quantization error {:.3e}",
            args.output.display(),
            r.bytes,
            c.group_size,
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.max_seq_len,
            c.shared_classifier,
            t0.elapsed().as_secs_f64(),
            r.max_error
        );
    }
    if let Some(t) = &tokenizer_out {
        eprintln!("wrote {} ({} tokens)", t.display(), r.tokenizer_tokens);
    }
    Ok(())
}
