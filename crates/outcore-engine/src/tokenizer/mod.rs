//! Tokenizers that reproduce llama.cpp (`src/llama-vocab.cpp`) token for token.
//!
//! Two vocabulary types are supported, named by `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE with merge ranks and a regex pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` ([`pretokenize`], [`bpe`]);
//! - `llama`: SentencePiece BPE by score with `<0xXX>` byte fallback ([`spm`]).
//!
//! Encoding first cuts special tokens out of the text (llama.cpp `tokenizer_st_partition`), then
//! tokenizes the text between them. Decoding goes through per-token byte pieces
//! ([`Tokenizer::token_to_piece`]); [`StreamDecoder`] turns a token stream into valid UTF-8.
//! [`Tokenizer::from_hf_json`] reads a Hugging Face `tokenizer.json` into the same structure, and
//! [`Tokenizer::to_gguf_fields`] gives what a GGUF converter writes.

mod bpe;
mod decode;
mod export;
mod hf;
mod pretokenize;
mod spm;
mod unicode;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use outcore_format::{Array, Metadata, MetadataError};

pub use decode::StreamDecoder;
pub use export::GgufTokenizerFields;
pub use pretokenize::PreKind;

use bpe::{BpeRanks, BpeScratch};
use pretokenize::{pre_config, PreTokenizer};

#[cfg(test)]
use decode::clean_up_spaces;

/// GGUF token types (`tokenizer.ggml.token_type`, llama.cpp `llama_token_type`).
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Token attribute bits (llama.cpp `llama_token_attr`).
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// GGUF metadata keys read by [`Tokenizer::from_metadata`].
pub mod keys {
    pub const MODEL: &str = "tokenizer.ggml.model";
    pub const PRE: &str = "tokenizer.ggml.pre";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const SCORES: &str = "tokenizer.ggml.scores";
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    pub const MERGES: &str = "tokenizer.ggml.merges";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
    pub const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// Spelled this way in llama.cpp and gguf-py.
    pub const SEP_ID: &str = "tokenizer.ggml.seperator_token_id";
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    pub const MASK_ID: &str = "tokenizer.ggml.mask_token_id";
    pub const FIM_PRE_ID: &str = "tokenizer.ggml.fim_pre_token_id";
    pub const FIM_SUF_ID: &str = "tokenizer.ggml.fim_suf_token_id";
    pub const FIM_MID_ID: &str = "tokenizer.ggml.fim_mid_token_id";
    pub const FIM_PAD_ID: &str = "tokenizer.ggml.fim_pad_token_id";
    pub const FIM_REP_ID: &str = "tokenizer.ggml.fim_rep_token_id";
    pub const FIM_SEP_ID: &str = "tokenizer.ggml.fim_sep_token_id";
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
    pub const GENERAL_NAME: &str = "general.name";
}

