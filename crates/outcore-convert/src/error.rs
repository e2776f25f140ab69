//! `ConvertError`: every way a conversion can fail, with the file, key or tensor it concerns.

use std::io;
use std::path::PathBuf;

use outcore_format::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error(transparent)]
    Format(#[from] outcore_format::error::FormatError),

    #[error(transparent)]
    Metadata(#[from] outcore_format::MetadataError),

    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("{}: not found ({what})", path.display())]
    Missing { path: PathBuf, what: &'static str },

    #[error("{}: key `{key}` {problem}", path.display())]
    BadConfig {
        path: PathBuf,
        key: String,
        problem: String,
    },

    #[error("unsupported architecture `{arch}` (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)")]
    UnsupportedArch { arch: String },

    #[error("checkpoint has no tensor `{tensor}` (needed for {gguf})")]
    MissingTensor { tensor: String, gguf: String },

    #[error(
        "tensor `{tensor}` has shape {found:?}, expected {expected:?} from config.json (HF order)"
    )]
    ShapeMismatch {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },

    #[error("tensor `{tensor}` has type {ty}; only F32, F16 and BF16 sources can be converted")]
    UnsupportedDtype { tensor: String, ty: GgmlType },

    #[error("tensor `{tensor}`: cannot store {n_cols} columns as {ty} (rows must be a multiple of {block})")]
    BadRowLength {
        tensor: String,
        ty: GgmlType,
        n_cols: u64,
        block: usize,
    },

    #[error("tensor `{tensor}`: {problem}")]
    BadTensor { tensor: String, problem: String },

    #[error("{}: the checkpoint holds tensors the converter does not know: {names}", path.display())]
    UnknownTensors { path: PathBuf, names: String },

    #[error("{}: {problem}", path.display())]
    Tokenizer { path: PathBuf, problem: String },

    #[error(
        "{}: no tokenizer.json; a GGUF without a vocabulary cannot run. Pass --no-tokenizer to convert the weights anyway",
        dir.display()
    )]
    NoTokenizer { dir: PathBuf },

    #[error(
        "unknown pre-tokenizer in {}: {detail}. Pass --tokenizer-pre NAME (a llama.cpp pre-tokenizer name such as llama-bpe, qwen2, smollm, gpt-2)",
        path.display()
    )]
    UnknownPreTokenizer { path: PathBuf, detail: String },

    #[error("{}: already exists (pass --force to overwrite)", path.display())]
    OutputExists { path: PathBuf },

    #[error("unknown output type `{name}`; expected one of: {expected}")]
    UnknownType { name: String, expected: String },

    #[error("{what}")]
    Invalid { what: String },

    #[error("quantizing `{tensor}` to {ty}: {problem}")]
    Kernel {
        tensor: String,
        ty: GgmlType,
        problem: String,
    },
}

impl ConvertError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConvertError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
