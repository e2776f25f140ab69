//! What a GGUF converter writes for a tokenizer (gguf-py `SpecialVocab` + `add_tokenizer_*`).

use outcore_format::{Array, Metadata, Value};

use super::{keys, Tokenizer};

/// The `tokenizer.*` GGUF metadata of a tokenizer.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTokenizerFields {
    /// `tokenizer.ggml.model`: "gpt2" or "llama".
    pub model: String,
    /// `tokenizer.ggml.pre` (BPE only).
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`, when the source had scores.
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` ([`super::token_type`] values).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` as `"left right"` strings (BPE only).
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

impl GgufTokenizerFields {
    /// Writes the fields into `md` with llama.cpp's key names and value types.
    pub fn insert_into(&self, md: &mut Metadata) {
        md.insert(keys::MODEL, Value::String(self.model.clone()));
        if let Some(pre) = &self.pre {
            md.insert(keys::PRE, Value::String(pre.clone()));
        }
        md.insert(
            keys::TOKENS,
            Value::Array(Array::String(self.tokens.clone())),
        );
        if let Some(scores) = &self.scores {
            md.insert(keys::SCORES, Value::Array(Array::F32(scores.clone())));
        }
        md.insert(
            keys::TOKEN_TYPE,
            Value::Array(Array::I32(self.token_types.clone())),
        );
        if !self.merges.is_empty() {
            md.insert(
                keys::MERGES,
                Value::Array(Array::String(self.merges.clone())),
            );
        }
        for (key, id) in [
            (keys::BOS_ID, self.bos),
            (keys::EOS_ID, self.eos),
            (keys::UNK_ID, self.unk),
            (keys::SEP_ID, self.sep),
            (keys::PAD_ID, self.pad),
        ] {
            if let Some(id) = id {
                md.insert(key, Value::U32(id));
            }
        }
        for (key, v) in [
            (keys::ADD_BOS, self.add_bos),
            (keys::ADD_EOS, self.add_eos),
            (keys::ADD_SPACE_PREFIX, self.add_space_prefix),
        ] {
            if let Some(v) = v {
                md.insert(key, Value::Bool(v));
            }
        }
        if let Some(t) = &self.chat_template {
            md.insert(keys::CHAT_TEMPLATE, Value::String(t.clone()));
        }
    }
}

impl Tokenizer {
    /// The GGUF tokenizer metadata for this tokenizer. Token types and special ids are the ones
    /// given at load time (auto-detected EOT/FIM tokens are not written, as gguf-py does not).
    pub fn to_gguf_fields(&self) -> GgufTokenizerFields {
        let given = &self.given_special;
        GgufTokenizerFields {
            model: self.vtype.gguf_name().to_string(),
            pre: self.pre_name.clone(),
            tokens: self.vocab.tokens.clone(),
            scores: self.has_scores.then(|| self.vocab.scores.clone()),
            token_types: self.token_types.clone(),
            merges: self.merges.clone(),
            bos: given.bos,
            eos: given.eos,
            unk: given.unk,
            sep: given.sep,
            pad: given.pad,
            add_bos: self.given_add_bos,
            add_eos: self.given_add_eos,
            add_space_prefix: self.given_add_space_prefix,
            chat_template: self.chat_template.clone(),
        }
    }
}
