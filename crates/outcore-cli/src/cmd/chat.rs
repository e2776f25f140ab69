//! `outcore chat`: an interactive conversation using the model's chat template.
//! The whole conversation is re-rendered each turn; only the tokens after the longest common prefix
//! with what the KV cache already holds are evaluated. `/exit` or Ctrl-D ends; Ctrl-C stops an answer.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use outcore_engine::chat::ChatMessage as Message;
use outcore_engine::generate::{generate, FinishReason, GenerateParams};

use super::common::{ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message.
    #[arg(long = "system")]
    pub system: Option<String>,
    /// Maximum tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    /// Print statistics after each answer.
    #[arg(long = "stats")]
    pub stats: bool,
}

pub fn run(args: &ChatArgs) -> Result<()> {
    let model = args.model.open()?;
    let n_ctx = args.model.n_ctx(&model)?;
    let tok = model.tokenizer().context("this model has no tokenizer")?;
    if model.chat_template().is_none() {
        anyhow::bail!(
            "this model has no chat template; pass --chat-template chatml (or another name)"
        );
    }
    let stop_flag = Arc::new(AtomicBool::new(false));
    {
        let f = stop_flag.clone();
        ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut history: Vec<Message> = Vec::new();
    if let Some(s) = &args.system {
        history.push(Message::new("system", s));
    }
    let mut state = model.new_state(n_ctx);
    let mut cached: Vec<u32> = Vec::new();
    let mut params = GenerateParams {
        max_tokens: args.n_predict,
        sampling: args.sampling.params()?,
        ..Default::default()
    };
    eprintln!(
        "outcore chat: {} ({} tokens of context). /exit or Ctrl-D to quit, Ctrl-C stops an answer.",
        model.path().display(),
        n_ctx
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("\n> ");
        std::io::stderr().flush().ok();
        let Some(line) = lines.next() else { break };
        let line = line?;
        let msg = line.trim();
        if msg.is_empty() {
            continue;
        }
        if msg == "/exit" || msg == "/quit" {
            break;
        }
        if msg == "/reset" {
            history.retain(|m| m.role == "system");
            cached.clear();
            state.truncate(0);
            eprintln!("(conversation reset)");
            continue;
        }
        history.push(Message::new("user", msg));
        let prompt = model.render_chat(&history, true)?;
        let ids = tok.encode(&prompt, true, true);
        if ids.len() + 1 >= n_ctx {
            history.pop();
            eprintln!(
                "(the conversation needs {} tokens but the context holds {n_ctx}: /reset to start over, or restart with a larger -c)",
                ids.len()
            );
            continue;
        }
        let common = cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        state.truncate(common);
        params.max_tokens = args.n_predict.min(n_ctx - ids.len());
        params.sampling.seed = params.sampling.seed.wrapping_add(1);
        stop_flag.store(false, Ordering::SeqCst);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let gen = generate(&model, &mut state, &ids[common..], &params, |ev| {
            let _ = out.write_all(ev.text.as_bytes());
            let _ = out.flush();
            !stop_flag.load(Ordering::SeqCst)
        })?;
        writeln!(out)?;
        drop(out);
        if gen.finish == FinishReason::Cancelled {
            eprintln!("(stopped)");
        } else if gen.finish == FinishReason::ContextFull {
            eprintln!("(context full: /reset to start over)");
        }
        cached = ids.clone();
        cached.extend_from_slice(&gen.ids);
        history.push(Message::new("assistant", gen.text.trim()));
        if args.stats {
            super::run::print_stats(&model, &gen, None);
        }
    }
    Ok(())
}
