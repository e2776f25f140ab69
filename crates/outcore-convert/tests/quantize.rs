//! Quantized output: HF -> Q*_0/Q*_1 equals gguf-py's reference quantizer (what llama.cpp's
//! converter uses) byte for byte; `requantize` of the f32 fixture GGUF equals converting the HF
//! checkpoint directly; the type mix is applied.

use std::path::{Path, PathBuf};
use std::process::Command;

use outcore_convert::requantize::{requantize, RequantizeOptions};
use outcore_convert::{convert_hf, ConvertOptions, FileType, ModeChoice, Quiet};
use outcore_format::{GgmlType, GgufFile, LoadMode};

fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn opts(input: &Path, output: &Path, ftype: FileType, pure: bool) -> ConvertOptions {
    ConvertOptions {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        ftype,
        force: false,
        mode: ModeChoice::Auto,
        threads: 2,
        pure,
        name: None,
        no_tokenizer: true,
        tokenizer_pre: None,
    }
}

fn python_ok() -> bool {
    Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn legacy_quants_match_gguf_py_reference() {
    if !python_ok() {
        eprintln!("NOTICE: python3 with gguf/numpy not found; skipping the gguf-py comparison");
        return;
    }
    let fx = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    for ft in [
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
    ] {
        let out = dir.path().join(format!("{}.gguf", ft.name()));
        convert_hf(&opts(&fx, &out, ft, true), &Quiet).unwrap();
        let g = GgufFile::open(&out, LoadMode::Read).unwrap();
        assert_eq!(g.metadata.get_u32("general.file_type").unwrap(), ft.id());
        assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().ty, ft.base_type());
        // 172 columns fit no 32-block: F16, as llama.cpp's converter does.
        assert_eq!(g.tensor("blk.0.ffn_down.weight").unwrap().ty, GgmlType::F16);
        assert_eq!(g.tensor("blk.0.ffn_norm.weight").unwrap().ty, GgmlType::F32);
        let script = r#"
import sys, numpy as np, gguf
from gguf.quants import quantize
ours = gguf.GGUFReader(sys.argv[1]); ref = gguf.GGUFReader(sys.argv[2])
o = {t.name: t for t in ours.tensors}
n = 0
for t in ref.tensors:
    x = o[t.name]
    f = np.asarray(t.data, dtype=np.float32)
    if x.tensor_type == gguf.GGMLQuantizationType.F16:
        want = f.astype(np.float16).view(np.uint8).reshape(-1)
    elif x.tensor_type == gguf.GGMLQuantizationType.F32:
        want = f.view(np.uint8).reshape(-1)
    else:
        want = quantize(f, x.tensor_type).reshape(-1)
    got = np.asarray(x.data).view(np.uint8).reshape(-1)
    assert got.shape == want.shape, (t.name, got.shape, want.shape)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, (t.name, x.tensor_type.name, bad.size, bad[:8])
    n += 1
print("ok", n)
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
            "{}: {}{}",
            ft.name(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn requantize_equals_direct_conversion() {
    let fx = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct.gguf");
    convert_hf(&opts(&fx, &direct, FileType::Q8_0, false), &Quiet).unwrap();
    let req = dir.path().join("req.gguf");
    let ro = RequantizeOptions {
        input: fx.join("tiny-llama.f32.gguf"),
        output: req.clone(),
        ftype: FileType::Q8_0,
        force: false,
        mode: ModeChoice::LowMemory,
        threads: 2,
        pure: false,
    };
    requantize(&ro, &Quiet).unwrap();
    let (a, b) = (
        GgufFile::open(&direct, LoadMode::Read).unwrap(),
        GgufFile::open(&req, LoadMode::Read).unwrap(),
    );
    assert_eq!(b.metadata.get_u32("general.file_type").unwrap(), 7);
    assert_eq!(
        b.metadata.get_str("tokenizer.ggml.model").unwrap(),
        "gpt2",
        "metadata is copied"
    );
    assert_eq!(a.tensor_infos().len(), b.tensor_infos().len());
    for t in a.tensors() {
        let u = b.tensor(t.name).unwrap();
        assert_eq!((t.ty, t.shape), (u.ty, u.shape), "{}", t.name);
        assert!(t.bytes == u.bytes, "{}", t.name);
    }
    // Requantizing again to q8_0 copies the Q8_0 tensors byte for byte.
    let again = dir.path().join("again.gguf");
    requantize(
        &RequantizeOptions {
            input: req.clone(),
            output: again.clone(),
            ..ro.clone()
        },
        &Quiet,
    )
    .unwrap();
    let c = GgufFile::open(&again, LoadMode::Read).unwrap();
    for t in b.tensors() {
        assert!(c.tensor(t.name).unwrap().bytes == t.bytes, "{}", t.name);
    }
    // The output exists now: no overwrite without force.
    assert!(requantize(
        &RequantizeOptions {
            input: req,
            output: again,
            ..ro
        },
        &Quiet
    )
    .is_err());
}

#[test]
fn q4_k_m_mix_on_tiny_llama_falls_back_like_llama_cpp() {
    let fx = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q4km.gguf");
    convert_hf(&opts(&fx, &out, FileType::Q4_K_M, false), &Quiet).unwrap();
    let g = GgufFile::open(&out, LoadMode::Read).unwrap();
    assert_eq!(g.metadata.get_u32("general.file_type").unwrap(), 15);
    let ty = |n: &str| g.tensor(n).unwrap().ty;
    // 64 columns: Q4_K -> Q5_0; Q6_K (more-bits attn_v, output) -> Q8_0; 172 columns -> F16.
    assert_eq!(ty("blk.1.attn_q.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.2.attn_v.weight"), GgmlType::Q8_0); // use_more_bits(2, 3)
    assert_eq!(ty("output.weight"), GgmlType::Q8_0);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.2.ffn_down.weight"), GgmlType::F16);
    assert_eq!(ty("blk.2.attn_norm.weight"), GgmlType::F32);
}
