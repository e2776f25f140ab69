//! Arbitrary request bodies through the server's JSON extractor and the request validation that
//! turns an OpenAI request into engine parameters: an `ApiError` or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outcore_server::extract::parse;
use outcore_server::openai::GenerationRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse::<GenerationRequest>(data) else {
        return;
    };
    let _ = req.params();
    let _ = req.prompt_input();
    let _ = req.chat_messages();
});
