//! The demo model against llama.cpp's own outputs (../shared/fixtures/smollm2-135m-q4_1).

mod support;

use outcore_engine::model::{LoadOptions, Model, Numerics};
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

fn reference_0336() -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/llamacpp_0336_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// outcore follows the CPU arithmetic of llama.cpp as shipped in llama-cpp-python 0.3.36 bit for bit
/// (Q8_1/Q8_0 activation quantization, x86 dot-product lane order with FMAs, ggml's expf, f16 KV
/// cache and attention rounding): every greedy id of every prompt equals its output.
/// (Reference made by tests/gen_llamacpp_reference.py.)
#[test]
fn greedy_equals_llama_cpp_0336_exactly() {
    let model = load();
    for (i, row) in reference_0336()["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let prompt = support::ids(&row["prompt_ids"]);
        let want = support::ids(&row["greedy_ids"]);
        assert_eq!(greedy(&model, &prompt, want.len()), want, "row {i}");
    }
}

/// Last-position logits are bit-identical to llama.cpp 0.3.36's (top-40 values compared exactly).
#[test]
fn last_logits_bit_identical_to_llama_cpp_0336() {
    let model = load();
    for e in reference_0336()["last_logits"].as_array().unwrap() {
        let prompt = support::ids(&e["prompt_ids"]);
        let mut state = model.new_state(2048);
        let got = model.forward(&mut state, &prompt).unwrap();
        for pair in e["top"].as_array().unwrap() {
            let id = pair[0].as_u64().unwrap() as usize;
            let want = pair[1].as_f64().unwrap() as f32;
            assert_eq!(
                got[id].to_bits(),
                want.to_bits(),
                "prompt {prompt:?}, token {id}"
            );
        }
    }
}

/// Against the shared fixture, made by llama.cpp b4747: its raw-prompt logits are reproduced exactly;
/// its decode steps and 37-token prompts differ from 0.3.36's code, and 0.3.36 itself leaves the
/// fixture's greedy path at the same tokens we do (rows 1, 3, 4, 8, 9 after 12, 8, 9, 7, 24 tokens).
/// So: every row agrees for its first 7 tokens, at least half agree for all 32, top-1 always agrees,
/// and the max |diff| over the fixture's top-20 is 0 for the raw prompts and < 0.5 for the chat
/// prompt (0.3.36 itself is 0.48 off there).
#[test]
fn agrees_with_the_b4747_fixture_where_llama_cpp_0336_does() {
    let model = load();
    let dir = support::fixtures().join("smollm2-135m-q4_1");
    let rows = support::read_jsonl(&dir.join("greedy.jsonl"));
    let mut full = 0;
    for (i, row) in rows.iter().enumerate() {
        let prompt = support::ids(&row["prompt_ids"]);
        let want = support::ids(&row["greedy_ids"]);
        let got = greedy(&model, &prompt, want.len());
        let n = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "row {i}: {n} of {} greedy ids equal the b4747 fixture",
            want.len()
        );
        assert!(n >= 7, "row {i}: only {n} greedy ids equal the fixture");
        full += usize::from(n == want.len());
    }
    assert!(
        full * 2 >= rows.len(),
        "only {full} rows equal the fixture for all tokens"
    );
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
        eprintln!(
            "{:?}: max |diff| over the fixture's top-20 {max_top20:.4}",
            e["prompt"]
        );
        if e["prompt_kind"] == "raw" {
            assert_eq!(max_top20, 0.0, "raw prompt logits should be exact");
        } else {
            assert!(max_top20 < 0.5, "max |diff| over top-20 is {max_top20}");
        }
    }
}

/// llama.cpp's perplexity on GPL-3 at -c 512 is 18.3541; ours must be within 1%, with the
/// default numerics and with the fast ones.
#[test]
fn perplexity_matches_llama_cpp() {
    perplexity_within_1pct(&load(), "llamacpp");
    perplexity_within_1pct(&load_fast(), "fast");
}

