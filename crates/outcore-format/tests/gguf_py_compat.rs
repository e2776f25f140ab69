//! Files from our writer, read by gguf-py's `GGUFReader`: every metadata value type (nested
//! arrays included), several tensor types, a non-default alignment. Skipped with a notice when
//! python3 or gguf is missing.
mod common;

use outcore_format::{Array, GgmlType, GgufWriter, Metadata, Value};

fn metadata() -> Metadata {
    let mut m = Metadata::new();
    m.insert("general.architecture", Value::String("llama".into()));
    m.insert("t.u8", Value::U8(200));
    m.insert("t.i8", Value::I8(-100));
    m.insert("t.u16", Value::U16(60000));
    m.insert("t.i16", Value::I16(-30000));
    m.insert("t.u32", Value::U32(4_000_000_000));
    m.insert("t.i32", Value::I32(-2_000_000_000));
    m.insert("t.f32", Value::F32(0.1));
    m.insert("t.bool", Value::Bool(true));
    m.insert("t.string", Value::String("héllo\nworld".into()));
    m.insert("t.u64", Value::U64(u64::MAX));
    m.insert("t.i64", Value::I64(i64::MIN));
    m.insert("t.f64", Value::F64(-1e300));
    m.insert(
        "t.arr_str",
        Value::Array(Array::String(vec!["a".into(), "ü".into(), "".into()])),
    );
    m.insert("t.arr_i32", Value::Array(Array::I32(vec![-1, 0, 1])));
    m.insert("t.arr_f32", Value::Array(Array::F32(vec![0.5, -2.0])));
    m.insert(
        "t.arr_bool",
        Value::Array(Array::Bool(vec![true, false, true])),
    );
    m.insert("t.arr_u8", Value::Array(Array::U8(vec![])));
    m.insert(
        "t.nested",
        Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::U32(vec![3]),
        ])),
    );
    m
}

#[test]
fn gguf_py_reads_our_writer_output() {
    if !common::have_python_module("gguf") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.gguf");
    let tensors = vec![
        ("f32".to_string(), GgmlType::F32, vec![3, 2]),
        ("f16".to_string(), GgmlType::F16, vec![5]),
        ("bf16".to_string(), GgmlType::BF16, vec![4, 1, 2]),
        ("q8_0".to_string(), GgmlType::Q8_0, vec![64, 2]),
        ("q4_k".to_string(), GgmlType::Q4_K, vec![256]),
    ];
    let mut w = GgufWriter::create(&path, false, &metadata(), tensors.clone(), 64).unwrap();
    for (i, t) in w.tensors().to_vec().iter().enumerate() {
        let bytes: Vec<u8> = (0..t.size)
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        w.write_tensor_data(&t.name, &bytes).unwrap();
    }
    w.finish().unwrap();

    let script = r#"
import sys, json, numpy as np
from gguf import GGUFReader, GGUFValueType
r = GGUFReader(sys.argv[1])
out = {"alignment": int(r.alignment), "fields": {}, "tensors": []}
for k, f in r.fields.items():
    if k.startswith("GGUF."):
        continue
    t = f.types[0]
    if t == GGUFValueType.ARRAY and len(f.data) == 0:
        v = []
    elif t == GGUFValueType.STRING:
        v = bytes(f.parts[f.data[0]]).decode()
    elif t == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.STRING:
        v = [bytes(f.parts[i]).decode() for i in f.data]
    elif t == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.ARRAY:
        v = ["nested"] + [f.parts[i].tolist()[0] for i in f.data]
    elif t == GGUFValueType.ARRAY:
        v = [f.parts[i].tolist()[0] for i in f.data]
    else:
        v = f.parts[f.data[0]].tolist()[0]
    out["fields"][k] = [t.name, v]
for t in r.tensors:
    raw = np.asarray(r.data[t.data_offset:t.data_offset + t.n_bytes]).tobytes()
    out["tensors"].append([t.name, int(t.tensor_type), [int(x) for x in t.shape], int(t.n_bytes), int(t.data_offset), list(raw[:8])])
print(json.dumps(out))
"#;
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gguf-py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["alignment"], 64);
    let f = &j["fields"];
    assert_eq!(f["general.alignment"][1], 64);
    assert_eq!(f["t.u8"][1], 200);
    assert_eq!(f["t.i8"][1], -100);
    assert_eq!(f["t.u16"][1], 60000);
    assert_eq!(f["t.i16"][1], -30000);
    assert_eq!(f["t.u32"][1], 4_000_000_000u64);
    assert_eq!(f["t.i32"][1], -2_000_000_000);
    assert_eq!(f["t.f32"][1].as_f64().unwrap() as f32, 0.1f32);
    assert_eq!(f["t.bool"][1], true);
    assert_eq!(f["t.string"][1], "héllo\nworld");
    assert_eq!(f["t.u64"][1], u64::MAX);
    assert_eq!(f["t.i64"][1], i64::MIN);
    assert_eq!(f["t.f64"][1], -1e300);
    assert_eq!(f["t.arr_str"][1], serde_json::json!(["a", "ü", ""]));
    assert_eq!(f["t.arr_i32"][1], serde_json::json!([-1, 0, 1]));
    assert_eq!(f["t.arr_f32"][1], serde_json::json!([0.5, -2.0]));
    assert_eq!(f["t.arr_bool"][1], serde_json::json!([true, false, true]));
    assert_eq!(f["t.arr_u8"][1], serde_json::json!([]));
    // gguf-py flattens nested arrays to their leaves.
    assert_eq!(f["t.nested"][1], serde_json::json!(["nested", 1, 2, 3]));
    let ours = outcore_format::GgufFile::open(&path, outcore_format::LoadMode::Mmap).unwrap();
    let ts = j["tensors"].as_array().unwrap();
    assert_eq!(ts.len(), tensors.len());
    for (py, (name, ty, shape)) in ts.iter().zip(&tensors) {
        assert_eq!(py[0], name.as_str());
        assert_eq!(py[1], ty.id());
        assert_eq!(py[2], serde_json::json!(shape));
        let view = ours.tensor(name).unwrap();
        assert_eq!(py[3], view.bytes.len());
        assert_eq!(
            py[4].as_u64().unwrap(),
            ours.tensor_range(name).unwrap().start as u64
        );
        assert_eq!(py[5], serde_json::json!(view.bytes[..8]));
    }
}
