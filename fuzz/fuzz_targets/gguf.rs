//! Any bytes: the GGUF header parser returns Ok or an error, never panics or over-allocates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outcore_format::gguf::GgufHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = GgufHeader::parse(data) {
        // Everything it accepted lies within the buffer.
        for t in &h.tensors {
            let end = h.data_offset + t.offset + t.size;
            assert!(end <= data.len() as u64);
        }
    }
});
