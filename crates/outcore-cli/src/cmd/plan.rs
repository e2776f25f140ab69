//! `outcore plan`: how a model would be loaded here and how fast it would decode.
//!
//! Opens the model without reading its weights (mmap, no streaming), asks the memory probe what
//! this process may use (cgroup, MemAvailable, rlimits), runs the same planner `run` uses, then
//! measures disk-read and memory bandwidth for a tokens/s estimate and prints the `outcore run`
//! command that matches the plan.

use anyhow::{Context, Result};
use clap::Args;
use outcore_engine::memory::{
    fmt_bytes, measure_disk_read_bw, measure_mem_bw, predict_tokens_per_s, DiskBandwidth,
    MemLimits, Plan, Strategy,
};
use outcore_engine::model::{model_sizes, plan_load, Model, Streaming};
use serde::Serialize;

use super::common::ModelArgs;

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of text.
    #[arg(long = "json")]
    pub json: bool,
    /// Skip the bandwidth probes (no speed estimate).
    #[arg(long = "no-probe")]
    pub no_probe: bool,
}

/// Bytes the disk probe reads at most (it also stops after about 0.4 s).
const DISK_PROBE_BYTES: u64 = 1 << 30;

#[derive(Serialize)]
struct Report {
    model: String,
    file_bytes: u64,
    layer_bytes: Vec<u64>,
    n_ctx: usize,
    kv_bytes: u64,
    scratch_bytes: u64,
    limits: MemLimits,
    plan: Plan,
    ring_buffers: usize,
    /// The largest streamed piece (one ring buffer).
    max_piece_bytes: u64,
    mem_bw_bytes_per_s: Option<f64>,
    disk: Option<DiskBandwidth>,
    predicted_tokens_per_s: Option<f64>,
    command: String,
}