/// Why a tokenizer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(
        "unsupported tokenizer model {model:?} (key `{}`); supported: \"gpt2\", \"llama\"",
        keys::MODEL
    )]
    UnsupportedModel { model: String },
    #[error("unknown pre-tokenizer {pre:?} (key `{}`)", keys::PRE)]
    UnsupportedPre { pre: String },
    #[error("metadata key `{key}` has {found} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("metadata key `{key}`: {found} values are not supported here ({expected} expected)")]
    WrongArrayType {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "duplicate token {text:?} in `{}` (ids {first} and {second})",
        keys::TOKENS
    )]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("empty vocabulary (key `{}`)", keys::TOKENS)]
    EmptyVocab,
    #[error("metadata key `{key}` is missing: a gpt2 (BPE) vocabulary needs merges")]
    MissingMerges { key: &'static str },
    #[error("`{flag_key}` is true but `{id_key}` is not set")]
    MissingSpecial {
        flag_key: &'static str,
        id_key: &'static str,
    },
    #[error("pre-tokenizer {pre:?}: regex does not compile: {message}")]
    Regex { pre: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}` is missing or not {expected}")]
    HfField {
        path: PathBuf,
        field: String,
        expected: &'static str,
    },
    #[error("{path}: unsupported {what}")]
    HfUnsupported { path: PathBuf, what: String },
    #[error("{path}: special token {token:?} (field `{field}`) is not in the vocabulary")]
    HfUnknownToken {
        path: PathBuf,
        field: &'static str,
        token: String,
    },
}

/// Vocabulary type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabType {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE.
    Bpe,
    /// `tokenizer.ggml.model = "llama"`: SentencePiece.
    Spm,
}

impl VocabType {
    /// The `tokenizer.ggml.model` string.
    pub fn gguf_name(self) -> &'static str {
        match self {
            VocabType::Bpe => "gpt2",
            VocabType::Spm => "llama",
        }
    }
}

/// Ids of the special tokens (`None` where the model has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Token texts, scores and attributes with a reverse index.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub(crate) tokens: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u32>,
    pub(crate) ids: HashMap<String, u32>,
    pub(crate) unk: Option<u32>,
}

impl Vocab {
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// llama.cpp `byte_to_token` for SPM: `<0xXX>`, else the byte as a one-character token, else
    /// (where llama.cpp would throw) the unknown token, else 0.
    pub(crate) fn spm_byte_token(&self, b: u8) -> u32 {
        if let Some(id) = self.id(&format!("<0x{b:02X}>")) {
            return id;
        }
        if b < 0x80 {
            if let Some(id) = self.id(std::str::from_utf8(&[b]).unwrap_or_default()) {
                return id;
            }
        }
        self.unk.unwrap_or(0)
    }
}

/// The raw inputs a [`Tokenizer`] is built from (GGUF metadata or a HF `tokenizer.json`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RawVocab {
    pub(crate) model: Option<VocabType>,
    pub(crate) pre: Option<String>,
    pub(crate) tokens: Vec<String>,
    pub(crate) scores: Option<Vec<f32>>,
    pub(crate) token_types: Option<Vec<i32>>,
    pub(crate) merges: Vec<String>,
    /// Explicitly given special ids (override the per-model defaults).
    pub(crate) special: SpecialTokens,
    pub(crate) add_bos: Option<bool>,
    pub(crate) add_eos: Option<bool>,
    pub(crate) add_space_prefix: Option<bool>,
    pub(crate) chat_template: Option<String>,
    pub(crate) general_name: Option<String>,
}

/// A loaded tokenizer. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Tokenizer {
    vtype: VocabType,
    vocab: Vocab,
    pre_name: Option<String>,
    pre: Option<PreTokenizer>,
    ranks: BpeRanks,
    merges: Vec<String>,
    token_types: Vec<i32>,
    has_scores: bool,
    special: SpecialTokens,
    /// The special ids and flags exactly as given by the source (for [`Tokenizer::to_gguf_fields`]).
    given_special: SpecialTokens,
    given_add_bos: Option<bool>,
    given_add_eos: Option<bool>,
    given_add_space_prefix: Option<bool>,
    nl: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    ignore_merges: bool,
    clean_spaces: bool,
    eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first (`cache_special_tokens`).
    special_cache: Vec<u32>,
    /// `token_to_piece(id, special = true)` for every id.
    pieces: Vec<Vec<u8>>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary: the vocabulary itself is too large to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("type", &self.vtype)
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.vocab.tokens.len())
            .field("n_merges", &self.ranks.len())
            .field("special", &self.special)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

/// Token texts llama.cpp treats as end-of-generation (besides eos/eot/eom).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

fn attr_from_type(t: i32) -> u32 {
    match t {
        token_type::UNKNOWN => attr::UNKNOWN,
        token_type::UNUSED => attr::UNUSED,
        token_type::NORMAL => attr::NORMAL,
        token_type::CONTROL => attr::CONTROL,
        token_type::USER_DEFINED => attr::USER_DEFINED,
        token_type::BYTE => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// A piece of the input during special-token partitioning.
#[derive(Clone, Copy, Debug)]
enum Fragment {
    Token(u32),
    Text { start: usize, end: usize },
}

impl Tokenizer {
    /// Reads the `tokenizer.*` keys of GGUF metadata, as llama.cpp's `llama_vocab::load` does.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let model = md.get_str(keys::MODEL)?;
        let vtype = match model {
            "gpt2" => VocabType::Bpe,
            "llama" => VocabType::Spm,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_string(),
                })
            }
        };
        let tokens = md.get_str_array(keys::TOKENS)?.to_vec();
        let n = tokens.len();
        let scores = match md.get(keys::SCORES) {
            None => None,
            Some(_) => Some(match md.get_array(keys::SCORES)? {
                Array::F32(v) => v.clone(),
                Array::I32(v) => v.iter().map(|&x| x as f32).collect(),
                a => {
                    return Err(TokenizerError::WrongArrayType {
                        key: keys::SCORES,
                        expected: "f32 or i32",
                        found: a.elem_type().name(),
                    })
                }
            }),
        };
        let token_types = match md.get(keys::TOKEN_TYPE) {
            None => None,
            Some(_) => Some(
                md.get_int_array(keys::TOKEN_TYPE)?
                    .into_iter()
                    .map(|t| t as i32)
                    .collect::<Vec<_>>(),
            ),
        };
        let merges = match vtype {
            VocabType::Bpe if md.contains(keys::MERGES) => md.get_str_array(keys::MERGES)?.to_vec(),
            VocabType::Bpe => return Err(TokenizerError::MissingMerges { key: keys::MERGES }),
            VocabType::Spm => Vec::new(),
        };
        let mut special = SpecialTokens::default();
        for (key, slot) in [
            (keys::BOS_ID, &mut special.bos),
            (keys::EOS_ID, &mut special.eos),
            (keys::EOT_ID, &mut special.eot),
            (keys::EOM_ID, &mut special.eom),
            (keys::UNK_ID, &mut special.unk),
            (keys::SEP_ID, &mut special.sep),
            (keys::PAD_ID, &mut special.pad),
            (keys::MASK_ID, &mut special.mask),
            (keys::FIM_PRE_ID, &mut special.fim_pre),
            (keys::FIM_SUF_ID, &mut special.fim_suf),
            (keys::FIM_MID_ID, &mut special.fim_mid),
            (keys::FIM_PAD_ID, &mut special.fim_pad),
            (keys::FIM_REP_ID, &mut special.fim_rep),
            (keys::FIM_SEP_ID, &mut special.fim_sep),
        ] {
            *slot = md.opt_u32(key)?;
        }
        let raw = RawVocab {
            model: Some(vtype),
            pre: md.opt_str(keys::PRE)?.map(str::to_string),
            tokens,
            scores,
            token_types,
            merges,
            special,
            add_bos: md.opt_bool(keys::ADD_BOS)?,
            add_eos: md.opt_bool(keys::ADD_EOS)?,
            add_space_prefix: md.opt_bool(keys::ADD_SPACE_PREFIX)?,
            chat_template: md.opt_str(keys::CHAT_TEMPLATE)?.map(str::to_string),
            general_name: md.opt_str(keys::GENERAL_NAME)?.map(str::to_string),
        };
        if let Some(s) = &raw.scores {
            check_len(keys::SCORES, n, s.len())?;
        }
        if let Some(t) = &raw.token_types {
            check_len(keys::TOKEN_TYPE, n, t.len())?;
        }
        Tokenizer::build(raw)
    }

    pub(crate) fn build(raw: RawVocab) -> Result<Tokenizer, TokenizerError> {
        let vtype = raw.model.unwrap_or(VocabType::Spm);
        let n = raw.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        // Per-model defaults (llama.cpp `load`), then the pre-tokenizer's flags.
        let (mut bos, mut eos, mut unk) = match vtype {
            VocabType::Spm => (Some(1), Some(2), Some(0)),
            VocabType::Bpe => (Some(11), Some(11), None),
        };
        let mut pre = None;
        let mut pre_name = None;
        // (add_bos, add_space_prefix, clean_spaces, ignore_merges)
        let (mut add_bos, mut add_space_prefix, clean_spaces, ignore_merges) = match vtype {
            VocabType::Bpe => {
                let name = raw.pre.clone().unwrap_or_else(|| "default".to_string());
                let cfg = pre_config(&name)
                    .ok_or_else(|| TokenizerError::UnsupportedPre { pre: name.clone() })?;
                if cfg.kind == PreKind::ChatGlm4 {
                    bos = None;
                }
                pre = Some(
                    PreTokenizer::new(cfg.kind).map_err(|e| TokenizerError::Regex {
                        pre: name.clone(),
                        message: e.to_string(),
                    })?,
                );
                pre_name = raw.pre.clone();
                (cfg.add_bos, false, cfg.clean_spaces, cfg.ignore_merges)
            }
            VocabType::Spm => (true, true, false, false),
        };
        let mut add_eos = false;
        if let Some(v) = raw.add_space_prefix {
            add_space_prefix = v;
        }

        let mut tokens = raw.tokens;
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
            if let Some(&first) = ids.get(t.as_str()) {
                return Err(TokenizerError::DuplicateToken {
                    text: t.clone(),
                    first,
                    second: i as u32,
                });
            }
            ids.insert(t.clone(), i as u32);
        }
        let token_types = raw
            .token_types
            .unwrap_or_else(|| vec![token_type::NORMAL; n]);
        let mut attrs: Vec<u32> = token_types.iter().map(|&t| attr_from_type(t)).collect();
        let has_scores = raw.scores.is_some();
        let scores = raw.scores.unwrap_or_else(|| vec![0.0; n]);

        // Explicit special ids override the defaults; out-of-range ones are ignored (llama.cpp warns).
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let mut special = SpecialTokens {
            bos: in_range(bos),
            eos: in_range(eos),
            unk: in_range(unk),
            ..Default::default()
        };
        let given = raw.special;
        let pick = |default: Option<u32>, given: Option<u32>| match given {
            Some(g) if (g as usize) < n => Some(g),
            _ => default,
        };
        special.bos = pick(special.bos, given.bos);
        special.eos = pick(special.eos, given.eos);
        special.eot = pick(None, given.eot);
        special.eom = pick(None, given.eom);
        special.unk = pick(special.unk, given.unk);
        special.sep = pick(None, given.sep);
        special.pad = pick(None, given.pad);
        special.mask = pick(None, given.mask);
        special.fim_pre = pick(None, given.fim_pre);
        special.fim_suf = pick(None, given.fim_suf);
        special.fim_mid = pick(None, given.fim_mid);
        special.fim_pad = pick(None, given.fim_pad);
        special.fim_rep = pick(None, given.fim_rep);
        special.fim_sep = pick(None, given.fim_sep);
        bos = special.bos;
        eos = special.eos;
        unk = special.unk;

        if let Some(v) = raw.add_bos {
            add_bos = v;
        }
        if let Some(v) = raw.add_eos {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                flag_key: keys::ADD_BOS,
                id_key: keys::BOS_ID,
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                flag_key: keys::ADD_EOS,
                id_key: keys::EOS_ID,
            });
        }

        // Auto-detect EOT/EOM/FIM tokens by text; tokens found this way become control tokens.
        // (llama.cpp walks a hash map here; ids are visited in order so the choice is deterministic.)
        fn mark_control(attrs: &mut [u32], id: u32) {
            attrs[id as usize] |= attr::CONTROL;
        }
        for (slot, texts) in [
            (&mut special.eot, EOT_TEXTS),
            (&mut special.eom, &["<|eom_id|>"][..]),
            (&mut special.fim_pre, FIM_PRE_TEXTS),
            (&mut special.fim_suf, FIM_SUF_TEXTS),
            (&mut special.fim_mid, FIM_MID_TEXTS),
            (&mut special.fim_pad, FIM_PAD_TEXTS),
            (&mut special.fim_rep, FIM_REP_TEXTS),
            (&mut special.fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none() {
                if let Some(id) =
                    (0..n as u32).find(|&i| texts.contains(&tokens[i as usize].as_str()))
                {
                    *slot = Some(id);
                    mark_control(&mut attrs, id);
                }
            }
        }
        // Control tokens whose text says "unused" are unused.
        for (t, a) in tokens.iter().zip(attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }
        let mut eog = BTreeSet::new();
        eog.extend(
            [special.fim_pad, special.fim_rep, special.fim_sep]
                .into_iter()
                .flatten(),
        );
        for (i, t) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                eog.insert(i as u32);
                mark_control(&mut attrs, i as u32);
            }
        }
        // gpt-oss renders these structural tokens as text.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = ids.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend(
            [special.eos, special.eot, special.eom]
                .into_iter()
                .flatten(),
        );
        // o200k_harmony: "<|end|>" ends a message, not the generation, when "<|return|>" and "<|call|>" exist.
        let has = |t: &str| ids.get(t).is_some_and(|id| eog.contains(id));
        if has("<|return|>") && has("<|call|>") {
            if let Some(&end) = ids.get("<|end|>") {
                if eog.remove(&end) {
                    attrs[end as usize] = attr::USER_DEFINED;
                }
            }
        }

        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_cache.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        // Phi-3 GGUFs strip the whitespace after special tokens (set by model name in llama.cpp).
        let name = raw.general_name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_cache {
                attrs[id as usize] |= attr::RSTRIP;
            }
            if let Some(&id) = ids.get("</s>") {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = ids.get(t) {
                    attrs[id as usize] &= !attr::RSTRIP;
                }
            }
        }

        let ranks = BpeRanks::new(&raw.merges);
        let vocab = Vocab {
            tokens,
            scores,
            attrs,
            ids,
            unk,
        };
        let mut tok = Tokenizer {
            vtype,
            vocab,
            pre_name,
            pre,
            ranks,
            merges: raw.merges,
            token_types,
            has_scores,
            special,
            given_special: given,
            given_add_bos: raw.add_bos,
            given_add_eos: raw.add_eos,
            given_add_space_prefix: raw.add_space_prefix,
            nl: None,
            add_bos,
            add_eos,
            add_space_prefix,
            ignore_merges,
            clean_spaces,
            eog,
            special_cache,
            pieces: Vec::new(),
            chat_template: raw.chat_template,
        };
        tok.pieces = (0..n as u32).map(|id| tok.compute_piece(id)).collect();
        tok.nl = match vtype {
            VocabType::Spm => {
                let id = tok.vocab.id("<0x0A>").or_else(|| tok.vocab.id("\n"));
                id.or(tok.special.pad)
            }
            VocabType::Bpe => tok
                .encode("\n", false, false)
                .first()
                .copied()
                .or(tok.special.pad),
        };
        Ok(tok)
    }

    /// Tokenizes `text` like `llama_tokenize(vocab, text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS only when the model's `add_bos_token` is true (and EOS when
    /// `add_eos_token` is). With `parse_special`, control tokens written in the text (such as
    /// `<|im_start|>`) become their ids; otherwise they are tokenized as plain text. User-defined
    /// tokens are always matched whole, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        if add_special && self.add_bos {
            out.extend(self.special.bos);
        }
        match self.vtype {
            VocabType::Spm => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text { start, end } => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[start..end].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::tokenize(&self.vocab, &buf, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
            VocabType::Bpe => {
                let mut scratch = BpeScratch::default();
                for f in fragments {
                    match f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text { start, end } => {
                            self.bpe_fragment(&text[start..end], &mut scratch, &mut out)
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        out
    }

    fn bpe_fragment(&self, text: &str, scratch: &mut BpeScratch, out: &mut Vec<u32>) {
        let Some(pre) = &self.pre else { return };
        let table = unicode::byte_to_char_table();
        let mut word = String::new();
        let mut syms = Vec::new();
        for piece in pre.split(text) {
            word.clear();
            word.extend(piece.bytes().map(|b| table[b as usize]));
            if self.ignore_merges {
                if let Some(id) = self.vocab.id(&word) {
                    out.push(id);
                    continue;
                }
            }
            syms.clear();
            bpe::merge_word(&self.ranks, &word, scratch, &mut syms);
            for &(s, e) in &syms {
                let sym = &word[s..e];
                match self.vocab.id(sym) {
                    Some(id) => out.push(id),
                    // llama.cpp looks up each byte of the symbol's text on its own: only ASCII
                    // bytes can be tokens, the rest are dropped.
                    None => out.extend(sym.bytes().filter(u8::is_ascii).filter_map(|b| {
                        self.vocab.id(std::str::from_utf8(&[b]).unwrap_or_default())
                    })),
                }
            }
        }
    }

    /// Cuts special tokens out of `text` (llama.cpp `tokenizer_st_partition`): for each special
    /// token, longest first, every occurrence in the remaining text fragments becomes a token.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text {
            start: 0,
            end: text.len(),
        }];
        let mut next = Vec::new();
        for &id in &self.special_cache {
            let a = self.vocab.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = self.vocab.tokens[id as usize].as_str();
            if !frags.iter().any(|f| matches!(*f, Fragment::Text { start, end } if text[start..end].contains(needle))) {
                continue;
            }
            next.clear();
            for &f in &frags {
                let Fragment::Text { mut start, end } = f else {
                    next.push(f);
                    continue;
                };
                while let Some(pos) = text[start..end].find(needle) {
                    let m = start + pos;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start
                            && text.as_bytes()[left_end - 1].is_ascii_whitespace_c()
                        {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text {
                            start,
                            end: left_end,
                        });
                    }
                    next.push(Fragment::Token(id));
                    start = m + needle.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && text.as_bytes()[start].is_ascii_whitespace_c() {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Fragment::Text { start, end });
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    pub fn vocab_type(&self) -> VocabType {
        self.vtype
    }

    /// The `tokenizer.ggml.pre` name, if the model has one.
    pub fn pre_name(&self) -> Option<&str> {
        self.pre_name.as_deref()
    }

    /// The pre-tokenizer kind (BPE only).
    pub fn pre_kind(&self) -> Option<PreKind> {
        self.pre.as_ref().map(PreTokenizer::kind)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Number of BPE merges (0 for SPM).
    pub fn n_merges(&self) -> usize {
        self.ranks.len()
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn bos(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.special.eos
    }

    pub fn eot(&self) -> Option<u32> {
        self.special.eot
    }

    pub fn unk(&self) -> Option<u32> {
        self.special.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.special.pad
    }

    /// The newline token (llama.cpp `linefeed_id`).
    pub fn nl(&self) -> Option<u32> {
        self.nl
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether `id` ends generation (eos, eot, eom and the end-of-turn tokens llama.cpp knows).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id) & attr::CONTROL != 0
    }

    /// The [`attr`] bits of a token (0 for ids out of range).
    pub fn token_attr(&self, id: u32) -> u32 {
        self.vocab
            .attrs
            .get(id as usize)
            .copied()
            .unwrap_or(attr::UNDEFINED)
    }

    /// The vocabulary text of a token (byte-level encoded for BPE, with `▁` for SPM).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }

    /// `tokenizer.chat_template` (or the HF `chat_template`), if present.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}

fn check_len(key: &'static str, expected: usize, found: usize) -> Result<(), TokenizerError> {
    if found < expected {
        return Err(TokenizerError::LengthMismatch {
            key,
            expected,
            found,
        });
    }
    Ok(())
}

trait CSpace {
    /// C `isspace` in the "C" locale.
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(*self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}

#[cfg(test)]
mod tests;
