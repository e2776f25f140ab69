//! One file per subcommand.
pub mod bench;
pub mod chat;
pub mod common;
pub mod compress;
pub mod convert;
pub mod export;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod plan;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod synth;
