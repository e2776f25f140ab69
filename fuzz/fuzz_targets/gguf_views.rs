//! Any bytes as a GGUF file behind a `Mapping` (read mode): `GgufFile` hands out tensor views
//! whose byte lengths match their type and shape, all inside the mapping.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outcore_format::{GgufFile, Mapping};

/// `Mapping::from_bytes` names (and stats) a real file; one empty temp file serves every input.
fn anchor() -> &'static std::path::Path {
    static FILE: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"fuzz").expect("write");
        f
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(mapping) = Mapping::from_bytes(anchor(), data) else {
        return;
    };
    let Ok(file) = GgufFile::from_mapping(mapping) else {
        return;
    };
    for info in file.tensor_infos() {
        let view = file.tensor(&info.name).expect("listed tensor has a view");
        assert_eq!(view.bytes.len() as u64, info.size);
        let n: u64 = view.shape.iter().product();
        assert_eq!(n, info.n_elements());
        let r = file.tensor_range(&info.name).expect("range");
        assert!(r.end <= data.len());
    }
    let _ = file.tensors().count();
});
