//! Any bytes as `model.safetensors.index.json` next to one small valid shard: the index loader
//! returns a model or an error (never a panic, never a path outside the directory).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outcore_format::SafetensorsModel;

/// A directory holding one shard `a.safetensors` with tensors `x` (F32 [2]) and `y` (F16 [2, 2]).
fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("temp dir");
        let header = br#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F16","shape":[2,2],"data_offsets":[8,16]}}"#;
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend_from_slice(&[0u8; 16]);
        std::fs::write(d.path().join("a.safetensors"), b).expect("write shard");
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let d = dir();
    std::fs::write(d.join("model.safetensors.index.json"), data).expect("write index");
    if let Ok(m) = SafetensorsModel::open(d) {
        for t in m.tensors() {
            assert!(t.bytes.len() <= 16);
        }
        for s in m.shards() {
            assert!(s.path().starts_with(d));
        }
    }
});
