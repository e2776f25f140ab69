//! Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) for byte-level BPE models, mapped
//! onto the same vocabulary llama.cpp's `convert_hf_to_gguf.py` would write.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::pretokenize::{HF_LLAMA3, HF_QWEN2};
use super::{token_type, RawVocab, SpecialTokens, Tokenizer, TokenizerError, VocabType};

fn read_json(path: &Path) -> Result<Json, TokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Token strings that convert_hf_to_gguf.py marks as control even when HF does not call them special.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn field(&self, field: &str, expected: &'static str) -> TokenizerError {
        TokenizerError::HfField {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            expected,
        }
    }

    fn unsupported(&self, what: impl Into<String>) -> TokenizerError {
        TokenizerError::HfUnsupported {
            path: self.path.to_path_buf(),
            what: what.into(),
        }
    }
}

fn type_of(v: &Json) -> &str {
    v.get("type").and_then(Json::as_str).unwrap_or("")
}

fn flag(v: &Json, key: &str, default: bool) -> bool {
    v.get(key).and_then(Json::as_bool).unwrap_or(default)
}

/// Maps the `pre_tokenizer` of a byte-level BPE `tokenizer.json` to a `tokenizer.ggml.pre` name.
fn pre_name(
    ctx: &Ctx<'_>,
    pre: &Json,
    clean_up_spaces: Option<bool>,
) -> Result<&'static str, TokenizerError> {
    let byte_level = |v: &Json, use_regex: bool| {
        type_of(v) == "ByteLevel"
            && !flag(v, "add_prefix_space", false)
            && flag(v, "use_regex", true) == use_regex
    };
    if byte_level(pre, true) {
        return Ok("gpt-2");
    }
    if type_of(pre) == "Sequence" {
        let steps = pre
            .get("pretokenizers")
            .and_then(Json::as_array)
            .ok_or_else(|| ctx.field("pre_tokenizer.pretokenizers", "an array"))?;
        if let [digits, bl] = steps.as_slice() {
            if type_of(digits) == "Digits"
                && flag(digits, "individual_digits", false)
                && byte_level(bl, true)
            {
                // The starcoder family shares this splitting; smollm and command-r keep spaces on decode.
                return Ok(if clean_up_spaces == Some(true) {
                    "starcoder"
                } else {
                    "smollm"
                });
            }
        }
        if let [split, bl] = steps.as_slice() {
            let pattern = split
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Json::as_str);
            let isolated = split.get("behavior").and_then(Json::as_str) == Some("Isolated")
                && !flag(split, "invert", false);
            if type_of(split) == "Split" && isolated && byte_level(bl, false) {
                match pattern {
                    Some(HF_LLAMA3) => return Ok("llama-bpe"),
                    Some(HF_QWEN2) => return Ok("qwen2"),
                    _ => {}
                }
            }
        }
    }
    Err(ctx.unsupported(format!("pre_tokenizer {pre}")))
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_content(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

impl Tokenizer {
    /// Loads a byte-level BPE `tokenizer.json`, with special tokens, `add_bos_token` and the chat
    /// template from `tokenizer_config.json` when given. Token types follow
    /// `convert_hf_to_gguf.py`: special added tokens (and ones that look special) are control
    /// tokens, other added tokens user-defined, gaps in the ids `[PAD{i}]` unused tokens.
    pub fn from_hf_json(
        tokenizer_json: impl AsRef<Path>,
        tokenizer_config_json: Option<&Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        let path = tokenizer_json.as_ref();
        let ctx = Ctx { path };
        let root = read_json(path)?;
        let config = match tokenizer_config_json {
            Some(p) => Some((p.to_path_buf(), read_json(p)?)),
            None => None,
        };
        let cfg = |key: &str| config.as_ref().and_then(|(_, c)| c.get(key));

        let model = root
            .get("model")
            .ok_or_else(|| ctx.field("model", "an object"))?;
        if type_of(model) != "BPE" {
            return Err(ctx.unsupported(format!("model type {:?} (only BPE)", type_of(model))));
        }
        if flag(model, "byte_fallback", false) {
            return Err(ctx.unsupported("BPE with byte_fallback (SentencePiece-style vocabulary)"));
        }
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| ctx.field("model.vocab", "an object"))?;
        let mut by_id: HashMap<u32, String> = HashMap::with_capacity(vocab.len());
        for (text, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| {
                    ctx.field(format!("model.vocab[{text:?}]").as_str(), "a token id")
                })?;
            by_id.insert(id, text.clone());
        }
        let mut added: HashMap<u32, bool> = HashMap::new();
        if let Some(list) = root.get("added_tokens").and_then(Json::as_array) {
            for (i, t) in list.iter().enumerate() {
                let id = t
                    .get("id")
                    .and_then(Json::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                let content = t.get("content").and_then(Json::as_str);
                let (Some(id), Some(content)) = (id, content) else {
                    return Err(ctx.field(
                        &format!("added_tokens[{i}]"),
                        "an object with id and content",
                    ));
                };
                by_id.insert(id, content.to_string());
                added.insert(id, flag(t, "special", false));
            }
        }
        let n = by_id.keys().max().map_or(0, |&m| m as usize + 1);
        let mut tokens = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for i in 0..n as u32 {
            match (by_id.remove(&i), added.get(&i)) {
                (None, _) => {
                    tokens.push(format!("[PAD{i}]"));
                    types.push(token_type::UNUSED);
                }
                (Some(t), Some(&special)) if special || looks_special(&t) => {
                    tokens.push(t);
                    types.push(token_type::CONTROL);
                }
                (Some(t), Some(_)) => {
                    tokens.push(t.replace('\u{2581}', " "));
                    types.push(token_type::USER_DEFINED);
                }
                (Some(t), None) => {
                    tokens.push(t);
                    types.push(token_type::NORMAL);
                }
            }
        }

        let merges_json = model
            .get("merges")
            .and_then(Json::as_array)
            .ok_or_else(|| ctx.field("model.merges", "an array"))?;
        let mut merges = Vec::with_capacity(merges_json.len());
        for (i, m) in merges_json.iter().enumerate() {
            let line = match m {
                Json::String(s) => s.clone(),
                Json::Array(pair) => match pair.as_slice() {
                    [Json::String(a), Json::String(b)] => format!("{a} {b}"),
                    _ => return Err(ctx.field(&format!("model.merges[{i}]"), "a pair of strings")),
                },
                _ => {
                    return Err(ctx.field(
                        &format!("model.merges[{i}]"),
                        "a string or a pair of strings",
                    ))
                }
            };
            merges.push(line);
        }

        let clean_up = cfg("clean_up_tokenization_spaces").and_then(Json::as_bool);
        let pre = root.get("pre_tokenizer").unwrap_or(&Json::Null);
        let pre = pre_name(&ctx, pre, clean_up)?;

        let mut special = SpecialTokens::default();
        if let Some((cfg_path, _)) = &config {
            let index: HashMap<&str, u32> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), i as u32))
                .collect();
            for (field, slot) in [
                ("bos_token", &mut special.bos),
                ("eos_token", &mut special.eos),
                ("unk_token", &mut special.unk),
                ("sep_token", &mut special.sep),
                ("pad_token", &mut special.pad),
            ] {
                if let Some(text) = cfg(field).and_then(token_content) {
                    let id =
                        index
                            .get(text)
                            .copied()
                            .ok_or_else(|| TokenizerError::HfUnknownToken {
                                path: cfg_path.clone(),
                                field,
                                token: text.to_string(),
                            })?;
                    *slot = Some(id);
                }
            }
        }
        let chat_template = match cfg("chat_template") {
            Some(Json::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Json::as_str))
                .map(str::to_string),
            _ => None,
        };
        let raw = RawVocab {
            model: Some(VocabType::Bpe),
            pre: Some(pre.to_string()),
            tokens,
            scores: None,
            token_types: Some(types),
            merges,
            special,
            add_bos: cfg("add_bos_token").and_then(Json::as_bool),
            add_eos: cfg("add_eos_token").and_then(Json::as_bool),
            add_space_prefix: None,
            chat_template,
            general_name: None,
        };
        Tokenizer::build(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, json: &Json) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("outcore-hf-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string(json).unwrap()).unwrap();
        p
    }

    fn tokenizer_json(pre: Json) -> Json {
        serde_json::json!({
            "model": {
                "type": "BPE",
                "vocab": {"h": 0, "i": 1, "hi": 2, "Ġ": 3, "Ġhi": 4, "!": 5},
                "merges": [["h", "i"], "Ġ hi"],
            },
            "added_tokens": [
                {"id": 6, "content": "<|end|>", "special": true},
                {"id": 7, "content": "<x>", "special": false},
                {"id": 9, "content": "<|im_start|>", "special": false},
            ],
            "pre_tokenizer": pre,
        })
    }

    #[test]
    fn loads_vocab_merges_and_added_tokens() {
        let tj = write(
            "a.json",
            &tokenizer_json(serde_json::json!({"type": "ByteLevel", "add_prefix_space": false})),
        );
        let cfg = write(
            "a_config.json",
            &serde_json::json!({"bos_token": {"content": "<|end|>"}, "eos_token": "<|end|>", "add_bos_token": true,
                                "chat_template": [{"name": "default", "template": "T"}]}),
        );
        let t = Tokenizer::from_hf_json(&tj, Some(&cfg)).unwrap();
        assert_eq!(t.pre_name(), Some("gpt-2"));
        assert_eq!(t.n_vocab(), 10);
        assert_eq!(t.token_text(8), Some("[PAD8]"));
        let f = t.to_gguf_fields();
        assert_eq!(f.merges, ["h i", "Ġ hi"]);
        let want = [1, 1, 1, 1, 1, 1, 3, 4, 5, 3].map(i32::from);
        assert_eq!(f.token_types, want);
        assert_eq!((f.bos, f.eos, f.add_bos), (Some(6), Some(6), Some(true)));
        assert_eq!(t.chat_template(), Some("T"));
        assert_eq!(t.encode("hi hi<|end|><x>", true, true), [6, 2, 4, 6, 7]);
        // As plain text "<|end|>" has no pieces in this vocabulary: llama.cpp drops them.
        assert_eq!(t.encode("hi<|end|>!", false, false), [2, 5]);
    }

    #[test]
    fn errors_name_file_and_field() {
        let tj = write(
            "b.json",
            &tokenizer_json(serde_json::json!({"type": "Whitespace"})),
        );
        let e = Tokenizer::from_hf_json(&tj, None).unwrap_err().to_string();
        assert!(e.contains("b.json") && e.contains("pre_tokenizer"), "{e}");

        let tj = write(
            "c.json",
            &tokenizer_json(serde_json::json!({"type": "ByteLevel"})),
        );
        let cfg = write("c_config.json", &serde_json::json!({"bos_token": "<nope>"}));
        let e = Tokenizer::from_hf_json(&tj, Some(&cfg))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c_config.json") && e.contains("<nope>") && e.contains("bos_token"),
            "{e}"
        );

        let e = Tokenizer::from_hf_json("/nonexistent/tokenizer.json", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    }
}
