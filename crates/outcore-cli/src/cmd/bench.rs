//! `outcore bench`: prompt-processing and generation speed like llama-bench (mean ± stddev over
//! repetitions), plus the weight bytes/s that generation achieves against measured memory bandwidth.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use outcore_engine::memory::bandwidth::measure_mem_bw;
use outcore_engine::model::Model;

use super::common::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model (.gguf or HF directory). Not needed with --membw alone.
    #[arg(short = 'm', long = "model")]
    pub model: Option<std::path::PathBuf>,
    /// Prompt tokens to process in one batch (0 skips the test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens to generate one at a time (0 skips the test).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Threads.
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Repetitions (after one warm-up run).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Measure memory bandwidth (and print it alone when no model is given).
    #[arg(long = "membw")]
    pub membw: bool,
    /// Weights load mode (mmap, read, mlock, stream, auto).
    #[arg(long = "load", default_value = "mmap")]
    pub load: String,
    /// Print JSON.
    #[arg(long = "json")]
    pub json: bool,
    /// Arithmetic: llamacpp (llama.cpp's bits) or fast (see `run --help`).
    #[arg(long = "numerics", default_value = "llamacpp")]
    pub numerics: String,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Deterministic token ids spread over the vocabulary (llama-bench uses random ids).
fn tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let mut x = 0x9e3779b9u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n_vocab as u64) as u32
        })
        .collect()
}

/// Weight bytes read per generated token: every layer and the output matrix (embedding rows are negligible).
fn bytes_per_token(model: &Model) -> u64 {
    let w = &model.weights;
    w.layers.iter().map(|l| l.bytes()).sum::<u64>() + w.output.len as u64 + w.output_norm.len as u64
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let membw = if args.membw {
        Some(measure_mem_bw())
    } else {
        None
    };
    let Some(path) = &args.model else {
        match membw {
            Some(bw) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({ "memory_bandwidth_bytes_per_s": bw })
                    );
                } else {
                    println!("memory bandwidth: {:.2} GB/s", bw / 1e9);
                }
                return Ok(());
            }
            None => bail!("give -m MODEL (or --membw alone to measure memory bandwidth)"),
        }
    };
    let margs = ModelArgs {
        model: path.clone(),
        ctx_size: Some((args.n_prompt + args.n_gen).max(1)),
        threads: args.threads,
        load: args.load.clone(),
        mlock: false,
        no_mmap: false,
        cache_type: "f16".into(),
        chat_template: None,
        max_ram: None,
        tokenizer: None,
        numerics: args.numerics.clone(),
    };
    let model = margs.open()?;
    let n_ctx = margs.n_ctx(&model)?;
    let nv = model.config.n_vocab;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..=args.reps {
        if args.n_prompt > 0 {
            let mut st = model.new_state(n_ctx);
            let toks = tokens(args.n_prompt, nv);
            let t0 = Instant::now();
            model.forward(&mut st, &toks)?;
            let dt = t0.elapsed().as_secs_f64();
            if rep > 0 {
                pp.push(args.n_prompt as f64 / dt);
            }
        }
        if args.n_gen > 0 {
            let mut st = model.new_state(n_ctx);
            let toks = tokens(args.n_gen, nv);
            let t0 = Instant::now();
            for &t in &toks {
                model.forward(&mut st, &[t])?;
            }
            let dt = t0.elapsed().as_secs_f64();
            if rep > 0 {
                tg.push(args.n_gen as f64 / dt);
            }
        }
    }
    let (pp_m, pp_s) = mean_sd(&pp);
    let (tg_m, tg_s) = mean_sd(&tg);
    let bpt = bytes_per_token(&model);
    let achieved = tg_m * bpt as f64;
    if args.json {
        let v = serde_json::json!({
            "model": path, "threads": model.n_threads(), "n_prompt": args.n_prompt, "n_gen": args.n_gen, "repetitions": args.reps,
            "pp_tokens_per_s": {"mean": pp_m, "stddev": pp_s, "runs": pp},
            "tg_tokens_per_s": {"mean": tg_m, "stddev": tg_s, "runs": tg},
            "weight_bytes_per_token": bpt, "achieved_weight_bytes_per_s": achieved,
            "memory_bandwidth_bytes_per_s": membw,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("| model | size | threads | test | t/s |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let size = format!("{:.2} MiB", model.file_bytes() as f64 / (1u64 << 20) as f64);
    if args.n_prompt > 0 {
        println!(
            "| {name} | {size} | {} | pp{} | {pp_m:.2} ± {pp_s:.2} |",
            model.n_threads(),
            args.n_prompt
        );
    }
    if args.n_gen > 0 {
        println!(
            "| {name} | {size} | {} | tg{} | {tg_m:.2} ± {tg_s:.2} |",
            model.n_threads(),
            args.n_gen
        );
        print!(
            "generation reads {:.1} MB of weights per token: {:.2} GB/s achieved",
            bpt as f64 / 1e6,
            achieved / 1e9
        );
        match membw {
            Some(bw) => println!(
                " of {:.2} GB/s measured memory bandwidth ({:.0}%)",
                bw / 1e9,
                100.0 * achieved / bw
            ),
            None => println!(" (add --membw to compare with memory bandwidth)"),
        }
    }
    Ok(())
}
