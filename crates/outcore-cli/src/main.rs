//! The `outcore` command: one subcommand per file in `cmd/`.
#![forbid(unsafe_code)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "outcore",
    version,
    about = "Run LLMs larger than RAM: GGUF and safetensors over mmap, streaming layers, conversion, an OpenAI-compatible server."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate text from a prompt.
    Run(cmd::run::RunArgs),
    /// Interactive chat with the model's chat template.
    Chat(cmd::chat::ChatArgs),
    /// Print the logits after a prompt (JSON or raw f32).
    Logits(cmd::logits::LogitsArgs),
    /// Perplexity of a text file, computed like llama.cpp's perplexity tool.
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Prompt-processing and generation speed (like llama-bench), memory bandwidth.
    Bench(cmd::bench::BenchArgs),
    /// Show a GGUF file, a safetensors file or an HF directory: metadata, tensors, sizes.
    Inspect(cmd::inspect::InspectArgs),
    /// Convert a Hugging Face checkpoint (safetensors) to GGUF, one tensor at a time.
    Convert(cmd::convert::ConvertArgs),
    /// Export a model to another runtime's format (llama2.c int8 checkpoint + tokenizer.bin).
    Export(cmd::export::ExportArgs),
    /// Low-rank compression of 2-D weights (randomized SVD, optionally activation-aware).
    Compress(cmd::compress::CompressArgs),
    /// Requantize a GGUF file to another type, streaming.
    Quantize(cmd::quantize::QuantizeArgs),
    /// Generate a random model with real shapes (GGUF or HF safetensors), streaming.
    Synth(cmd::synth::SynthArgs),
    /// How a model would be loaded here (memory, streamed layers) and how fast it would run.
    Plan(cmd::plan::PlanArgs),
    /// OpenAI-compatible HTTP server (one model, or many from a config file).
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Logits(a) => cmd::logits::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Compress(a) => cmd::compress::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outcore: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
