//! The demo model (SmolLM2-135M Q4_1) as a real HF checkpoint (shared/tools/make_hf_from_gguf.py,
//! f32): converting it back to f32 GGUF must give the dequantized demo tensors bit for bit (the
//! converter re-applies the q/k permutation the tool undid) and the demo's tokenizer metadata.
//! Slow (~30-60 s on 2 cores: 538 MB of f32 written, read and compared), hence ignored.

use std::path::{Path, PathBuf};
use std::process::Command;

use outcore_convert::{convert_hf, ConvertOptions, FileType, ModeChoice, Quiet};

fn demo_model() -> PathBuf {
    let p = std::env::var("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "demo model {} not found: run scripts/fetch-demo-model.sh",
        p.display()
    );
    p
}

/// shared/tools, next to the fixtures (OUTCORE_FIXTURES/../tools when that is set).
fn shared_tools() -> PathBuf {
    match std::env::var("OUTCORE_FIXTURES") {
        Ok(f) => Path::new(&f).join("../tools"),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools"),
    }
}

#[test]
#[ignore = "slow: makes a 538 MB HF checkpoint of the demo model and converts it back"]
fn demo_model_hf_roundtrip_is_bit_identical() {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy, safetensors"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: python3 with gguf/numpy/safetensors not found; skipping");
        return;
    }
    let demo = demo_model();
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("SmolLM2-135M-Instruct");
    let st = Command::new("python3")
        .arg(shared_tools().join("make_hf_from_gguf.py"))
        .arg(&demo)
        .arg(&hf)
        .args(["--dtype", "f32"])
        .status()
        .unwrap();
    assert!(st.success(), "make_hf_from_gguf.py failed");
    let out = dir.path().join("roundtrip.f32.gguf");
    let opts = ConvertOptions {
        input: hf.clone(),
        output: out.clone(),
        ftype: FileType::F32,
        force: false,
        mode: ModeChoice::Auto,
        threads: 2,
        pure: false,
        name: None,
        no_tokenizer: false,
        tokenizer_pre: None,
    };
    let report = convert_hf(&opts, &Quiet).unwrap();
    assert_eq!(report.stats.tensors, 272);
    let script = r#"
import sys, numpy as np, gguf
from gguf.quants import dequantize
ours = gguf.GGUFReader(sys.argv[1]); demo = gguf.GGUFReader(sys.argv[2])
o = {t.name: t for t in ours.tensors}
assert set(o) == {t.name for t in demo.tensors}, set(o) ^ {t.name for t in demo.tensors}
for t in demo.tensors:
    want = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    got = np.asarray(o[t.name].data).reshape(-1)
    assert o[t.name].tensor_type == gguf.GGMLQuantizationType.F32, t.name
    assert list(o[t.name].shape) == list(t.shape), t.name
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), t.name
def val(r, k):
    f = r.fields.get(k)
    return None if f is None else f.contents()
keys = [k for k in demo.fields if k.startswith("tokenizer.") or k.startswith("llama.")]
for k in keys:
    assert val(ours, k) == val(demo, k), (k, str(val(ours, k))[:80], str(val(demo, k))[:80])
assert val(ours, "tokenizer.ggml.pre") == "smollm"
assert val(ours, "general.file_type") == 0
print("ok", len(keys), "keys")
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(&demo)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "comparison failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
