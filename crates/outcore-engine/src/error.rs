//! Errors of the engine crate.

use std::path::PathBuf;

use outcore_format::MetadataError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unsupported architecture `{arch}` (supported: llama, mistral, qwen2)")]
    UnsupportedArch { arch: String },
    #[error("{arch}: {source}")]
    Metadata {
        arch: String,
        #[source]
        source: MetadataError,
    },
    #[error("bad model configuration: {what}")]
    BadConfig { what: String },
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    #[error("tensor `{name}` is missing (architecture {arch})")]
    MissingTensor { name: String, arch: &'static str },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor `{name}` has type {ty}, which the forward pass cannot use here")]
    TensorType {
        name: String,
        ty: outcore_format::GgmlType,
    },
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: outcore_format::FormatError,
    },
    #[error("{path}: not a model: expected a .gguf file, a .safetensors file or a Hugging Face directory with config.json")]
    NotAModel { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("context is full ({n_ctx} tokens)")]
    ContextFull { n_ctx: usize },
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    BadToken { id: u32, n_vocab: usize },
    #[error("kernel: {0}")]
    Kernel(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
