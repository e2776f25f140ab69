//! `outcore run`: generate text from a prompt, streaming it to stdout.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use outcore_engine::chat::ChatMessage;
use outcore_engine::generate::{generate, GenerateParams, Generation};
use outcore_engine::memory::stats::ProcessStats;
use outcore_engine::model::Model;

use super::common::{prompt_ids, ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file")]
    pub file: Option<std::path::PathBuf>,
    /// Prompt as token ids ("1,2,3") instead of text.
    #[arg(long = "ids")]
    pub ids: Option<String>,
    /// Render the prompt as one user message with the model's chat template.
    #[arg(long = "chat")]
    pub chat: bool,
    /// System message used with --chat.
    #[arg(long = "system")]
    pub system: Option<String>,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when this string appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Treat special-token text in the prompt (e.g. `<|im_start|>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Print the generated token ids after the text.
    #[arg(long = "print-ids")]
    pub print_ids: bool,
    /// Do not echo the prompt before the generated text.
    #[arg(long = "no-echo")]
    pub no_echo: bool,
    /// Print timing and memory statistics to stderr after the run.
    #[arg(long = "stats")]
    pub stats: bool,
}

pub fn run(args: &RunArgs) -> Result<()> {
    if args.n_predict <= 0 {
        bail!("-n/--n-predict must be at least 1 (got {})", args.n_predict);
    }
    let text = match (&args.prompt, &args.file) {
        (Some(_), Some(_)) => bail!("give either -p or -f, not both"),
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let before = ProcessStats::now().ok();
    // A run reaches at most its prompt and -n more positions, so the plan counts the KV cache of
    // those (a token covers at least one byte of text; a few for BOS/EOS and a prefix space),
    // not of all of -c. With --chat the template's length is unknown until the model is open:
    // all of -c.
    let mut opts = args.model.options()?;
    let prompt_bound = match (&text, &args.ids, args.chat) {
        (Some(t), None, false) => Some(t.len() + 8),
        (None, Some(ids), _) => Some(ids.split(',').count()),
        _ => None,
    };
    if let Some(p) = prompt_bound {
        opts.n_ctx_hint = opts
            .n_ctx_hint
            .min(p.saturating_add(args.n_predict as usize));
    }
    let model = Model::load(&args.model.model, &opts)
        .with_context(|| format!("cannot load model {}", args.model.model.display()))?;
    let n_ctx = args.model.n_ctx(&model)?;
    print_plan(&model, args.stats);
    let text = match (text, args.chat) {
        (Some(t), true) => Some(render_chat(&model, args.system.as_deref(), &t)?),
        (t, _) => t,
    };
    let ids = prompt_ids(
        &model,
        text.as_deref(),
        args.ids.as_deref(),
        !args.no_parse_special,
    )?;
    if ids.len() > n_ctx {
        bail!(
            "the prompt has {} tokens but the context holds {} (raise -c)",
            ids.len(),
            n_ctx
        );
    }
    let params = GenerateParams {
        max_tokens: args.n_predict as usize,
        sampling: args.sampling.params()?,
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
    };
    // The KV cache holds the positions this run can reach (the prompt, then -n tokens).
    let mut state = model.new_state(n_ctx.min(ids.len().saturating_add(args.n_predict as usize)));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.no_echo {
        if let (Some(t), false) = (&text, args.chat) {
            write!(out, "{t}")?;
            out.flush()?;
        }
    }
    let mut write_err = None;
    // Counters when the first token is out (the prompt has warmed every weight up): what is
    // read after this point is what each further token costs.
    let mut warm: Option<ProcessStats> = None;
    let gen = generate(&model, &mut state, &ids, &params, |ev| {
        if args.stats && warm.is_none() {
            warm = ProcessStats::now().ok();
        }
        if let Err(e) = out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()) {
            write_err = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    writeln!(out)?;
    if args.print_ids {
        let s: Vec<String> = gen.ids.iter().map(|i| i.to_string()).collect();
        writeln!(out, "ids: {}", s.join(","))?;
    }
    drop(out);
    if args.stats {
        print_stats(&model, &gen, before.as_ref());
        print_warm_reads(&gen, warm.as_ref());
    }
    Ok(())
}

/// The planner's one-paragraph summary, to stderr: always when layers are streamed, else only
/// when asked (`--stats`).
pub fn print_plan(model: &Model, asked: bool) {
    if asked || is_streaming(model) {
        eprintln!("outcore: {}", model.plan().summary());
    }
}

fn is_streaming(model: &Model) -> bool {
    model.residency().is_some_and(|r| r.is_streaming())
}

/// Renders one user message (and an optional system message) with the model's chat template.
pub fn render_chat(model: &Model, system: Option<&str>, user: &str) -> Result<String> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage::new("system", s));
    }
    msgs.push(ChatMessage::new("user", user));
    Ok(model.render_chat(&msgs, true)?)
}

/// Bytes read and major faults after the first token: per further token, the disk traffic of
/// steady-state generation (zero when the model is held in memory).
fn print_warm_reads(gen: &Generation, warm: Option<&ProcessStats>) {
    let (Some(w), Ok(now)) = (warm, ProcessStats::now()) else {
        return;
    };
    let tokens = gen.stats.generated_tokens.saturating_sub(1);
    if tokens == 0 {
        return;
    }
    let d = now.delta(w);
    if let Some(rb) = d.read_bytes {
        eprintln!(
            "after warm-up:      {:.1} MB read over {tokens} tokens ({:.1} MB per token), {} major faults",
            rb as f64 / 1e6,
            rb as f64 / 1e6 / tokens as f64,
            d.majflt
        );
    }
}

pub fn print_stats(model: &Model, gen: &Generation, before: Option<&ProcessStats>) {
    let s = &gen.stats;
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!();
    eprintln!("--- outcore stats ---");
    eprintln!(
        "load time:          {:.1} ms",
        model.load_time.as_secs_f64() * 1e3
    );
    eprintln!(
        "time to first token:{:>8.1} ms",
        s.time_to_first_token.as_secs_f64() * 1e3
    );
    eprintln!(
        "prompt:             {} tokens in {:.1} ms ({:.1} tok/s)",
        s.prompt_tokens,
        s.prompt_time.as_secs_f64() * 1e3,
        s.prompt_tps()
    );
    eprintln!(
        "generation:         {} tokens in {:.1} ms ({:.1} tok/s), finish: {:?}",
        s.generated_tokens,
        s.generation_time.as_secs_f64() * 1e3,
        s.generation_tps(),
        gen.finish
    );
    if let Ok(now) = ProcessStats::now() {
        let m = &now.mem;
        eprintln!(
            "rss:                {:.1} MB (anon {:.1} MB, file {:.1} MB), peak {:.1} MB",
            mb(m.vm_rss),
            mb(m.rss_anon.unwrap_or(0)),
            mb(m.rss_file.unwrap_or(0)),
            mb(m.vm_hwm)
        );
        if let Some(b) = before {
            let d = now.delta(b);
            eprintln!(
                "faults:             {} major, {} minor; bytes read {} (read() calls {})",
                d.majflt,
                d.minflt,
                d.read_bytes
                    .map(|x| format!("{:.1} MB", mb(x)))
                    .unwrap_or_else(|| "n/a".into()),
                d.rchar
                    .map(|x| format!("{:.1} MB", mb(x)))
                    .unwrap_or_else(|| "n/a".into()),
            );
        }
    }
    if let Some(r) = model.residency().filter(|r| r.is_streaming()) {
        let st = r.stats();
        // The prompt's micro-batches of 512, then one pass per generated token but the last.
        let passes =
            (s.prompt_tokens.div_ceil(512) + s.generated_tokens.saturating_sub(1)).max(1) as u64;
        eprintln!(
            "streaming:          {:.1} MB resident, {:.1} MB streamed per pass; read {:.1} MB in {} units \
             ({:.1} MB per pass over ~{passes} passes, prefetch included), {}",
            mb(r.resident_bytes()),
            mb(r.streamed_bytes()),
            mb(st.bytes_read),
            st.units_read,
            mb(st.bytes_read) / passes as f64,
            if st.direct_io { "O_DIRECT" } else { "buffered reads with readahead" }
        );
        eprintln!(
            "stream timing:      read {:.2} s ({:.0} MB/s), compute waited {:.2} s for data",
            st.read_seconds,
            mb(st.bytes_read) / st.read_seconds.max(1e-9),
            st.stall_seconds
        );
    }
    let (mut res, mut total) = (0u64, 0u64);
    for m in model.source().mappings() {
        total += m.len() as u64;
        res += m.resident_bytes(0..m.len()).unwrap_or(0);
    }
    eprintln!(
        "model page cache:   {:.1} of {:.1} MB resident ({:.0}%), load mode {}",
        mb(res),
        mb(total),
        100.0 * res as f64 / total.max(1) as f64,
        model
            .source()
            .mappings()
            .first()
            .map(|m| m.mode().as_str())
            .unwrap_or("?")
    );
}
