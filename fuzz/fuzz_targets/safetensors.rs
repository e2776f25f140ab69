//! Any bytes: the safetensors header parser returns Ok or an error, never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use outcore_format::safetensors::parse_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_header(Path::new("fuzz.safetensors"), data) {
        for t in &h.tensors {
            assert!(t.range.end <= data.len());
        }
    }
});
