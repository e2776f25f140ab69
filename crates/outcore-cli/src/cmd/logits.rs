//! `outcore logits`: the logits after the given tokens, as JSON or raw little-endian f32.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::common::{prompt_ids, ModelArgs};

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Token ids ("1,2,3") instead of text.
    #[arg(long = "ids")]
    pub ids: Option<String>,
    /// Logits of every position (default: the last one).
    #[arg(long = "all-positions")]
    pub all_positions: bool,
    /// How many top entries to list in the JSON (default 20).
    #[arg(long = "top", default_value_t = 20)]
    pub top: usize,
    /// Write raw little-endian f32 (positions x vocab) to this file.
    #[arg(short = 'o', long = "output")]
    pub output: Option<std::path::PathBuf>,
    /// Print JSON (the default when -o is not given).
    #[arg(long = "json")]
    pub json: bool,
    /// Treat special-token text in the prompt as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
}

pub fn run(args: &LogitsArgs) -> Result<()> {
    let model = args.model.open()?;
    let ids = prompt_ids(
        &model,
        args.prompt.as_deref(),
        args.ids.as_deref(),
        !args.no_parse_special,
    )?;
    let n_ctx = args.model.ctx_size.unwrap_or(ids.len()).max(ids.len());
    if let Some(c) = args.model.ctx_size {
        if ids.len() > c {
            bail!(
                "the prompt has {} tokens but the context holds {c}",
                ids.len()
            );
        }
    }
    let mut state = model.new_state(n_ctx);
    let nv = model.config.n_vocab;
    let logits = if args.all_positions {
        model.forward_all(&mut state, &ids)?
    } else {
        model.forward(&mut state, &ids)?
    };
    if let Some(path) = &args.output {
        let mut bytes = Vec::with_capacity(logits.len() * 4);
        for v in &logits {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.output.is_none() || args.json {
        let first_pos = if args.all_positions { 0 } else { ids.len() - 1 };
        let rows: Vec<serde_json::Value> = logits
            .chunks_exact(nv)
            .enumerate()
            .map(|(i, row)| {
                let mut idx: Vec<usize> = (0..nv).collect();
                let k = args.top.min(nv);
                idx.select_nth_unstable_by(k.saturating_sub(1).min(nv - 1), |&a, &b| {
                    row[b].total_cmp(&row[a]).then(a.cmp(&b))
                });
                let mut top: Vec<usize> = idx[..k].to_vec();
                top.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                serde_json::json!({
                    "position": first_pos + i,
                    "argmax": outcore_engine::sampler::argmax(row),
                    "top": top.iter().map(|&t| serde_json::json!([t, row[t]])).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = serde_json::json!({ "prompt_ids": ids, "n_vocab": nv, "positions": rows });
        let stdout = std::io::stdout();
        let mut o = stdout.lock();
        serde_json::to_writer_pretty(&mut o, &out)?;
        writeln!(o)?;
    }
    Ok(())
}
