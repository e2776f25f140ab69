//! Arbitrary chat messages through the demo model's template and the built-in ones: rendering
//! returns a string or an error, never panics. The input is either a JSON array of message
//! objects (for `render_json`: tool calls, multi-part content, odd types) or NUL-separated
//! role/content pairs.
#![no_main]

#[path = "../common/demo.rs"]
mod demo;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outcore_engine::chat::{ChatMessage, ChatTemplate, RenderOptions};

fn templates() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        let mut v =
            vec![ChatTemplate::from_metadata(&demo::demo_model().metadata).expect("demo template")];
        for name in ChatTemplate::builtin_names() {
            v.push(ChatTemplate::builtin(name).expect("builtin"));
        }
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ts = templates();
    let t = &ts[pick as usize % ts.len()];
    let opts = RenderOptions {
        add_generation_prompt: pick & 0x80 != 0,
        bos_token: "<s>".into(),
        eos_token: "</s>".into(),
        extra: Default::default(),
    };
    if let Ok(serde_json::Value::Array(msgs)) = serde_json::from_slice::<serde_json::Value>(rest) {
        let _ = t.render_json(&msgs, &opts);
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let parts: Vec<&str> = text.split('\0').collect();
    let msgs: Vec<ChatMessage> = parts
        .chunks(2)
        .map(|c| ChatMessage::new(c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    let _ = t.render(&msgs, &opts);
});
