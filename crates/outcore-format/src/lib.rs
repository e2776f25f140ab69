//! outcore-format: bytes on disk <-> typed, zero-copy views. No math lives here.
//!
//! Data flow: file -> [`mapping::Mapping`] -> [`gguf::GgufFile`] / [`safetensors`] -> [`TensorView`].
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod atomic;
pub mod error;
pub mod ggml_type;
pub mod gguf;
pub mod llama2c;
pub mod mapping;
pub mod safetensors;
pub mod tensor;

pub use atomic::AtomicFile;
pub use error::FormatError;
pub use ggml_type::{GgmlType, QK_K};
pub use gguf::value::{Array, Metadata, MetadataError, Value, ValueType};
pub use gguf::{GgufFile, GgufWriter};
pub use mapping::{LoadMode, Mapping};
pub use safetensors::SafetensorsModel;
pub use tensor::TensorView;