fn perplexity_within_1pct(model: &Model, numerics: &str) {
    let text_path = std::path::Path::new("/usr/share/common-licenses/GPL-3");
    if !text_path.is_file() {
        eprintln!("skipping: {} not present", text_path.display());
        return;
    }
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
    eprintln!("{numerics} numerics: perplexity {ppl:.4} (llama.cpp 18.3541)");
    assert!(
        (ppl / 18.3541 - 1.0).abs() < 0.01,
        "{numerics} numerics: perplexity {ppl} not within 1% of 18.3541"
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

/// A prompt evaluated in the same step as another sequence's decode (`forward_mixed`, how the
/// server admits new requests) gives the same greedy tokens as each sequence alone.
#[test]
fn mixed_prefill_and_decode_equal_single() {
    let model = load();
    let prompts: [&[u32]; 2] = [&[504, 3575, 282, 4649, 314], &[1, 4093, 2]];
    let single: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&model, p, 5)).collect();
    let mut states: Vec<_> = prompts.iter().map(|_| model.new_state(256)).collect();
    // sequence 0 starts alone; sequence 1's prompt joins its second step
    let first = argmax(&model.forward(&mut states[0], prompts[0]).unwrap());
    let mut refs: Vec<&mut _> = states.iter_mut().collect();
    let step = model
        .forward_mixed(&mut refs, &[std::slice::from_ref(&first), prompts[1]])
        .unwrap();
    let mut next: Vec<u32> = step.iter().map(|l| argmax(l)).collect();
    let mut got = [vec![first, next[0]], vec![next[1]]];
    for _ in 0..3 {
        let mut refs: Vec<&mut _> = states.iter_mut().collect();
        let logits = model.forward_batch(&mut refs, &next).unwrap();
        next = logits.iter().map(|l| argmax(l)).collect();
        for (g, &t) in got.iter_mut().zip(&next) {
            g.push(t);
        }
    }
    assert_eq!(got[0], single[0]);
    assert_eq!(got[1], single[1][..4]);
    // an empty slice leaves its state alone
    let mut refs: Vec<&mut _> = states.iter_mut().collect();
    let pos1 = refs[1].pos;
    let r = model.forward_mixed(&mut refs, &[&[7], &[]]).unwrap();
    assert!(r[1].is_empty() && !r[0].is_empty());
    assert_eq!(states[1].pos, pos1);
}

fn load_fast() -> Model {
    let opts = LoadOptions {
        n_threads: 2,
        numerics: Numerics::Fast,
        ..Default::default()
    };
    Model::load(&support::demo_model(), &opts).expect("demo model loads")
}

/// The fast numerics give a token the same bits however it is batched: a prompt evaluated in
/// one step, token by token, or in two chunks, and a sequence decoding beside others, all give
/// bit-identical logits (what lets the server keep a prompt's KV cache for the next request).
#[test]
fn fast_numerics_are_batch_and_chunk_invariant() {
    let model = load_fast();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let prompt: Vec<u32> = reference_0336()["last_logits"][0]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert!(prompt.len() >= 4);
    let mut s = model.new_state(256);
    let whole = model.forward(&mut s, &prompt).unwrap();
    let mut s = model.new_state(256);
    let mut one = Vec::new();
    for &t in &prompt {
        one = model.forward(&mut s, &[t]).unwrap();
    }
    assert_eq!(bits(&one), bits(&whole), "token by token");
    let mut s = model.new_state(256);
    model.forward(&mut s, &prompt[..3]).unwrap();
    let two = model.forward(&mut s, &prompt[3..]).unwrap();
    assert_eq!(bits(&two), bits(&whole), "in two chunks");
    // Beside another sequence's 5-token prompt and a third one's decode step.
    let mut a = model.new_state(256);
    let mut b = model.new_state(256);
    let mut c = model.new_state(256);
    model.forward(&mut c, &[1, 4093]).unwrap();
    let mut refs = [&mut a, &mut b, &mut c];
    let step = model
        .forward_mixed(
            &mut refs,
            &[&prompt[..], &[504, 3575, 282, 4649, 314], &[2]],
        )
        .unwrap();
    assert_eq!(bits(&step[0]), bits(&whole), "in a mixed step");
}

/// The fast numerics differ from llama.cpp's in rounding only: on the reference prompts the
/// top-1 token is llama.cpp's and the top-40 logits stay within 1.0 (measured: up to 0.56; two
/// llama.cpp builds differ by 0.48 on the fixture's chat prompt, see above).
#[test]
fn fast_numerics_stay_close_to_llama_cpp() {
    let model = load_fast();
    for e in reference_0336()["last_logits"].as_array().unwrap() {
        let prompt = support::ids(&e["prompt_ids"]);
        let mut state = model.new_state(2048);
        let got = model.forward(&mut state, &prompt).unwrap();
        let top = e["top"].as_array().unwrap();
        assert_eq!(argmax(&got), top[0][0].as_u64().unwrap() as u32);
        let worst = top
            .iter()
            .map(|p| (got[p[0].as_u64().unwrap() as usize] - p[1].as_f64().unwrap() as f32).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{} prompt tokens: max |diff| over the top-40 {worst:.4}",
            prompt.len()
        );
        assert!(worst < 1.0, "max |diff| {worst}");
    }
}
