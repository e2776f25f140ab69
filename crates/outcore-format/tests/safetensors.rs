//! safetensors: the tiny-llama fixtures (sharded f32, single-file bf16), checked against the
//! index, against the GGUF made from the same weights, against the Python `safetensors` package,
//! and hostile headers and indexes, each with its specific error.
mod common;

use std::path::{Path, PathBuf};

use outcore_format::safetensors::SafetensorsModel;
use outcore_format::{FormatError, GgmlType, GgufFile, LoadMode};

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn fixture(name: &str) -> PathBuf {
    let p = common::fixtures().join(name);
    assert!(
        p.exists(),
        "fixture {} missing (set OUTCORE_FIXTURES)",
        p.display()
    );
    p
}

#[test]
fn sharded_tiny_llama_matches_index_and_gguf() {
    let dir = fixture("tiny-llama");
    let m = SafetensorsModel::open(&dir).unwrap();
    assert_eq!(m.shards().len(), 8);
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(m.len(), map.len());
    for (name, shard) in map {
        let info = m.info(name).unwrap();
        assert_eq!(
            m.shards()[info.shard]
                .path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            shard.as_str().unwrap()
        );
        let t = m.get(name).unwrap();
        assert_eq!(t.ty, GgmlType::F32);
        assert_eq!(t.bytes.len() as u64, t.n_elements() * 4);
    }
    assert_eq!(
        m.total_bytes(),
        index["metadata"]["total_size"].as_u64().unwrap()
    );

    // The GGUF of the same weights: non-q/k tensors are bit-identical, with ggml-order shapes.
    let g = GgufFile::open(dir.join("tiny-llama.f32.gguf"), LoadMode::Mmap).unwrap();
    let pairs = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
        (
            "model.layers.0.mlp.down_proj.weight",
            "blk.0.ffn_down.weight",
        ),
        (
            "model.layers.1.mlp.gate_proj.weight",
            "blk.1.ffn_gate.weight",
        ),
        (
            "model.layers.0.self_attn.v_proj.weight",
            "blk.0.attn_v.weight",
        ),
        (
            "model.layers.0.input_layernorm.weight",
            "blk.0.attn_norm.weight",
        ),
    ];
    for (hf, gg) in pairs {
        let a = m.tensor(hf).unwrap();
        let b = g.tensor(gg).unwrap();
        assert_eq!(a.shape, b.shape, "{hf}");
        assert_eq!(a.bytes, b.bytes, "{hf}");
    }
    // Residency queries work on each shard's mapping.
    for s in m.shards() {
        s.mapping().resident_bytes(0..s.mapping().len()).unwrap();
    }
}

#[test]
fn single_file_bf16_and_file_path() {
    let dir = fixture("tiny-llama-bf16");
    let a = SafetensorsModel::open(&dir).unwrap();
    let b = SafetensorsModel::open_with(dir.join("model.safetensors"), LoadMode::Read).unwrap();
    assert_eq!(a.shards().len(), 1);
    assert_eq!(a.infos(), b.infos());
    let t = a.get("model.embed_tokens.weight").unwrap();
    assert_eq!(t.ty, GgmlType::BF16);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let (hidden, vocab) = (
        cfg["hidden_size"].as_u64().unwrap(),
        cfg["vocab_size"].as_u64().unwrap(),
    );
    assert_eq!(t.shape, &[hidden, vocab], "ggml order: row length first");
    for (x, y) in a.tensors().zip(b.tensors()) {
        assert_eq!(x.bytes, y.bytes);
    }
}

