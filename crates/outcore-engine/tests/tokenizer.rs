//! Tokenizer goldens against llama.cpp (`../shared/fixtures/smollm2-135m-q4_1`): every
//! tokenization, the chat prompts and the streamed greedy text, plus the HF `tokenizer.json` of
//! the same model.

use std::path::{Path, PathBuf};
use std::process::Command;

use outcore_engine::chat::{ChatMessage, ChatTemplate, RenderOptions};
use outcore_engine::tokenizer::{token_type, PreKind, StreamDecoder, Tokenizer, VocabType};
use outcore_format::{GgufFile, LoadMode, Metadata};
use serde_json::Value;

fn demo_model() -> PathBuf {
    let p = std::env::var("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.is_file(),
        "demo model {} missing: run scripts/fetch-demo-model.sh (or set OUTCORE_DEMO_MODEL)",
        p.display()
    );
    p
}

fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn jsonl(name: &str) -> Vec<Value> {
    let path = fixtures().join("smollm2-135m-q4_1").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn metadata() -> Metadata {
    GgufFile::open(demo_model(), LoadMode::Mmap)
        .unwrap()
        .metadata()
        .clone()
}

fn gguf_tokenizer() -> Tokenizer {
    Tokenizer::from_metadata(&metadata()).unwrap()
}

#[test]
fn demo_vocabulary() {
    let t = gguf_tokenizer();
    assert_eq!(t.vocab_type(), VocabType::Bpe);
    assert_eq!(t.pre_name(), Some("smollm"));
    assert_eq!(t.pre_kind(), Some(PreKind::Starcoder));
    assert_eq!(t.n_vocab(), 49152);
    assert_eq!(t.n_merges(), 48900);
    assert_eq!(
        (t.bos(), t.eos(), t.unk(), t.pad()),
        (Some(1), Some(2), Some(0), Some(2))
    );
    assert!(!t.add_bos() && !t.add_eos() && !t.add_space_prefix());
    assert!(t.is_eog(0) && t.is_eog(2) && !t.is_eog(1));
    assert_eq!(t.nl(), t.token_id("Ċ"));
    assert!(t.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn tokenize_jsonl_matches_llama_cpp() {
    let t = gguf_tokenizer();
    let rows = jsonl("tokenize.jsonl");
    assert_eq!(rows.len(), 136);
    let mut failures = Vec::new();
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let add_special = row["add_special"].as_bool().unwrap();
        let parse_special = row["parse_special"].as_bool().unwrap();
        let want = ids(&row["ids"]);
        let got = t.encode(text, add_special, parse_special);
        if got != want {
            failures.push(format!("{text:?} add_special={add_special} parse_special={parse_special}\n  want {want:?}\n  got  {got:?}"));
            continue;
        }
        // Detokenizing (special tokens rendered) gives the text back; so does the streaming decoder.
        assert_eq!(String::from_utf8(t.detokenize(&got, true)).unwrap(), text);
        let mut d = StreamDecoder::new().with_special(true);
        let mut streamed: String = got.iter().map(|&id| d.push(&t, id)).collect();
        streamed.push_str(&d.finish());
        assert_eq!(streamed, text);
        if !parse_special {
            assert_eq!(t.decode(&got), text);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn greedy_prompts_render_and_tokenize() {
    let md = metadata();
    let t = Tokenizer::from_metadata(&md).unwrap();
    let template = ChatTemplate::from_metadata(&md).unwrap();
    let rows = jsonl("greedy.jsonl");
    assert_eq!(rows.len(), 10);
    let mut chats = 0;
    for row in &rows {
        let prompt = row["prompt"].as_str().unwrap();
        if row["prompt_kind"] == "chat" {
            chats += 1;
            let msg = row["chat_user_message"].as_str().unwrap();
            let opts = RenderOptions::for_tokenizer(&t, true);
            let rendered = template
                .render(&[ChatMessage::new("user", msg)], &opts)
                .unwrap();
            assert_eq!(rendered, prompt);
        }
        assert_eq!(
            t.encode(prompt, true, true),
            ids(&row["prompt_ids"]),
            "{prompt:?}"
        );

        // `text` is the concatenation of token_to_piece(special = false) of the generated ids.
        let generated = ids(&row["greedy_ids"]);
        let pieces: Vec<u8> = generated
            .iter()
            .flat_map(|&id| t.token_to_piece(id, false).to_vec())
            .collect();
        let want = row["text"].as_str().unwrap();
        assert_eq!(String::from_utf8(pieces).unwrap(), want);
        let mut d = StreamDecoder::new();
        let mut streamed: String = generated.iter().map(|&id| d.push(&t, id)).collect();
        streamed.push_str(&d.finish());
        assert_eq!(streamed, want);
        assert_eq!(t.decode(&generated), want);
    }
    assert_eq!(chats, 2);
}

#[test]
fn long_text_roundtrips() {
    // The perplexity text of the fixtures (35 KB): llama.cpp made 14 chunks of 512 tokens of it.
    let t = gguf_tokenizer();
    let text = match std::fs::read_to_string("/usr/share/common-licenses/GPL-3") {
        Ok(s) => s,
        Err(_) => {
            eprintln!("notice: /usr/share/common-licenses/GPL-3 not found; using a synthetic text");
            "The quick brown fox jumps over 13 lazy dogs; it's 2024!\n\t".repeat(600)
        }
    };
    let ids = t.encode(&text, false, true);
    assert_eq!(t.decode(&ids), text);
    if text.len() == 35_149 {
        assert!(
            (14 * 512..15 * 512).contains(&ids.len()),
            "{} tokens",
            ids.len()
        );
    }
}

#[test]
fn gguf_fields_roundtrip() {
    let md = metadata();
    let t = Tokenizer::from_metadata(&md).unwrap();
    let f = t.to_gguf_fields();
    assert_eq!(f.model, "gpt2");
    assert_eq!(f.pre.as_deref(), Some("smollm"));
    assert_eq!(f.tokens.len(), 49152);
    assert_eq!(f.merges.len(), 48900);
    assert_eq!(
        (f.bos, f.eos, f.unk, f.pad),
        (Some(1), Some(2), Some(0), Some(2))
    );
    assert_eq!(f.add_bos, Some(false));
    let mut out = Metadata::new();
    f.insert_into(&mut out);
    for (key, value) in out.iter() {
        assert_eq!(Some(value), md.get(key), "{key}");
    }
    let t2 = Tokenizer::from_metadata(&out).unwrap();
    assert_eq!(
        t2.encode("Hello, world! 123", false, true),
        t.encode("Hello, world! 123", false, true)
    );
}

/// Makes the HF checkpoint of the demo model with the shared tool; `None` (with a notice) when
/// python3 or its packages are missing.
fn make_hf_dir() -> Option<PathBuf> {
    let tool = fixtures().join("../tools/make_hf_from_gguf.py");
    if !tool.is_file() {
        eprintln!(
            "notice: {} not found; skipping the HF tokenizer test",
            tool.display()
        );
        return None;
    }
    let probe = Command::new("python3")
        .args(["-c", "import gguf, numpy, safetensors"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!("notice: python3 with gguf, numpy and safetensors is not available; skipping the HF tokenizer test");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("outcore-tok-hf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("python3")
        .arg(&tool)
        .arg(demo_model())
        .arg(&dir)
        .args(["--dtype", "bf16"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_hf_from_gguf.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

#[test]
fn hf_tokenizer_json_matches_gguf() {
    let gguf = gguf_tokenizer();
    let Some(dir) = make_hf_dir() else { return };
    let config = dir.join("tokenizer_config.json");
    // The tool writes merges as "a b" strings; a copy with ["a", "b"] pairs checks the other form.
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    for m in json["model"]["merges"].as_array_mut().unwrap() {
        let (a, b) = m.as_str().unwrap().split_once(' ').unwrap();
        *m = serde_json::json!([a, b]);
    }
    std::fs::write(
        dir.join("tokenizer.pairs.json"),
        serde_json::to_string(&json).unwrap(),
    )
    .unwrap();
    let loaded: Vec<Tokenizer> = ["tokenizer.json", "tokenizer.pairs.json"]
        .iter()
        .map(|f| Tokenizer::from_hf_json(dir.join(f), Some(&config)).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let rows = jsonl("tokenize.jsonl");
    for hf in &loaded {
        assert_eq!(hf.pre_name(), Some("smollm"));
        assert_eq!(hf.n_vocab(), gguf.n_vocab());
        assert_eq!(
            (hf.bos(), hf.eos(), hf.unk(), hf.pad()),
            (gguf.bos(), gguf.eos(), gguf.unk(), gguf.pad())
        );
        assert_eq!(hf.add_bos(), gguf.add_bos());
        assert_eq!(hf.chat_template(), gguf.chat_template());
        for row in &rows {
            let text = row["text"].as_str().unwrap();
            let (a, p) = (
                row["add_special"].as_bool().unwrap(),
                row["parse_special"].as_bool().unwrap(),
            );
            assert_eq!(hf.encode(text, a, p), ids(&row["ids"]), "{text:?}");
        }
        // What a converter would write equals the original GGUF's tokenizer metadata.
        let (fh, fg) = (hf.to_gguf_fields(), gguf.to_gguf_fields());
        assert_eq!(fh.tokens, fg.tokens);
        assert_eq!(fh.token_types, fg.token_types);
        assert_eq!(fh.merges, fg.merges);
        assert_eq!(fh.pre, fg.pre);
        assert_eq!(
            (fh.bos, fh.eos, fh.unk, fh.pad),
            (fg.bos, fg.eos, fg.unk, fg.pad)
        );
        assert_eq!(fh.add_bos, fg.add_bos);
        assert_eq!(fh.chat_template, fg.chat_template);
        assert_eq!(
            fh.token_types
                .iter()
                .filter(|&&t| t == token_type::CONTROL)
                .count(),
            17
        );
    }
}

/// Ids and detokenized bytes produced by llama.cpp itself (`gen_tokenizer_reference.py`).
fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn spm_matches_llama_cpp() {
    use outcore_format::{Array, Value as V};
    let r = reference();
    let spm = &r["spm"];
    let strings = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let mut md = Metadata::new();
    md.insert("tokenizer.ggml.model", V::String("llama".into()));
    md.insert(
        "tokenizer.ggml.tokens",
        V::Array(Array::String(strings(&spm["tokens"]))),
    );
    let scores = spm["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    md.insert("tokenizer.ggml.scores", V::Array(Array::F32(scores)));
    let types = spm["token_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect();
    md.insert("tokenizer.ggml.token_type", V::Array(Array::I32(types)));
    md.insert("tokenizer.ggml.bos_token_id", V::U32(1));
    md.insert("tokenizer.ggml.eos_token_id", V::U32(2));
    md.insert("tokenizer.ggml.unknown_token_id", V::U32(0));
    let t = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(t.vocab_type(), VocabType::Spm);
    let mut failures = Vec::new();
    let rows = spm["rows"].as_array().unwrap();
    for row in rows {
        let text = row["text"].as_str().unwrap();
        let (a, p) = (
            row["add_special"].as_bool().unwrap(),
            row["parse_special"].as_bool().unwrap(),
        );
        let got = t.encode(text, a, p);
        if got != ids(&row["ids"]) {
            failures.push(format!(
                "{text:?} add_special={a} parse_special={p}\n  want {:?}\n  got  {got:?}",
                ids(&row["ids"])
            ));
            continue;
        }
        assert_eq!(
            t.detokenize(&got, false),
            unhex(&row["detok_hex"]),
            "{text:?}"
        );
        assert_eq!(
            t.detokenize(&got, true),
            unhex(&row["detok_special_hex"]),
            "{text:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn bpe_pre_tokenizers_match_llama_cpp() {
    use outcore_format::Value as V;
    let r = reference();
    let mut md = metadata();
    let mut failures = Vec::new();
    let mut n = 0;
    for (pre, rows) in r["bpe"].as_object().unwrap() {
        md.insert("tokenizer.ggml.pre", V::String(pre.clone()));
        let t = Tokenizer::from_metadata(&md).unwrap_or_else(|e| panic!("{pre}: {e}"));
        for row in rows.as_array().unwrap() {
            n += 1;
            let text = row["text"].as_str().unwrap();
            let got = t.encode(text, false, true);
            if got != ids(&row["ids"]) {
                failures.push(format!(
                    "[{pre}] {text:?}\n  want {:?}\n  got  {got:?}",
                    ids(&row["ids"])
                ));
                continue;
            }
            assert_eq!(
                t.detokenize(&got, false),
                unhex(&row["detok_hex"]),
                "[{pre}] {text:?}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
