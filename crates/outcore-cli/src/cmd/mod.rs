//! One file per subcommand.
pub mod chat;
pub mod common;
pub mod convert;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod synth;