/// Shapes, dtypes and bytes agree with the Python `safetensors` package (skipped without it).
#[test]
fn agrees_with_python_safetensors() {
    if !common::have_python_module("safetensors") {
        return;
    }
    for name in ["tiny-llama", "tiny-llama-bf16", "tiny-llama-f16"] {
        let dir = fixture(name);
        let script = r#"
import sys, glob, json
from safetensors import safe_open
def fnv(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % h
out = {}
for f in sorted(glob.glob(sys.argv[1] + '/*.safetensors')):
    with safe_open(f, framework='numpy') as st:
        for k in st.keys():
            sl = st.get_slice(k)
            dt = sl.get_dtype()
            h = fnv(st.get_tensor(k).tobytes()) if dt in ('F32', 'F16') else None
            out[k] = [dt, list(sl.get_shape()), h]
print(json.dumps(out))
"#;
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let m = SafetensorsModel::open(&dir).unwrap();
        let want = want.as_object().unwrap();
        assert_eq!(want.len(), m.len());
        for (k, v) in want {
            let info = m.info(k).unwrap();
            assert_eq!(v[0].as_str().unwrap(), info.dtype, "{k}");
            let mut shape: Vec<u64> = v[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            shape.reverse();
            assert_eq!(shape, info.shape, "{k}");
            let t = m.get(k).unwrap();
            assert_eq!(t.bytes.len(), info.range.len());
            if let Some(h) = v[2].as_str() {
                assert_eq!(h, format!("{:016x}", fnv1a(t.bytes)), "{k}");
            }
        }
    }
}

// ---- hostile inputs ----

/// Writes a safetensors file from a raw header string and data bytes.
fn write_st(path: &Path, header: &str, data: &[u8]) {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

fn open_err(path: &Path) -> FormatError {
    SafetensorsModel::open(path).expect_err("hostile file must be rejected")
}

#[test]
fn hostile_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.safetensors");

    // 100 MB+ header length in a tiny file.
    let mut raw = 200_000_000u64.to_le_bytes().to_vec();
    raw.extend_from_slice(b"{}");
    std::fs::write(&p, &raw).unwrap();
    assert!(matches!(
        open_err(&p),
        FormatError::SafetensorsHeaderTooLarge {
            len: 200_000_000,
            ..
        }
    ));

    // Header length past the end of the file.
    let mut raw = 1000u64.to_le_bytes().to_vec();
    raw.extend_from_slice(b"{}");
    std::fs::write(&p, &raw).unwrap();
    assert!(matches!(
        open_err(&p),
        FormatError::SafetensorsHeaderTooLarge { len: 1000, .. }
    ));

    // Shorter than the length prefix.
    std::fs::write(&p, [1u8, 2, 3]).unwrap();
    assert!(matches!(open_err(&p), FormatError::Safetensors { .. }));

    // Offsets past the end of the file.
    write_st(
        &p,
        r#"{"w":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}}"#,
        &[0; 16],
    );
    assert!(matches!(open_err(&p), FormatError::Safetensors { .. }));

    // Lying JSON: shape says 4 floats, offsets say 2.
    write_st(
        &p,
        r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert!(matches!(open_err(&p), FormatError::Safetensors { .. }));

    // Overlapping tensors.
    write_st(
        &p,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
    );
    assert!(matches!(open_err(&p), FormatError::Safetensors { .. }));

    // Not JSON at all.
    write_st(&p, "this is not json", &[]);
    let e = open_err(&p);
    assert!(matches!(e, FormatError::Safetensors { .. }));
    assert!(e.to_string().contains("x.safetensors"), "{e}");

    // Unsupported dtype: opens, but access names the dtype.
    write_st(
        &p,
        r#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
        &[0; 16],
    );
    let m = SafetensorsModel::open(&p).unwrap();
    assert!(m.tensor("ids").is_none());
    assert!(matches!(
        m.get("ids"),
        Err(FormatError::UnsupportedDtype { .. })
    ));
    assert!(matches!(
        m.get("nope"),
        Err(FormatError::TensorNotFound { .. })
    ));

    // Empty file and empty directory.
    std::fs::write(&p, []).unwrap();
    assert!(matches!(open_err(&p), FormatError::EmptyFile { .. }));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        open_err(&empty),
        FormatError::NoSafetensors { .. }
    ));
}

#[test]
fn hostile_indexes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_st(
        &d.join("s1.safetensors"),
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    write_st(
        &d.join("s2.safetensors"),
        r#"{"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    let index = d.join("model.safetensors.index.json");

    std::fs::write(
        &index,
        r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#,
    )
    .unwrap();
    let m = SafetensorsModel::open(d).unwrap();
    assert_eq!(m.get("b").unwrap().ty, GgmlType::F16);
    assert_eq!(m.total_bytes(), 12);

    std::fs::write(
        &index,
        r#"{"weight_map":{"a":"s1.safetensors","b":"s3.safetensors"}}"#,
    )
    .unwrap();
    assert!(matches!(open_err(d), FormatError::MissingShard { .. }));

    std::fs::write(
        &index,
        r#"{"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}}"#,
    )
    .unwrap();
    assert!(matches!(
        open_err(d),
        FormatError::TensorMissingFromShard { .. }
    ));

    std::fs::write(
        &index,
        r#"{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}"#,
    )
    .unwrap();
    assert!(matches!(
        open_err(d),
        FormatError::TensorMissingFromShard { .. }
    ));

    std::fs::write(&index, r#"{"weight_map":{"a":"../s1.safetensors"}}"#).unwrap();
    assert!(matches!(open_err(d), FormatError::BadIndex { .. }));

    std::fs::write(&index, r#"{"weight_map": 3}"#).unwrap();
    assert!(matches!(open_err(d), FormatError::BadIndex { .. }));

    write_st(
        &d.join("s2.safetensors"),
        r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    std::fs::write(
        &index,
        r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#,
    )
    .unwrap();
    assert!(matches!(
        open_err(d),
        FormatError::DuplicateShardTensor { .. }
    ));
}
