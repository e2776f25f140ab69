//! outcore-engine: the model and its runtime.
//!
//! Data flow: `config` (hyperparameters) + `names`/`weights` (tensor views bound by role) ->
//! `model` (forward pass over mapped or streamed weights, `residency`) -> `sampler` -> `generate`;
//! `tokenizer` and `chat` turn text into ids and back; `memory` measures and plans.
#![forbid(unsafe_code)]

pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod kv_cache;
pub mod memory;
pub mod model;
pub mod names;
pub mod residency;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use error::EngineError;
pub use model::{LoadOptions, Model, State};
