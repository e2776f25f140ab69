//! llama2.c export: GGUF and HF give the same checkpoint (the q/k permutation), outcore loads it,
//! and greedy output on the demo model equals the Q8_0 GGUF's.

use std::path::{Path, PathBuf};

use outcore_convert::llama2c_export::{export_llama2c, ExportOptions, Rounding};
use outcore_convert::requantize::{requantize, RequantizeOptions};
use outcore_convert::{FileType, ModeChoice, Quiet};
use outcore_engine::model::{LoadOptions, Model};
use outcore_format::llama2c::Kind;
use outcore_format::llama2c::{Llama2cFile, Llama2cVocab};
use outcore_format::{GgmlType, GgufFile, LoadMode};

fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn demo_model() -> PathBuf {
    let p = std::env::var("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "demo model {} missing: run scripts/fetch-demo-model.sh",
        p.display()
    );
    p
}

fn export(input: &Path, out: &Path, tok: Option<PathBuf>, gs: u32) {
    export_with(input, out, tok, gs, Rounding::Ggml)
}

fn export_with(input: &Path, out: &Path, tok: Option<PathBuf>, gs: u32, rounding: Rounding) {
    let opts = ExportOptions {
        input: input.to_path_buf(),
        output: out.to_path_buf(),
        tokenizer_out: tok,
        group_size: gs,
        rounding,
        max_seq_len: None,
        force: true,
    };
    export_llama2c(&opts, &Quiet).unwrap();
}

fn opts() -> LoadOptions {
    LoadOptions {
        n_threads: 2,
        ..Default::default()
    }
}

fn greedy(m: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut st = m.new_state(prompt.len() + n + 1);
    let mut logits = m.forward(&mut st, prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        out.push(t);
        logits = m.forward(&mut st, &[t]).unwrap();
    }
    out
}

#[test]
fn gguf_and_hf_exports_are_identical_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = fixtures().join("tiny-llama");
    let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    export(&tiny.join("tiny-llama.f32.gguf"), &a, None, 64);
    export(&tiny, &b, None, 64);
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba.len(), bb.len());
    assert!(
        ba == bb,
        "HF export (permuted) differs from the GGUF export"
    );
    let f = Llama2cFile::open(&a, LoadMode::Mmap).unwrap();
    let c = f.config();
    // 172 is not a multiple of 64, 32, 16 or 8: the group size falls back to 4.
    assert_eq!(
        (c.dim, c.hidden_dim, c.n_layers, c.group_size),
        (64, 172, 3, 4)
    );
    assert!(!c.shared_classifier);

    // outcore runs it; its logits stay close to the f32 model's.
    let m = Model::load(&a, &opts()).unwrap();
    let g = Model::load(&tiny.join("tiny-llama.f32.gguf"), &opts()).unwrap();
    let toks = [1u32, 17, 300, 42, 7];
    let (mut s1, mut s2) = (m.new_state(8), g.new_state(8));
    let l1 = m.forward(&mut s1, &toks).unwrap();
    let l2 = g.forward(&mut s2, &toks).unwrap();
    let num: f32 = l1.iter().zip(&l2).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f32 = l2.iter().map(|y| y * y).sum();
    assert!(
        (num / den).sqrt() < 0.05,
        "relative logit error {}",
        (num / den).sqrt()
    );
}

/// Int8 values of the export's Q8 tensors (as outcore lays them out: Q8_0 blocks with the scale
/// rounded to f16) that differ from the Q8_0 GGUF's, and the tensors compared.
fn q8_differences(bin: &Path, q8: &Path) -> (usize, usize, usize) {
    let f = Llama2cFile::open(bin, LoadMode::Mmap).unwrap();
    let g = GgufFile::open(q8, LoadMode::Mmap).unwrap();
    let (mut tensors, mut values, mut differ) = (0, 0, 0);
    for t in f.tensors() {
        let want = g.tensor(&t.name).unwrap();
        let mut got = Vec::new();
        let ty = f.relayout(t, &mut got);
        if t.kind == Kind::F32 {
            assert_eq!(got, want.bytes, "{}", t.name);
            continue;
        }
        assert_eq!(
            (ty, want.ty),
            (GgmlType::Q8_0, GgmlType::Q8_0),
            "{}",
            t.name
        );
        assert_eq!(got.len(), want.bytes.len(), "{}", t.name);
        for (a, b) in got.chunks_exact(34).zip(want.bytes.chunks_exact(34)) {
            assert_eq!(a[..2], b[..2], "{}: f16 scales differ", t.name);
            differ += a[2..].iter().zip(&b[2..]).filter(|(x, y)| x != y).count();
            values += 32;
        }
        tensors += 1;
    }
    (tensors, values, differ)
}

/// The faithful "same weights": `outcore export --format llama2c --group-size 32` (ggml's Q8_0
/// rounding, the default) holds exactly the int8 values of `outcore quantize --type q8_0 --pure`
/// of the same source, and scales that round to its f16 `d`. So outcore loads the same Q8_0
/// tensors from both, and greedy output is equal on every demo prompt.
#[test]
fn demo_export_greedy_equals_q8_0_gguf() {
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("model.bin");
    let tok = dir.path().join("tokenizer.bin");
    export(&demo, &bin, Some(tok.clone()), 32);
    let q8 = dir.path().join("q8.gguf");
    requantize(
        &RequantizeOptions {
            input: demo.clone(),
            output: q8.clone(),
            ftype: FileType::parse("q8_0").unwrap(),
            force: true,
            mode: ModeChoice::Auto,
            threads: 2,
            pure: true,
        },
        &Quiet,
    )
    .unwrap();
    let (tensors, values, differ) = q8_differences(&bin, &q8);
    assert_eq!(tensors, 1 + 7 * 30);
    assert_eq!(differ, 0, "{differ} of {values} int8 values differ");
    // export.py's rounding (half-even of w / s) moves a few values by one unit.
    let py = dir.path().join("py.bin");
    export_with(&demo, &py, None, 32, Rounding::ExportPy);
    let (_, _, py_differ) = q8_differences(&py, &q8);
    eprintln!("export.py rounding: {py_differ} of {values} int8 values differ from Q8_0");
    assert!(py_differ * 1000 < values);
    drop(std::fs::remove_file(&py));

    let v = Llama2cVocab::read(&tok, Some(49152)).unwrap();
    // Byte-level pieces come back as raw bytes: "Ġthe" -> " the".
    assert!(v.pieces.iter().any(|p| p == b" the"));
    let m = Model::load(&bin, &opts()).unwrap();
    let g = Model::load(&q8, &opts()).unwrap();
    let text = std::fs::read_to_string(fixtures().join("smollm2-135m-q4_1/greedy.jsonl")).unwrap();
    let mut prefixes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let ids: Vec<u32> = j["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let a = greedy(&m, &ids, 16);
        let b = greedy(&g, &ids, 16);
        let same = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        eprintln!("{:?}: {same}/16 greedy tokens equal", j["prompt"]);
        prefixes.push(same);
    }
    assert_eq!(prefixes.len(), 10);
    assert!(prefixes.iter().all(|&n| n == 16), "{prefixes:?}");
}
