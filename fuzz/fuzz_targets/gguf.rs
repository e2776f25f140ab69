//! Any bytes as a whole GGUF file: the header parser returns Ok or an error, never panics or
//! over-allocates; whatever it accepts lies within the buffer. Accepted metadata then goes through
//! everything the engine reads from it (config, tokenizer, chat template), which must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outcore_engine::chat::ChatTemplate;
use outcore_engine::tokenizer::Tokenizer;
use outcore_engine::ModelConfig;
use outcore_format::gguf::GgufHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = GgufHeader::parse(data) else {
        return;
    };
    for t in &h.tensors {
        let end = h.data_offset + t.offset + t.size;
        assert!(end <= data.len() as u64);
    }
    let _ = ModelConfig::from_gguf(&h.metadata, None);
    if let Ok(tok) = Tokenizer::from_metadata(&h.metadata) {
        let ids = tok.encode("Hello world <|im_start|>", true, true);
        let _ = tok.decode(&ids);
    }
    let _ = ChatTemplate::from_metadata(&h.metadata);
});
