//! Time of one batched decode step (`Model::forward_batch`) for 1..=8 sequences, the cost the
//! server's worker pays per token of every active stream. Tokens/s per batch size shows what
//! continuous batching can gain over one stream on this machine.
//!
//!     cargo run --release -p outcore-server --example batch_step -- [MODEL] [THREADS]
use std::time::Instant;

use outcore_engine::model::{LoadOptions, Model};
use outcore_engine::sampler::{Sampler, SamplingParams};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .filter(|a| !a.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home).join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    let mut opts = LoadOptions::default();
    if let Some(t) = args.next().and_then(|t| t.parse().ok()) {
        opts.n_threads = t;
    }
    let model = Model::load(&path, &opts).expect("load the model");
    println!(
        "{}: {} threads; one batched decode step per token of every sequence",
        path.display(),
        model.n_threads()
    );
    println!("batch | ms/step | tok/s | x batch 1");
    let mut base = 0.0;
    for batch in [1usize, 2, 4, 8] {
        let mut states: Vec<_> = (0..batch).map(|_| model.new_state(256)).collect();
        for s in states.iter_mut() {
            model
                .forward(s, &[1, 504, 3458, 282, 4649, 314])
                .expect("prefill");
        }
        let steps = 24;
        let tokens: Vec<u32> = (0..batch as u32).map(|i| 300 + i).collect();
        // One warm-up step, then the timed ones.
        let mut refs: Vec<&mut _> = states.iter_mut().collect();
        model.forward_batch(&mut refs, &tokens).expect("step");
        let t0 = Instant::now();
        for _ in 0..steps {
            model.forward_batch(&mut refs, &tokens).expect("step");
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0 / steps as f64;
        let tps = batch as f64 * 1000.0 / ms;
        if batch == 1 {
            base = tps;
        }
        println!("{batch:5} | {ms:7.2} | {tps:5.1} | {:.2}", tps / base);
    }
    // What the worker adds per sequence and token when sampling with a temperature.
    let mut state = model.new_state(64);
    let logits = model.forward(&mut state, &[1, 504, 3458]).expect("forward");
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 0.8,
        seed: 1,
        ..SamplingParams::default()
    });
    let n = 50;
    let t0 = Instant::now();
    for _ in 0..n {
        let mut l = logits.clone();
        sampler.sample(&mut l, &[]);
    }
    println!(
        "sampling at temperature 0.8: {:.2} ms per token ({} logits)",
        t0.elapsed().as_secs_f64() * 1000.0 / n as f64,
        logits.len()
    );
}
