//! The demo model against llama.cpp's own outputs (../shared/fixtures/smollm2-135m-q4_1).

mod support;

use outcore_engine::model::{LoadOptions, Model};
use outcore_engine::sampler::argmax;

fn load() -> Model {
    let opts = LoadOptions {
        n_threads: 2,
        ..Default::default()
    };
    Model::load(&support::demo_model(), &opts).expect("demo model loads")
}

fn greedy(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut state = model.new_state(2048);
    let mut logits = model.forward(&mut state, prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = argmax(&logits);
        out.push(t);
        logits = model.forward(&mut state, &[t]).unwrap();
    }
    out
}

/// First 16 greedy ids must equal llama.cpp's on every prompt; all 32 on at least 80% of prompts.
#[test]
fn greedy_continuations_match_llama_cpp() {
    let model = load();
    let rows = support::read_jsonl(&support::fixtures().join("smollm2-135m-q4_1/greedy.jsonl"));
    let mut full = 0;
    for (i, row) in rows.iter().enumerate() {
        let prompt = support::ids(&row["prompt_ids"]);
        let want = support::ids(&row["greedy_ids"]);
        let got = greedy(&model, &prompt, want.len());
        assert_eq!(
            got[..16],
            want[..16],
            "row {i}: first 16 greedy ids differ from llama.cpp's"
        );
        if got == want {
            full += 1;
        } else {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            eprintln!("row {i}: diverges from llama.cpp at generated token {at}");
        }
    }
    assert!(
        full * 10 >= rows.len() * 8,
        "only {full}/{} rows match all 32 tokens",
        rows.len()
    );
}

/// Same top-1 as llama.cpp, and max |diff| over llama.cpp's top-20 below 0.25.
/// Why 0.25: llama.cpp quantizes activations to Q8_1/Q8_0 exactly as we do, so remaining
/// differences come from float summation order in SIMD reductions, expf/silu approximations and
/// f16 rounding of attention inputs; they are measured around 0.01-0.1 on these prompts, while
/// plain f32 math (no activation quantization) is off by up to 0.9 (fixtures README).
#[test]
fn last_logits_match_llama_cpp() {
    let model = load();
    let dir = support::fixtures().join("smollm2-135m-q4_1");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    for e in meta["entries"].as_array().unwrap() {
        let prompt = support::ids(&e["prompt_ids"]);
        let bytes = std::fs::read(dir.join(e["file"].as_str().unwrap())).unwrap();
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut state = model.new_state(2048);
        let got = model.forward(&mut state, &prompt).unwrap();
        assert_eq!(
            argmax(&got),
            argmax(&want),
            "top-1 differs for {:?}",
            e["prompt"]
        );
        let mut idx: Vec<usize> = (0..want.len()).collect();
        idx.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let max_top20 = idx[..20]
            .iter()
            .map(|&i| (got[i] - want[i]).abs())
            .fold(0f32, f32::max);
        let max_all = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{:?}: max |diff| top-20 {max_top20:.4}, all {max_all:.4}",
            e["prompt"]
        );
        assert!(max_top20 < 0.25, "max |diff| over top-20 is {max_top20}");
    }
}

/// llama.cpp's perplexity on GPL-3 at -c 512 is 18.3541; ours must be within 1%.
#[test]
fn perplexity_matches_llama_cpp() {
    let text_path = std::path::Path::new("/usr/share/common-licenses/GPL-3");
    if !text_path.is_file() {
        eprintln!("skipping: {} not present", text_path.display());
        return;
    }
    let model = load();
    let tok = model.tokenizer().unwrap();
    let text = std::fs::read_to_string(text_path).unwrap();
    let tokens = tok.encode(&text, true, false);
    let n_ctx = 512;
    let n_chunk = tokens.len() / n_ctx;
    assert_eq!(n_chunk, 14);
    let nv = model.config.n_vocab;
    let (mut nll, mut count) = (0f64, 0usize);
    let mut state = model.new_state(n_ctx);
    for c in 0..n_chunk {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        state.truncate(0);
        let logits = model.forward_all(&mut state, chunk).unwrap();
        for j in n_ctx / 2..n_ctx - 1 {
            let row = &logits[j * nv..(j + 1) * nv];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
            nll -= (row[chunk[j + 1] as usize] - max) as f64 - sum.ln();
            count += 1;
        }
    }
    let ppl = (nll / count as f64).exp();
    eprintln!("perplexity {ppl:.4} (llama.cpp 18.3541)");
    assert!(
        (ppl / 18.3541 - 1.0).abs() < 0.01,
        "perplexity {ppl} not within 1% of 18.3541"
    );
}

/// Every load mode gives the same tokens.
#[test]
fn load_modes_agree() {
    use outcore_format::mapping::LoadMode;
    let prompt = [504u32, 3575, 282, 4649, 314];
    let mut outs = Vec::new();
    for mode in [LoadMode::Mmap, LoadMode::Read] {
        let opts = LoadOptions {
            n_threads: 2,
            load: mode,
            ..Default::default()
        };
        let m = Model::load(&support::demo_model(), &opts).unwrap();
        outs.push(greedy(&m, &prompt, 8));
    }
    assert_eq!(outs[0], outs[1]);
}

/// Batched decoding (several sequences in one step) gives each sequence the tokens it gets alone.
#[test]
fn batched_decode_equals_single() {
    let model = load();
    let prompts: [&[u32]; 2] = [&[504, 3575, 282, 4649, 314], &[1, 4093, 2]];
    let single: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&model, p, 6)).collect();
    let mut states: Vec<_> = prompts.iter().map(|_| model.new_state(256)).collect();
    let mut next: Vec<u32> = prompts
        .iter()
        .zip(states.iter_mut())
        .map(|(p, s)| argmax(&model.forward(s, p).unwrap()))
        .collect();
    let mut got = vec![vec![next[0]], vec![next[1]]];
    for _ in 1..6 {
        let mut refs: Vec<&mut _> = states.iter_mut().collect();
        let logits = model.forward_batch(&mut refs, &next).unwrap();
        next = logits.iter().map(|l| argmax(l)).collect();
        for (g, &t) in got.iter_mut().zip(&next) {
            g.push(t);
        }
    }
    assert_eq!(got, single);
}