pub fn run(args: &PlanArgs) -> Result<()> {
    // Bind the weights over a plain mapping: nothing is read or streamed here.
    let mut probe_args = args.model.clone();
    probe_args.load = "mmap".into();
    let mut opts = probe_args.options()?;
    opts.streaming = Streaming::Off;
    let model = Model::load(&args.model.model, &opts)
        .with_context(|| format!("cannot open model {}", args.model.model.display()))?;
    let n_ctx = args.model.n_ctx(&model)?;

    let mut opts = args.model.options()?;
    opts.n_ctx_hint = n_ctx;
    let limits = MemLimits::probe().context("cannot read the memory limits from /proc and /sys")?;
    let (plan, setup) = plan_load(
        model.source(),
        &model.config,
        &model.weights,
        &opts,
        &limits,
    );
    let sizes = model_sizes(
        model.source(),
        &model.config,
        &model.weights,
        &opts,
        n_ctx,
        setup.ubatch,
    );

    let (mem_bw, disk) = if args.no_probe {
        (None, None)
    } else {
        let first = model.source().paths()[0].clone();
        let disk = measure_disk_read_bw(&first, DISK_PROBE_BYTES)
            .with_context(|| format!("disk probe of {}", first.display()))?;
        (Some(measure_mem_bw()), Some(disk))
    };
    let predicted = match (mem_bw, &disk) {
        (Some(m), Some(d)) => Some(predict_tokens_per_s(&plan, m, d.bytes_per_s)),
        _ => None,
    };
    let command = recommend(args, n_ctx, &plan);
    let report = Report {
        model: args.model.model.display().to_string(),
        file_bytes: plan.file_bytes,
        layer_bytes: sizes.layer_bytes.clone(),
        n_ctx,
        kv_bytes: plan.kv_bytes,
        scratch_bytes: plan.scratch_bytes,
        limits,
        plan,
        ring_buffers: setup.ring,
        max_piece_bytes: sizes.max_piece_bytes,
        mem_bw_bytes_per_s: mem_bw,
        disk,
        predicted_tokens_per_s: predicted,
        command,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// The `outcore run` command matching the plan (flags only where they change something).
fn recommend(args: &PlanArgs, n_ctx: usize, plan: &Plan) -> String {
    let m = &args.model;
    let mut c = format!(
        "outcore run -m {}",
        shell_quote(&m.model.display().to_string())
    );
    c += &format!(" -c {n_ctx}");
    if let Some(t) = m.threads {
        c += &format!(" -t {t}");
    }
    if let Some(r) = m.max_ram {
        c += &format!(" --max-ram {r}");
    }
    match &plan.strategy {
        Strategy::Stream { .. } if m.load == "stream" => c += " --load stream",
        Strategy::Mlock => c += " --load mlock",
        Strategy::Read => c += " --load read",
        Strategy::Mmap if m.load == "mmap" => c += " --load mmap",
        _ => {}
    }
    if m.cache_type != "f16" {
        c += &format!(" --cache-type {}", m.cache_type);
    }
    c + " -p 'PROMPT'"
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_text(r: &Report) {
    let b = fmt_bytes;
    let p = &r.plan;
    println!("model:        {} ({} on disk)", r.model, b(r.file_bytes));
    let (lo, hi) = r
        .layer_bytes
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if lo == hi {
        println!("layers:       {} x {}", r.layer_bytes.len(), b(hi));
    } else if !r.layer_bytes.is_empty() {
        println!(
            "layers:       {} of {} to {}",
            r.layer_bytes.len(),
            b(lo),
            b(hi)
        );
    }
    println!(
        "non-layer:    {} read every token{}",
        b(p.hot_non_layer_bytes),
        if p.cold_non_layer_bytes > 0 {
            format!(
                ", token embeddings {} touched one row per token",
                b(p.cold_non_layer_bytes)
            )
        } else {
            String::new()
        }
    );
    println!(
        "context:      {} tokens: KV cache {}, scratch {}, margin {}",
        r.n_ctx,
        b(r.kv_bytes),
        b(r.scratch_bytes),
        b(p.margin_bytes)
    );
    println!(
        "available:    {} from {} ({})",
        b(p.available.bytes),
        p.available.source,
        p.available.detail
    );
    if let Some(m) = p.max_ram {
        println!(
            "--max-ram:    {}{}",
            b(m),
            if p.limited_by_max_ram {
                " (binding)"
            } else {
                " (above the system figure: not binding)"
            }
        );
    }
    println!("budget:       {} for weights", b(p.budget));
    let mode = match &p.strategy {
        Strategy::Mmap => "mmap (all layers resident)".to_string(),
        Strategy::Read => "read into memory".to_string(),
        Strategy::Mlock => "mmap + mlock".to_string(),
        Strategy::Stream {
            resident_layers,
            streamed_layers,
        } => format!(
            "stream: layers {:?} resident, {:?} streamed, {} ring buffer(s) of {}, {} in flight",
            resident_layers,
            streamed_layers,
            r.ring_buffers,
            b(r.max_piece_bytes),
            b(p.window_bytes)
        ),
    };
    println!("mode:         {mode}");
    println!("why:          {}", p.reason);
    println!(
        "per token:    {} from memory, {} from disk",
        b(p.resident_bytes),
        b(p.streamed_bytes)
    );
    if let (Some(m), Some(d)) = (r.mem_bw_bytes_per_s, &r.disk) {
        println!(
            "bandwidth:    memory {}/s, disk {}/s ({}{})",
            b(m as u64),
            b(d.bytes_per_s as u64),
            if d.direct { "O_DIRECT" } else { "buffered" },
            d.note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
    }
    if let Some(t) = r.predicted_tokens_per_s {
        println!("predicted:    {t:.1} tokens/s (bandwidth bound; compute may be slower)");
    }
    for w in &p.warnings {
        println!("warning:      {w}");
    }
    if let Some(e) = &p.error {
        println!("error:        {e}");
    }
    println!("command:      {}", r.command);
}
