//! outcore-engine
#![forbid(unsafe_code)]

pub mod memory;
pub mod chat;
pub mod tokenizer;
