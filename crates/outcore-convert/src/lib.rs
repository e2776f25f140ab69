//! outcore-convert: reader -> quantizer -> writer, one tensor at a time.
//!
//! - [`convert`]: HF safetensors checkpoint (llama, mistral, qwen2) -> GGUF, with llama.cpp's
//!   metadata, tensor names, q/k permutation and type mixes ([`mix`]).
//! - [`requantize`]: GGUF -> GGUF in another type.
//! - [`synth`]: random models of real shapes, as GGUF or as an HF directory.
//!
//! All three share [`pipeline`]: rows are produced as f32 per row block, encoded in parallel and
//! streamed into an atomic [`outcore_format::GgufWriter`].
#![forbid(unsafe_code)]

pub mod calibrate;
pub mod codec;
pub mod convert;
pub mod error;
pub mod hf;
pub mod llama2c_export;
pub mod lowrank;
pub mod mix;
pub mod names;
pub mod pipeline;
pub mod requantize;
pub mod source;
pub mod st_writer;
pub mod synth;
pub mod vocab;

pub use convert::{convert_hf, ConvertOptions, ModeChoice, Report};
pub use error::ConvertError;
pub use mix::FileType;
pub use pipeline::{Mode, Progress, Quiet, WriteStats};
