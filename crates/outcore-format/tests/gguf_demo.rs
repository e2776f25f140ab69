//! The demo model parsed by our reader, compared with gguf-py (tests/data/demo_reference.json, made
//! by tests/gen_demo_reference.py), and written back out by our writer.
mod common;

use outcore_format::{Array, GgmlType, GgufFile, GgufWriter, LoadMode, Value};
use serde_json::Value as Json;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

fn fnv1a(data: &[u8]) -> u64 {
    data.iter()
        .fold(FNV_OFFSET, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME))
}

/// The GGUF encoding of an array's elements (what the generator hashes).
fn encode(a: &Array) -> Vec<u8> {
    let mut out = Vec::new();
    match a {
        Array::String(v) => v.iter().for_each(|s| {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }),
        Array::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U8(v) => out.extend_from_slice(v),
        other => panic!(
            "generator does not cover arrays of {}",
            other.elem_type().name()
        ),
    }
    out
}

fn reference() -> Json {
    let text = include_str!("data/demo_reference.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn demo_model_counts_and_views() {
    let path = common::demo_model();
    let f = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata.len(), 33);
    assert_eq!(f.tensor_infos().len(), 272);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset(), 1_785_664);
    let t = f.tensor("token_embd.weight").unwrap();
    assert_eq!(t.ty, GgmlType::Q8_0);
    assert_eq!(t.shape, &[576, 49152]);
    assert_eq!(t.bytes.len(), 30_081_024);
    assert_eq!(f.metadata.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        f.metadata
            .get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .len(),
        49152
    );
}

#[test]
fn demo_model_matches_gguf_py() {
    let r = reference();
    let path = common::demo_model();
    let f = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    assert_eq!(f.mapping().len() as u64, r["file_size"].as_u64().unwrap());
    assert_eq!(f.alignment(), r["alignment"].as_u64().unwrap());
    assert_eq!(f.data_offset(), r["data_offset"].as_u64().unwrap());

    let meta = r["metadata"].as_array().unwrap();
    assert_eq!(meta.len(), f.metadata.len());
    for (entry, (key, value)) in meta.iter().zip(f.metadata.iter()) {
        assert_eq!(entry["key"].as_str().unwrap(), key, "metadata order");
        assert_eq!(
            entry["type"].as_str().unwrap(),
            value.value_type().name(),
            "{key}"
        );
        match value {
            Value::Array(a) => {
                assert_eq!(
                    entry["elem_type"].as_str().unwrap(),
                    a.elem_type().name(),
                    "{key}"
                );
                assert_eq!(entry["len"].as_u64().unwrap(), a.len() as u64, "{key}");
                assert_eq!(
                    entry["fnv"].as_str().unwrap(),
                    format!("{:016x}", fnv1a(&encode(a))),
                    "{key}"
                );
            }
            Value::String(s) => assert_eq!(entry["value"].as_str().unwrap(), s, "{key}"),
            Value::Bool(b) => assert_eq!(entry["value"].as_bool().unwrap(), *b, "{key}"),
            Value::F32(x) => assert_eq!(entry["value"].as_f64().unwrap(), *x as f64, "{key}"),
            v => assert_eq!(
                entry["value"].as_i64().unwrap() as i128,
                v.as_int().unwrap(),
                "{key}"
            ),
        }
    }

    let tensors = r["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), f.tensor_infos().len());
    for (entry, (info, view)) in tensors.iter().zip(f.tensor_infos().iter().zip(f.tensors())) {
        let name = entry["name"].as_str().unwrap();
        assert_eq!(name, info.name);
        assert_eq!(view.name, info.name);
        assert_eq!(
            entry["type"].as_u64().unwrap() as u32,
            info.ty.id(),
            "{name}"
        );
        let shape: Vec<u64> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(shape, info.shape, "{name}");
        assert_eq!(view.shape, &shape[..], "{name}");
        assert_eq!(entry["n_bytes"].as_u64().unwrap(), info.size, "{name}");
        assert_eq!(
            entry["offset"].as_u64().unwrap(),
            f.data_offset() + info.offset,
            "{name}"
        );
        assert_eq!(
            entry["fnv_head"].as_str().unwrap(),
            format!("{:016x}", fnv1a(&view.bytes[..256])),
            "{name}"
        );
        let tail = &view.bytes[view.bytes.len() - 256..];
        assert_eq!(
            entry["fnv_tail"].as_str().unwrap(),
            format!("{:016x}", fnv1a(tail)),
            "{name}"
        );
    }
}

#[test]
fn load_modes_agree_on_demo_model() {
    let path = common::demo_model();
    let a = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    let b = GgufFile::open(&path, LoadMode::Read).unwrap();
    assert_eq!(a.tensor_infos(), b.tensor_infos());
    for (x, y) in a.tensors().zip(b.tensors()) {
        assert_eq!(x.bytes, y.bytes, "{}", x.name);
    }
}

/// Writes the demo model back out with our writer: the result is byte-identical to the original
/// (llama.cpp and our writer lay files out the same way), and gguf-py reads it with equal tensors.
#[test]
fn writer_round_trips_demo_model() {
    let path = common::demo_model();
    let src = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    let tensors = src
        .tensor_infos()
        .iter()
        .map(|t| (t.name.clone(), t.ty, t.shape.clone()))
        .collect();
    let mut w = GgufWriter::create(&out, false, &src.metadata, tensors, src.alignment()).unwrap();
    for t in src.tensors() {
        // Stream in odd-sized chunks to exercise the chunked path.
        w.begin_tensor(t.name).unwrap();
        for chunk in t.bytes.chunks(1_000_003) {
            w.write_chunk(chunk).unwrap();
        }
        w.end_tensor().unwrap();
    }
    w.finish().unwrap();

    let copy = GgufFile::open(&out, LoadMode::Mmap).unwrap();
    assert_eq!(copy.tensor_infos(), src.tensor_infos());
    for (a, b) in src.tensors().zip(copy.tensors()) {
        assert_eq!(a.bytes, b.bytes, "{}", a.name);
    }
    assert!(
        copy.mapping()[..] == src.mapping()[..],
        "writer output differs from the original bytes"
    );

    if common::have_python_module("gguf") {
        let script = r#"
import sys, numpy as np
from gguf import GGUFReader
a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
assert len(a.tensors) == len(b.tensors) == 272
for x, y in zip(a.tensors, b.tensors):
    assert x.name == y.name and x.tensor_type == y.tensor_type and list(x.shape) == list(y.shape), x.name
    assert np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)), x.name
ka = [k for k in a.fields if not k.startswith('GGUF.')]
kb = [k for k in b.fields if not k.startswith('GGUF.')]
assert ka == kb
for k in ka:
    fa, fb = a.fields[k], b.fields[k]
    assert fa.types == fb.types, k
    assert all(np.array_equal(fa.parts[i], fb.parts[j]) for i, j in zip(fa.data, fb.data)), k
print("ok")
"#;
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gguf-py check failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
