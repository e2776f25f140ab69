//! GGUF (v2, v3): reader with strict validation, streaming writer.
pub mod reader;
pub mod value;
pub mod writer;

pub use reader::{GgufFile, GgufHeader, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use writer::{GgufWriter, PlannedTensor};
