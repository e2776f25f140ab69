//! HTTP handlers. `generate.rs` holds what completions and chat share (queue, load, tokenize,
//! submit, stream or collect); the others are thin.

pub mod chat;
pub mod completions;
pub mod generate;
pub mod models;
pub mod ops;
