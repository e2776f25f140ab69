//! `--numerics runq` runs llama2.c checkpoints with runq.c's arithmetic: on outcore's llama2.c
//! exports of the demo model, every greedy id equals llama2.c runq.c's (gcc -O3 build) on the 10
//! demo prompts, at the stock group size 64 (and at 32 and 192: `--ignored`). The reference ids are
//! tests/data/runq_reference.json, made by tests/gen_runq_reference.py (which documents the
//! scratch runq build).

mod support;

use std::path::Path;

use outcore_convert::llama2c_export::{export_llama2c, ExportOptions, Rounding};
use outcore_convert::Quiet;
use outcore_engine::model::{LoadOptions, Model, Numerics};
use outcore_engine::sampler::argmax;

fn reference() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/runq_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn export(input: &Path, out: &Path, tok: Option<&Path>, gs: u32) {
    let opts = ExportOptions {
        input: input.to_path_buf(),
        output: out.to_path_buf(),
        tokenizer_out: tok.map(Path::to_path_buf),
        group_size: gs,
        rounding: Rounding::Ggml,
        max_seq_len: None,
        force: true,
    };
    export_llama2c(&opts, &Quiet).unwrap();
}

fn load(path: &Path, numerics: Numerics) -> Model {
    let opts = LoadOptions {
        n_threads: 2,
        numerics,
        ..Default::default()
    };
    Model::load(path, &opts).unwrap()
}

/// Greedy ids as runq.c samples them (argmax, first of equal maxima), stopping after id 1 like
/// the reference generator's runq build.
fn greedy(m: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut st = m.new_state(prompt.len() + n);
    let mut logits = m.forward(&mut st, prompt).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let t = argmax(&logits);
        out.push(t);
        if t == 1 || out.len() == n {
            break;
        }
        logits = m.forward(&mut st, &[t]).unwrap();
    }
    out
}

/// Exports the demo model at group size `gs` and checks every prompt's greedy ids.
fn check_group_size(gs: u32) {
    let doc = reference();
    let rows = doc["group_sizes"][gs.to_string()].as_array().unwrap();
    let n = doc["n_predict"].as_u64().unwrap() as usize;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join(format!("gs{gs}.bin"));
    export(&support::demo_model(), &bin, None, gs);
    let m = load(&bin, Numerics::Runq);
    assert_eq!(rows.len(), 10);
    for row in rows {
        let prompt = support::ids(&row["prompt_ids"]);
        let want = support::ids(&row["ids"]);
        let got = greedy(&m, &prompt, n);
        assert_eq!(got, want, "group size {gs}, prompt {}", row["prompt"]);
    }
}

#[test]
fn runq_numerics_equal_runq_c_stock_group_size_64() {
    check_group_size(64);
}

#[test]
#[ignore = "slow (~30 s); run with --ignored"]
fn runq_numerics_equal_runq_c_group_size_32() {
    check_group_size(32);
}

#[test]
#[ignore = "slow (~30 s); run with --ignored"]
fn runq_numerics_equal_runq_c_group_size_192() {
    check_group_size(192);
}

/// A group size that is not a multiple of 32 (tiny-llama's FFN width 172 gives 4), a separate
/// classifier, GQA: runq numerics stay close to the f32 model (the default numerics expand these
/// int8 groups to F32, runq keeps them int8 and quantizes the activations too).
#[test]
fn runq_numerics_on_odd_group_size_track_f32() {
    let tiny = support::fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("tiny.bin");
    export(&tiny.join("tiny-llama.f32.gguf"), &bin, None, 64);
    let m = load(&bin, Numerics::Runq);
    let g = load(&tiny.join("tiny-llama.f32.gguf"), Numerics::Llamacpp);
    let toks = [1u32, 17, 300, 42, 7];
    let (mut s1, mut s2) = (m.new_state(8), g.new_state(8));
    let all1 = m.forward_all(&mut s1, &toks).unwrap();
    let all2 = g.forward_all(&mut s2, &toks).unwrap();
    assert_eq!(all1.len(), all2.len());
    let num: f32 = all1.iter().zip(&all2).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f32 = all2.iter().map(|y| y * y).sum();
    let rel = (num / den).sqrt();
    assert!(rel < 0.1, "relative logit error {rel}");
    // Token by token gives the same bits as the prompt at once (runq.c runs one position at a time).
    let mut s3 = m.new_state(8);
    let mut last = Vec::new();
    for &t in &toks {
        last = m.forward(&mut s3, &[t]).unwrap();
    }
    assert_eq!(last, all1[all1.len() - last.len()..]);
}

/// runq numerics need a llama2.c checkpoint.
#[test]
fn runq_numerics_refuse_gguf() {
    let tiny = support::fixtures().join("tiny-llama/tiny-llama.f32.gguf");
    let opts = LoadOptions {
        numerics: Numerics::Runq,
        ..Default::default()
    };
    let err = Model::load(&tiny, &opts).err().expect("a GGUF is refused");
    assert!(err.to_string().contains("llama2.c"), "{err}");
}
