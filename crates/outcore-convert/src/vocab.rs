//! `tokenizer.json` + `tokenizer_config.json` -> `tokenizer.ggml.*` metadata, as llama.cpp's
//! `convert_hf_to_gguf.py` writes it for byte-level BPE vocabularies (`_set_vocab_gpt2`,
//! `get_vocab_base`, gguf-py's `SpecialVocab`).
//!
//! llama.cpp picks `tokenizer.ggml.pre` by hashing the HF tokenizer's output on a test string. We
//! have no HF tokenizer to run, so we recognise the pre-tokenizer by its structure (the split regex
//! and digit handling), which is what the hash stands for, and use the vocabulary to tell apart
//! families whose splitting is identical (smollm and starcoder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use outcore_format::{Array, Value};
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// llama.cpp token types (`llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

pub(crate) const LLAMA3_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
pub(crate) const QWEN2_REGEX_CI: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// The tokenizer files of a checkpoint directory, read into GGUF metadata.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub pre: String,
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// (gguf key suffix, id): bos, eos, unknown, padding, in llama.cpp's order.
    pub special_ids: Vec<(&'static str, u32)>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// tokenizer_config's `add_prefix_space` (llama.cpp writes it for llama models only).
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|source| ConvertError::Json {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConvertError::io(path, e)),
    }
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_content(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
}

/// llama.cpp's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
}

