//! Arbitrary bytes through the demo model's tokenizer: encode (lossy UTF-8, every flag combination)
//! never panics and yields in-range ids; decode of those ids and of arbitrary ids never panics.
#![no_main]

#[path = "../common/demo.rs"]
mod demo;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outcore_engine::tokenizer::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_metadata(&demo::demo_model().metadata).expect("tokenizer"))
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    let text = String::from_utf8_lossy(data);
    let n = tok.n_vocab() as u32;
    for (add, parse) in [(false, false), (true, true)] {
        let ids = tok.encode(&text, add, parse);
        assert!(ids.iter().all(|&i| i < n));
        let _ = tok.detokenize(&ids, true);
        let _ = tok.decode(&ids);
    }
    // The raw bytes as arbitrary token ids (in range or not).
    let ids: Vec<u32> = data
        .chunks(4)
        .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | b as u32))
        .collect();
    let _ = tok.detokenize(&ids, true);
    let _ = tok.decode(&ids);
    for &id in &ids {
        let _ = tok.token_to_piece(id, false);
    }
});
