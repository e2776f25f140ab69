//! HF -> GGUF against the tiny fixtures in ../shared/fixtures (made by transformers + gguf-py in
//! llama.cpp's layout): bit-identical tensors, llama.cpp's metadata, errors before output.

use std::path::{Path, PathBuf};
use std::process::Command;

use outcore_convert::error::ConvertError;
use outcore_convert::{convert_hf, ConvertOptions, FileType, ModeChoice, Quiet};
use outcore_format::{GgmlType, GgufFile, LoadMode};

fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn opts(input: &Path, output: &Path, ftype: FileType) -> ConvertOptions {
    ConvertOptions {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        ftype,
        force: false,
        mode: ModeChoice::LowMemory,
        threads: 2,
        pure: false,
        name: None,
        no_tokenizer: true,
        tokenizer_pre: None,
    }
}

/// Copies a fixture folder into a temp dir (so tests can damage it).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

#[test]
fn tiny_llama_f32_equals_fixture_gguf() {
    let fx = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-llama.gguf");
    let report = convert_hf(&opts(&fx, &out, FileType::F32), &Quiet).unwrap();
    assert_eq!(report.stats.tensors, 30);

    let ours = GgufFile::open(&out, LoadMode::Read).unwrap();
    let want = GgufFile::open(fx.join("tiny-llama.f32.gguf"), LoadMode::Read).unwrap();
    let a: Vec<_> = ours
        .tensors()
        .map(|t| (t.name.to_string(), t.ty, t.shape.to_vec()))
        .collect();
    let b: Vec<_> = want
        .tensors()
        .map(|t| (t.name.to_string(), t.ty, t.shape.to_vec()))
        .collect();
    assert_eq!(a, b);
    for t in want.tensors() {
        assert!(
            ours.tensor(t.name).unwrap().bytes == t.bytes,
            "tensor {} differs",
            t.name
        );
    }
    // Every non-tokenizer key of the fixture, with the same value and type.
    for (k, v) in want.metadata.iter() {
        if k.starts_with("tokenizer.") {
            continue;
        }
        assert_eq!(ours.metadata.get(k), Some(v), "metadata key {k}");
    }
}

#[test]
fn tiny_qwen2_has_biases_no_permutation_and_tied_embeddings() {
    let fx = fixtures().join("tiny-qwen2");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    convert_hf(&opts(&fx, &out, FileType::F32), &Quiet).unwrap();
    let g = GgufFile::open(&out, LoadMode::Read).unwrap();
    assert_eq!(g.metadata.get_str("general.architecture").unwrap(), "qwen2");
    assert_eq!(g.metadata.get_f32("qwen2.rope.freq_base").unwrap(), 1e6);
    assert!(
        g.tensor("output.weight").is_none(),
        "tied embeddings: no output tensor"
    );
    let ck = outcore_convert::source::Checkpoint::open(&fx).unwrap();
    for (gguf, hf) in [
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj.weight",
        ),
        (
            "blk.1.attn_k.weight",
            "model.layers.1.self_attn.k_proj.weight",
        ),
        ("blk.1.attn_q.bias", "model.layers.1.self_attn.q_proj.bias"),
        ("blk.0.attn_v.bias", "model.layers.0.self_attn.v_proj.bias"),
        ("token_embd.weight", "model.embed_tokens.weight"),
    ] {
        assert!(
            g.tensor(gguf).unwrap().bytes == ck.view(hf).unwrap().bytes,
            "{gguf}"
        );
    }
    assert_eq!(g.tensor("blk.0.attn_q.bias").unwrap().ty, GgmlType::F32);
}

#[test]
fn v5_config_spelling_gives_the_same_file() {
    let fx = fixtures().join("tiny-qwen2");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny-qwen2");
    copy_dir(&fx, &src);
    std::fs::copy(
        fx.join("config.transformers-v5.json"),
        src.join("config.json"),
    )
    .unwrap();
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    convert_hf(&opts(&fx, &a, FileType::F16), &Quiet).unwrap();
    convert_hf(&opts(&src, &b, FileType::F16), &Quiet).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

#[test]
fn bf16_and_f16_inputs_convert_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (folder, ty, ft) in [
        ("tiny-llama-bf16", GgmlType::BF16, FileType::BF16),
        ("tiny-llama-f16", GgmlType::F16, FileType::F16),
    ] {
        let fx = fixtures().join(folder);
        let ck = outcore_convert::source::Checkpoint::open(&fx).unwrap();
        // Same type out: the bytes are the source bytes (q/k permuted).
        let out = dir.path().join(format!("{folder}.gguf"));
        convert_hf(&opts(&fx, &out, ft), &Quiet).unwrap();
        let g = GgufFile::open(&out, LoadMode::Read).unwrap();
        let v = g.tensor("blk.1.ffn_down.weight").unwrap();
        assert_eq!(v.ty, ty);
        assert!(
            v.bytes
                == ck
                    .view("model.layers.1.mlp.down_proj.weight")
                    .unwrap()
                    .bytes
        );
        assert_eq!(g.tensor("blk.1.ffn_norm.weight").unwrap().ty, GgmlType::F32);
        // f32 out: the widened values equal the f32-widened source.
        let out32 = dir.path().join(format!("{folder}.f32.gguf"));
        convert_hf(&opts(&fx, &out32, FileType::F32), &Quiet).unwrap();
        let g32 = GgufFile::open(&out32, LoadMode::Read).unwrap();
        let src = ck.view("model.layers.2.self_attn.o_proj.weight").unwrap();
        let t = g32.tensor("blk.2.attn_output.weight").unwrap();
        let widened: Vec<u8> = src
            .bytes
            .chunks_exact(2)
            .flat_map(|c| {
                let bits = u16::from_le_bytes([c[0], c[1]]);
                let f = if ty == GgmlType::BF16 {
                    half::bf16::from_bits(bits).to_f32()
                } else {
                    half::f16::from_bits(bits).to_f32()
                };
                f.to_le_bytes()
            })
            .collect();
        assert!(t.bytes == &widened[..], "{folder}");
        // Permuted q in bf16 equals the permuted q of the f32 conversion, narrowed again.
        let q16 = g.tensor("blk.0.attn_q.weight").unwrap();
        let q32 = g32.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(q16.bytes.len() * 2, q32.bytes.len());
    }
}

