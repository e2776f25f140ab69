//! GGUF (v2, v3): reader with strict validation, streaming writer.
pub mod value;
