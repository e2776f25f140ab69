//! `outcore perplexity`: computed the way llama.cpp's perplexity tool does (same chunking, same
//! scored tokens: the second half of each n_ctx chunk), so the numbers are comparable.

use anyhow::{bail, Context, Result};
use clap::Args;

use super::common::ModelArgs;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Score at most this many chunks.
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
}

/// log-softmax probability of `target` under `logits` (in f64, like llama.cpp's log_softmax).
fn nll(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    -((logits[target] - max) as f64 - sum.ln())
}

pub fn run(args: &PerplexityArgs) -> Result<()> {
    let model = args.model.open()?;
    let n_ctx = args.model.ctx_size.unwrap_or(512);
    if n_ctx < 8 {
        bail!("-c must be at least 8 for perplexity");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let tok = model.tokenizer().context("this model has no tokenizer")?;
    let add_bos = tok.add_bos();
    let tokens = tok.encode(&text, true, false);
    let n_chunk_max = tokens.len() / n_ctx;
    if n_chunk_max == 0 {
        bail!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        );
    }
    let n_chunk = args
        .chunks
        .map(|c| c.min(n_chunk_max))
        .unwrap_or(n_chunk_max);
    eprintln!(
        "perplexity: {} tokens, {n_chunk} chunks of {n_ctx}, scoring the second half of each",
        tokens.len()
    );
    let first = n_ctx / 2;
    let nv = model.config.n_vocab;
    let (mut total, mut count) = (0f64, 0usize);
    let t0 = std::time::Instant::now();
    let mut state = model.new_state(n_ctx);
    for c in 0..n_chunk {
        let start = c * n_ctx;
        let mut chunk = tokens[start..start + n_ctx].to_vec();
        if add_bos {
            if let Some(b) = tok.bos() {
                chunk[0] = b;
            }
        }
        state.truncate(0);
        let logits = model.forward_all(&mut state, &chunk)?;
        for j in first..n_ctx - 1 {
            total += nll(
                &logits[j * nv..(j + 1) * nv],
                tokens[start + j + 1] as usize,
            );
            count += 1;
        }
        print!("[{}]{:.4},", c + 1, (total / count as f64).exp());
        use std::io::Write;
        std::io::stdout().flush().ok();
    }
    println!();
    let ppl = (total / count as f64).exp();
    println!(
        "Final estimate: PPL = {ppl:.4} ({count} tokens scored, {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