impl Vocab {
    /// Reads `dir/tokenizer.json` (required) and `dir/tokenizer_config.json` (optional).
    /// `n_vocab` is config.json's vocab_size (the token list is padded to it with `[PADi]`, as
    /// llama.cpp does); `config_ids` are config.json's bos/eos/pad ids (fallbacks);
    /// `pre_override` replaces the pre-tokenizer detection.
    pub fn load(
        dir: &Path,
        n_vocab: u64,
        config_ids: &[(&'static str, u32)],
        pre_override: Option<&str>,
    ) -> Result<Option<Vocab>> {
        let tok_path = dir.join("tokenizer.json");
        let Some(tok) = read_json(&tok_path)? else {
            return Ok(None);
        };
        let cfg_path = dir.join("tokenizer_config.json");
        let tcfg = read_json(&cfg_path)?.unwrap_or(Json::Null);
        let err = |problem: String| ConvertError::Tokenizer {
            path: tok_path.clone(),
            problem,
        };

        let model = tok.get("model").ok_or_else(|| err("no `model`".into()))?;
        let model_type = model.get("type").and_then(|t| t.as_str()).unwrap_or("");
        if model_type != "BPE" {
            return Err(err(format!(
                "tokenizer model `{model_type}` is not supported (only byte-level BPE)"
            )));
        }
        if model
            .get("byte_fallback")
            .and_then(|b| b.as_bool())
            .unwrap_or(false)
        {
            return Err(err(
                "SentencePiece-style BPE (byte_fallback, Metaspace) is not supported yet; only byte-level BPE (gpt2) is"
                    .into(),
            ));
        }
        let vocab_map = model
            .get("vocab")
            .and_then(|v| v.as_object())
            .ok_or_else(|| err("no `model.vocab`".into()))?;
        let mut by_id: HashMap<u64, String> = HashMap::with_capacity(vocab_map.len());
        for (text, id) in vocab_map {
            let id = id
                .as_u64()
                .ok_or_else(|| err(format!("token {text:?} has a non-integer id")))?;
            by_id.insert(id, text.clone());
        }
        // Added tokens may lie beyond model.vocab (their ids are authoritative).
        let mut added: HashMap<u64, (String, bool)> = HashMap::new();
        if let Some(list) = tok.get("added_tokens").and_then(|a| a.as_array()) {
            for a in list {
                let (Some(id), Some(content)) = (
                    a.get("id").and_then(|x| x.as_u64()),
                    a.get("content").and_then(|x| x.as_str()),
                ) else {
                    return Err(err("an added_tokens entry lacks id or content".into()));
                };
                let special = a.get("special").and_then(|x| x.as_bool()).unwrap_or(false);
                by_id.insert(id, content.to_string());
                added.insert(id, (content.to_string(), special));
            }
        }
        let max_id = by_id.keys().copied().max().unwrap_or(0);
        if max_id >= n_vocab {
            return Err(err(format!(
                "token id {max_id} is outside config.json's vocab_size {n_vocab}"
            )));
        }
        let mut tokens = Vec::with_capacity(n_vocab as usize);
        let mut token_types = Vec::with_capacity(n_vocab as usize);
        for i in 0..n_vocab {
            match (by_id.get(&i), added.get(&i)) {
                (None, _) => {
                    tokens.push(format!("[PAD{i}]"));
                    token_types.push(UNUSED);
                }
                (Some(_), Some((content, special))) => {
                    tokens.push(content.clone());
                    token_types.push(if *special || looks_special(content) {
                        CONTROL
                    } else {
                        USER_DEFINED
                    });
                }
                (Some(t), None) => {
                    tokens.push(t.clone());
                    token_types.push(NORMAL);
                }
            }
        }

        let merges = match model.get("merges").and_then(|m| m.as_array()) {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|m| match m {
                    Json::String(s) => Ok(s.clone()),
                    // Newer tokenizers store pairs; a space inside a part becomes U+0120 (as gguf-py does).
                    Json::Array(pair) if pair.len() == 2 => {
                        let part = |p: &Json| p.as_str().map(|s| s.replace(' ', "\u{0120}"));
                        match (part(&pair[0]), part(&pair[1])) {
                            (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                            _ => Err(err("a merge pair is not two strings".into())),
                        }
                    }
                    _ => Err(err("a merge is neither a string nor a pair".into())),
                })
                .collect::<Result<_>>()?,
        };

        let pre = match pre_override {
            Some(p) => p.to_string(),
            None => {
                detect_pre(&tok, &tokens).map_err(|detail| ConvertError::UnknownPreTokenizer {
                    path: tok_path.clone(),
                    detail,
                })?
            }
        };

        // Special ids, as gguf-py's SpecialVocab finds them: tokenizer_config's `<typ>_token`
        // text looked up among the added tokens, else config.json's `<typ>_token_id`.
        let lookup = |text: &str| -> Option<u32> {
            added
                .iter()
                .filter(|(_, (c, _))| c == text)
                .map(|(id, _)| *id as u32)
                .min()
        };
        let mut special_ids = Vec::new();
        for (typ, key) in [
            ("bos", "bos_token_id"),
            ("eos", "eos_token_id"),
            ("unk", "unknown_token_id"),
            ("sep", "seperator_token_id"),
            ("pad", "padding_token_id"),
            ("mask", "mask_token_id"),
        ] {
            let from_tcfg = tcfg
                .get(format!("{typ}_token"))
                .and_then(token_content)
                .and_then(lookup);
            let from_cfg = config_ids
                .iter()
                .find(|(n, _)| *n == typ)
                .map(|(_, id)| *id);
            if let Some(id) = from_tcfg.or(from_cfg) {
                if (id as u64) < n_vocab {
                    special_ids.push((key, id));
                }
            }
        }
        // add_bos/add_eos: the post-processor decides (ByteLevel: neither; a TemplateProcessing
        // with special tokens around the sequence: those), tokenizer_config only where it is silent.
        let (mut add_bos, mut add_eos): (Option<bool>, Option<bool>) = (None, None);
        let special_text = |typ: &str| {
            tcfg.get(format!("{typ}_token"))
                .and_then(token_content)
                .map(str::to_string)
        };
        if let Some(pp) = tok.get("post_processor").filter(|p| p.is_object()) {
            let procs: Vec<&Json> = match pp.get("processors").and_then(|p| p.as_array()) {
                Some(list) => list.iter().collect(),
                None => vec![pp],
            };
            for p in procs {
                match p.get("type").and_then(|t| t.as_str()) {
                    Some("ByteLevel") => {
                        add_bos.get_or_insert(false);
                        add_eos.get_or_insert(false);
                    }
                    Some("TemplateProcessing") => {
                        let single = p
                            .get("single")
                            .and_then(|s| s.as_array())
                            .cloned()
                            .unwrap_or_default();
                        if single.len() > 1 {
                            let sp = |e: &Json| {
                                e.get("SpecialToken")
                                    .and_then(|t| t.get("id"))
                                    .and_then(|i| i.as_str())
                                    .map(str::to_string)
                            };
                            if let Some(first) = single.first().and_then(sp) {
                                add_bos = Some(
                                    Some(first) == special_text("bos")
                                        || special_text("bos").is_none(),
                                );
                            }
                            if let Some(last) = single.last().and_then(sp) {
                                add_eos = Some(
                                    Some(last) == special_text("eos")
                                        || special_text("eos").is_none(),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if add_bos.is_none() {
            add_bos = tcfg.get("add_bos_token").and_then(|b| b.as_bool());
        }
        if add_eos.is_none() {
            add_eos = tcfg.get("add_eos_token").and_then(|b| b.as_bool());
        }
        let add_space_prefix = tcfg.get("add_prefix_space").and_then(|b| b.as_bool());
        let chat_template = match tcfg.get("chat_template") {
            Some(Json::String(s)) => Some(s.clone()),
            // A list of named templates: llama.cpp takes "default".
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
            _ => None,
        };
        let chat_template = match chat_template {
            Some(t) => Some(t),
            None => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        Ok(Some(Vocab {
            pre,
            tokens,
            token_types,
            merges,
            special_ids,
            add_bos,
            add_eos,
            add_space_prefix,
            chat_template,
        }))
    }

    /// The `tokenizer.*` metadata, in llama.cpp's order.
    pub fn gguf_metadata(&self) -> Vec<(String, Value)> {
        let mut md = Vec::new();
        if let Some(b) = self.add_space_prefix {
            md.push((
                "tokenizer.ggml.add_space_prefix".to_string(),
                Value::Bool(b),
            ));
        }
        md.extend([
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("gpt2".into()),
            ),
            (
                "tokenizer.ggml.pre".to_string(),
                Value::String(self.pre.clone()),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(Array::String(self.tokens.clone())),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                Value::Array(Array::I32(self.token_types.clone())),
            ),
        ]);
        if !self.merges.is_empty() {
            md.push((
                "tokenizer.ggml.merges".into(),
                Value::Array(Array::String(self.merges.clone())),
            ));
        }
        for (key, id) in &self.special_ids {
            md.push((format!("tokenizer.ggml.{key}"), Value::U32(*id)));
        }
        if let Some(b) = self.add_bos {
            md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
        }
        if let Some(b) = self.add_eos {
            md.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(b)));
        }
        if let Some(t) = &self.chat_template {
            md.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
        }
        md
    }
}

/// The pre-tokenizer, described by what it does.
fn detect_pre(tok: &Json, tokens: &[String]) -> std::result::Result<String, String> {
    let pre = tok.get("pre_tokenizer").unwrap_or(&Json::Null);
    let kind = |v: &Json| {
        v.get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string()
    };
    let steps: Vec<&Json> = match kind(pre).as_str() {
        "Sequence" => pre
            .get("pretokenizers")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        "" => Vec::new(),
        _ => vec![pre],
    };
    let sig: Vec<String> = steps.iter().map(|s| kind(s)).collect();
    let byte_level_regex = |s: &Json| s.get("use_regex").and_then(|b| b.as_bool()).unwrap_or(true);
    let split_regex = |s: &Json| {
        s.get("pattern")
            .and_then(|p| p.get("Regex"))
            .and_then(|r| r.as_str())
            .map(str::to_string)
    };
    let has = |t: &str| tokens.iter().take(256).any(|x| x == t);
    match sig
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ByteLevel"] if byte_level_regex(steps[0]) => Ok("gpt-2".into()),
        ["Digits", "ByteLevel"]
            if steps[0].get("individual_digits").and_then(|b| b.as_bool()) == Some(true)
                && byte_level_regex(steps[1]) =>
        {
            // Same splitting (\p{N}, then GPT-2's regex) in llama.cpp; the vocabulary tells the family.
            Ok(if has("<|im_start|>") {
                "smollm".into()
            } else {
                "starcoder".into()
            })
        }
        ["Split", "ByteLevel"] if !byte_level_regex(steps[1]) => {
            match split_regex(steps[0]).as_deref() {
                Some(LLAMA3_REGEX) => Ok("llama-bpe".into()),
                Some(QWEN2_REGEX) | Some(QWEN2_REGEX_CI) => Ok("qwen2".into()),
                Some(other) => Err(format!("Split regex {other:?}")),
                None => Err("Split without a regex".into()),
            }
        }
        _ => Err(format!("pre_tokenizer structure {sig:?}")),
    }
}

/// Path helper for error messages.
pub fn tokenizer_path(dir: &Path) -> PathBuf {
    dir.join("tokenizer.json")
}
