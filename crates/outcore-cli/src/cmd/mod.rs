//! One file per subcommand.
pub mod chat;
pub mod common;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod run;
pub mod convert;
pub mod quantize;
pub mod synth;
