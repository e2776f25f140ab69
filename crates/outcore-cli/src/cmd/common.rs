//! Flags shared by the commands that open a model (llama.cpp spellings where they exist).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use outcore_engine::kv_cache::CacheType;
use outcore_engine::model::{LoadOptions, Model, Streaming};
use outcore_engine::sampler::SamplingParams;
use outcore_format::mapping::LoadMode;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file or a Hugging Face directory (config.json + safetensors).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Context size in tokens (KV cache positions). Default: 4096 or the model's training context, whichever is smaller.
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Compute threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// How to load the weights: auto (default: mmap, streaming the layers that do not fit the
    /// memory budget), stream (always through the residency manager), mmap (plain mmap, no
    /// streaming, for comparison), read (into RAM), mlock (mmap and lock).
    #[arg(long = "load", default_value = "auto")]
    pub load: String,
    /// Memory budget for this process (weights + KV cache + scratch), below what the system or
    /// cgroup allows: 512M, 1.5G, 2GiB or bytes (K/M/G/T decimal, KiB/MiB/GiB/TiB binary).
    #[arg(long = "max-ram", value_parser = parse_size)]
    pub max_ram: Option<u64>,
    /// Lock the model in RAM (same as --load mlock).
    #[arg(long = "mlock")]
    pub mlock: bool,
    /// Read the model into RAM instead of mapping it (same as --load read).
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// KV cache type: f16 (llama.cpp's default) or f32.
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    pub cache_type: String,
    /// Chat template override: a built-in name (chatml, llama2, llama3, mistral, zephyr) or Jinja source.
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    /// Tokenizer for a llama2.c checkpoint: its tokenizer.bin, or a GGUF / HF directory (default: tokenizer.bin beside the model).
    #[arg(long = "tokenizer")]
    pub tokenizer: Option<PathBuf>,
    /// Arithmetic of the forward pass: llamacpp (default; llama.cpp's bits), fast (Q4_1 on
    /// AVX-512 in sixteen-row products: faster, batch-invariant, last bits differ) or runq
    /// (llama2.c runq.c's, bit for bit; llama2.c checkpoints only, F32 KV cache).
    #[arg(long = "numerics", default_value = "llamacpp")]
    pub numerics: String,
}

impl ModelArgs {
    pub fn load_mode(&self) -> Result<LoadMode> {
        if self.mlock && self.no_mmap {
            bail!("--mlock and --no-mmap cannot be combined");
        }
        if self.mlock {
            return Ok(LoadMode::Mlock);
        }
        if self.no_mmap {
            return Ok(LoadMode::Read);
        }
        match self.load.as_str() {
            "auto" | "stream" => Ok(LoadMode::Mmap),
            other => other
                .parse::<LoadMode>()
                .map_err(|e| anyhow::anyhow!("--load: {e} (or auto, stream)")),
        }
    }

    /// Whether layers are streamed: `--load stream` forces it, `--load mmap` turns it off.
    pub fn streaming(&self) -> Streaming {
        match self.load.as_str() {
            _ if self.mlock || self.no_mmap => Streaming::Off,
            "stream" => Streaming::Force,
            "auto" => Streaming::Auto,
            _ => Streaming::Off,
        }
    }

    pub fn options(&self) -> Result<LoadOptions> {
        let cache_type: CacheType = self
            .cache_type
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--cache-type: {e}"))?;
        let mut o = LoadOptions {
            load: self.load_mode()?,
            streaming: self.streaming(),
            max_ram: self.max_ram,
            cache_type,
            chat_template: self.chat_template.clone(),
            tokenizer: self.tokenizer.clone(),
            numerics: self
                .numerics
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--numerics: {e}"))?,
            ..Default::default()
        };
        match self.ctx_size {
            Some(0) => bail!("-c/--ctx-size must be at least 1"),
            Some(c) => o.n_ctx_hint = c,
            None => {}
        }
        if let Some(t) = self.threads {
            if t == 0 {
                bail!("-t/--threads must be at least 1");
            }
            o.n_threads = t;
        }
        Ok(o)
    }

    pub fn open(&self) -> Result<Model> {
        let opts = self.options()?;
        Model::load(&self.model, &opts)
            .with_context(|| format!("cannot load model {}", self.model.display()))
    }

    /// The context size to use for `model`.
    pub fn n_ctx(&self, model: &Model) -> Result<usize> {
        match self.ctx_size {
            Some(0) => bail!("-c/--ctx-size must be at least 1"),
            Some(c) => Ok(c),
            None => Ok(model.config.n_ctx_train.clamp(1, 4096)),
        }
    }
}

/// A byte size: `512M`, `1.5G`, `2GiB`, `300MB` or plain bytes. K/M/G/T (with or without a
/// trailing B) are decimal like the sizes outcore prints; KiB/MiB/GiB/TiB are binary.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let x: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 512M, 1.5G, 2GiB, 1000000)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "`{s}`: unknown unit `{u}` (use K, M, G, T or KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let v = (x * mult).round();
    if !v.is_finite() || v < 1.0 || v >= u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 means greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 disables).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1.0 disables).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0 disables).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1.0 disables).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// RNG seed (same seed, same output).
    #[arg(short = 's', long = "seed", default_value_t = 0x5eed)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn params(&self) -> Result<SamplingParams> {
        if !self.temp.is_finite() || self.temp < 0.0 {
            bail!("--temp must be a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            bail!("--top-p must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            bail!("--min-p must be in [0, 1]");
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            bail!("--repeat-penalty must be > 0");
        }
        Ok(SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        })
    }
}

/// Parses "1,2,3" into token ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<u32>()
                .with_context(|| format!("--ids: `{x}` is not a token id"))
        })
        .collect()
}

/// The prompt's token ids: from --ids, or the text tokenized with the model's tokenizer.
pub fn prompt_ids(
    model: &Model,
    text: Option<&str>,
    ids: Option<&str>,
    parse_special: bool,
) -> Result<Vec<u32>> {
    let ids = match (text, ids) {
        (Some(_), Some(_)) => bail!("give either a prompt or --ids, not both"),
        (None, Some(ids)) => parse_ids(ids)?,
        (Some(text), None) => {
            let tok = model
                .tokenizer()
                .context("this model has no tokenizer (no tokenizer.json / tokenizer metadata); pass token ids with --ids")?;
            tok.encode(text, true, parse_special)
        }
        (None, None) => bail!("no prompt: give -p PROMPT, -f FILE or --ids 1,2,3"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty (0 tokens)");
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= model.config.n_vocab) {
        bail!(
            "token id {bad} is out of range (vocabulary of {})",
            model.config.n_vocab
        );
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512_000_000));
        assert_eq!(parse_size("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("300mb"), Ok(300_000_000));
        assert_eq!(parse_size("123456"), Ok(123_456));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("1e30G").is_err());
    }
}
