//! `outcore convert`: a Hugging Face checkpoint (llama, mistral, qwen2 safetensors) -> GGUF,
//! streamed tensor by tensor with llama.cpp's metadata, tensor names and type mixes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use outcore_convert::mix::MIX_HELP;
use outcore_convert::{convert_hf, ConvertOptions, FileType, Mode, ModeChoice, Progress, Report};
use outcore_format::GgmlType;

#[derive(Args, Debug, Clone)]
#[command(after_long_help = MIX_HELP)]
pub struct ConvertArgs {
    /// The checkpoint directory (config.json, *.safetensors [+ index], tokenizer.json).
    pub input: PathBuf,
    /// Output GGUF (default: next to the input, named after it and the type).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Output type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k(_s|_m) q5_k(_s|_m) q6_k (see --help).
    #[arg(long = "type", alias = "outtype", default_value = "f16")]
    pub ty: String,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Memory mode: auto (from detected memory), standard (64 MB chunks of f32), low-memory
    /// (16 MB chunks). Both drop each input chunk's pages (mapping and page cache) once converted.
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Threads for quantization (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Every quantizable tensor gets the base type (llama-quantize --pure).
    #[arg(long)]
    pub pure: bool,
    /// general.name (default: the directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// Convert even without tokenizer.json (the GGUF then has no vocabulary).
    #[arg(long = "no-tokenizer")]
    pub no_tokenizer: bool,
    /// tokenizer.ggml.pre to write instead of the detected one (e.g. llama-bpe, qwen2, smollm).
    #[arg(long = "tokenizer-pre")]
    pub tokenizer_pre: Option<String>,
}

/// All cores unless told otherwise.
pub fn threads(t: Option<usize>) -> usize {
    t.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// A progress bar on stderr (MB/s, ETA), shown only when stderr is a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
    last: Mutex<String>,
}

impl Bar {
    pub fn new(verb: &str) -> Bar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(verb.to_string());
            b
        });
        Bar {
            bar,
            last: Mutex::new(String::new()),
        }
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn tensor(&self, name: &str, ty: GgmlType) {
        if let Some(b) = &self.bar {
            let msg = format!("{name} -> {ty}");
            b.set_message(msg.clone());
            *self.last.lock().expect("not poisoned") = msg;
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// The end-of-run summary: bytes in/out, time, throughput, peak RSS, mode and why, types.
pub fn print_summary(what: &str, out: &std::path::Path, r: &Report, has_input: bool) {
    let s = &r.stats;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let mode = match r.mode {
        Mode::Standard => "standard",
        Mode::LowMemory => "low-memory",
    };
    let mut types: Vec<String> = s.types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    types.sort();
    eprintln!("{what} {}: {} tensors", out.display(), s.tensors);
    if has_input {
        eprintln!(
            "  in {}  out {}  in {:.1} s  ({:.1} MB/s in, {:.1} MB/s out)",
            mb(s.input_bytes),
            mb(s.output_bytes),
            secs,
            s.input_bytes as f64 / 1e6 / secs,
            s.output_bytes as f64 / 1e6 / secs
        );
    } else {
        eprintln!(
            "  out {}  in {:.1} s  ({:.1} MB/s)",
            mb(s.output_bytes),
            secs,
            s.output_bytes as f64 / 1e6 / secs
        );
    }
    eprintln!(
        "  peak RSS {} (largest tensor in f32: {})  mode {mode}: {}",
        r.peak_rss.map(mb).unwrap_or_else(|| "unknown".into()),
        mb(r.largest_tensor_f32),
        r.mode_reason
    );
    eprintln!("  types: {}", types.join(", "));
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let ftype = FileType::parse(&args.ty)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| outcore_convert::convert::default_output(&args.input, ftype));
    let opts = ConvertOptions {
        input: args.input.clone(),
        output: output.clone(),
        ftype,
        force: args.force,
        mode: ModeChoice::parse(&args.mode)?,
        threads: threads(args.threads),
        pure: args.pure,
        name: args.name.clone(),
        no_tokenizer: args.no_tokenizer,
        tokenizer_pre: args.tokenizer_pre.clone(),
    };
    let bar = Bar::new("convert");
    let report =
        convert_hf(&opts, &bar).with_context(|| format!("converting {}", args.input.display()))?;
    print_summary("wrote", &output, &report, true);
    Ok(())
}