fn assert_fails_without_output(o: &ConvertOptions, check: impl Fn(&ConvertError) -> bool) {
    let e = convert_hf(o, &Quiet).expect_err("conversion must fail");
    assert!(check(&e), "unexpected error: {e}");
    assert!(!o.output.exists(), "no output may be left after: {e}");
    let parent = o.output.parent().unwrap();
    for f in std::fs::read_dir(parent).unwrap() {
        let n = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp."), "temp file {n} left after: {e}");
    }
}

#[test]
fn bad_inputs_fail_before_writing() {
    let fx = fixtures().join("tiny-llama");
    let tmp = tempfile::tempdir().unwrap();
    let outdir = tmp.path().join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = outdir.join("x.gguf");
    let fresh = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&fx, &d);
        d
    };

    // A shard named by the index is missing.
    let d = fresh("missing-shard");
    std::fs::remove_file(d.join("model-00003-of-00008.safetensors")).unwrap();
    assert_fails_without_output(&opts(&d, &out, FileType::F32), |e| {
        e.to_string().contains("model-00003-of-00008.safetensors")
    });

    // The index names a tensor its shard does not hold.
    let d = fresh("index-extra");
    let idx = d.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&idx).unwrap().replacen(
        "\"weight_map\": {",
        "\"weight_map\": {\"model.layers.9.mlp.up_proj.weight\": \"model-00001-of-00008.safetensors\",",
        1,
    );
    std::fs::write(&idx, text).unwrap();
    assert_fails_without_output(&opts(&d, &out, FileType::F32), |e| {
        e.to_string().contains("model.layers.9.mlp.up_proj.weight")
    });

    // Shape mismatch against config.json.
    let d = fresh("shape");
    let cfg = d.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"intermediate_size\": 172", "\"intermediate_size\": 176");
    std::fs::write(&cfg, text).unwrap();
    assert_fails_without_output(&opts(&d, &out, FileType::F32), |e| {
        matches!(e, ConvertError::ShapeMismatch { .. })
    });

    // Unsupported architecture.
    let d = fresh("arch");
    let text = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("LlamaForCausalLM", "GPTNeoXForCausalLM");
    std::fs::write(d.join("config.json"), text).unwrap();
    assert_fails_without_output(&opts(&d, &out, FileType::F32), |e| {
        matches!(e, ConvertError::UnsupportedArch { .. })
    });

    // Unsupported dtype (an I32 tensor) in a shard.
    let d = fresh("dtype");
    let shard = d.join("model-00008-of-00008.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let patched = header.replacen("\"dtype\":\"F32\"", "\"dtype\":\"I32\"", 1);
    assert_ne!(header, patched);
    bytes.splice(8..8 + n, patched.into_bytes());
    std::fs::write(&shard, bytes).unwrap();
    assert_fails_without_output(
        &opts(&d, &out, FileType::F32),
        |e| matches!(e, ConvertError::BadTensor { problem, .. } if problem.contains("I32")),
    );

    // No tokenizer and no --no-tokenizer.
    let mut o = opts(&fx, &out, FileType::F32);
    o.no_tokenizer = false;
    assert_fails_without_output(&o, |e| matches!(e, ConvertError::NoTokenizer { .. }));

    // Not a checkpoint at all.
    assert_fails_without_output(&opts(&tmp.path().join("nope"), &out, FileType::F32), |e| {
        matches!(e, ConvertError::Missing { .. })
    });
}

#[test]
fn force_is_needed_to_overwrite() {
    let fx = fixtures().join("tiny-qwen2");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    std::fs::write(&out, b"precious").unwrap();
    let e = convert_hf(&opts(&fx, &out, FileType::F32), &Quiet).unwrap_err();
    assert!(matches!(e, ConvertError::OutputExists { .. }), "{e}");
    assert!(e.to_string().contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let mut o = opts(&fx, &out, FileType::F32);
    o.force = true;
    o.mode = ModeChoice::Standard;
    convert_hf(&o, &Quiet).unwrap();
    assert!(GgufFile::open(&out, LoadMode::Read).is_ok());
}

/// gguf-py (the reference reader) reads what we wrote, with the same tensors as the fixture.
#[test]
fn gguf_py_reads_the_output() {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: python3 with gguf/numpy not found; skipping the gguf-py check");
        return;
    }
    let fx = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.gguf");
    convert_hf(&opts(&fx, &out, FileType::F32), &Quiet).unwrap();
    let script = r#"
import sys, numpy as np, gguf
a = gguf.GGUFReader(sys.argv[1]); b = gguf.GGUFReader(sys.argv[2])
assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
for x, y in zip(a.tensors, b.tensors):
    assert x.tensor_type == y.tensor_type and list(x.shape) == list(y.shape), x.name
    assert np.array_equal(x.data, y.data), x.name
assert a.fields["general.file_type"].contents() == 0
print("ok", len(a.tensors))
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(fx.join("tiny-llama.f32.gguf"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gguf-py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
