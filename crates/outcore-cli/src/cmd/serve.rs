//! `outcore serve`: the OpenAI-compatible HTTP server.
//!
//! Either one model from flags (`outcore serve -m model.gguf --parallel 4`) or several from a
//! config file (`outcore serve --config outcore.toml`); server-wide flags (`--host`, `--port`,
//! `--api-key`, `--max-queue`, `--max-ram`) override the file.
//!
//! Each model is planned by the engine's planner (the same one `outcore run` and `outcore plan`
//! use): its figure counts against `--max-ram`, and its one-paragraph summary is printed every
//! time the model loads. `SIGHUP` (or `POST /v1/reload`) re-maps models whose files changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use outcore_server::config::{parse_size, ServeNumerics};
use outcore_server::{ModelConfig, ServerConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model to serve: a GGUF file or a Hugging Face directory.
    #[arg(
        short = 'm',
        long = "model",
        conflicts_with = "config",
        required_unless_present = "config"
    )]
    pub model: Option<PathBuf>,
    /// Server config (TOML): server-wide keys and one [models.NAME] table per model.
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// The name clients use for -m's model (default: the file name without its extension).
    #[arg(long = "alias")]
    pub alias: Option<String>,
    /// Address to bind (default 127.0.0.1: loopback only).
    #[arg(long = "host")]
    pub host: Option<String>,
    /// Port to bind (default 8080; 0 picks a free one).
    #[arg(long = "port")]
    pub port: Option<u16>,
    /// Context size per sequence (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub n_ctx: Option<usize>,
    /// Compute threads.
    #[arg(short = 't', long = "threads")]
    pub n_threads: Option<usize>,
    /// Sequences decoded together (continuous batching slots).
    #[arg(long = "parallel", default_value_t = 1)]
    pub parallel: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Requests that may wait for a slot before the server answers 429.
    #[arg(long = "max-queue")]
    pub max_queue: Option<usize>,
    /// Total RAM budget for loaded models, e.g. "4G" (each counted at the engine planner's
    /// figure; least recently used idle models are unloaded to fit).
    #[arg(long = "max-ram")]
    pub max_ram: Option<String>,
    /// Largest request body accepted, e.g. "4M".
    #[arg(long = "max-body")]
    pub max_body: Option<String>,
    /// Unload the model after this many idle seconds (reloaded on the next request).
    #[arg(long = "unload-after-idle")]
    pub unload_after_idle: Option<u64>,
    /// Chat template: a built-in name (chatml, llama3, ...) or a Jinja source.
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
    /// Arithmetic: fast (default; batch-invariant, faster batches) or llamacpp (llama.cpp's
    /// bits).
    #[arg(long = "numerics")]
    pub numerics: Option<String>,
    /// Read the weights into memory instead of mapping them.
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// Lock the mapped weights in RAM.
    #[arg(long = "mlock")]
    pub mlock: bool,
    /// Seconds to let open requests finish after SIGTERM/Ctrl-C.
    #[arg(long = "shutdown-timeout", default_value_t = 10)]
    pub shutdown_timeout: u64,
}

fn size(flag: &str, value: &Option<String>) -> Result<Option<u64>> {
    value
        .as_deref()
        .map(|v| parse_size(v).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .transpose()
}

/// The config the flags (and the file, if any) describe.
pub fn config(args: &ServeArgs) -> Result<ServerConfig> {
    let mut cfg = match (&args.config, &args.model) {
        (Some(path), _) => {
            let model_flags = [
                ("--alias", args.alias.is_some()),
                ("-c/--ctx-size", args.n_ctx.is_some()),
                ("-t/--threads", args.n_threads.is_some()),
                ("--parallel", args.parallel != 1),
                ("--unload-after-idle", args.unload_after_idle.is_some()),
                ("--chat-template", args.chat_template.is_some()),
                ("--numerics", args.numerics.is_some()),
                ("--no-mmap", args.no_mmap),
                ("--mlock", args.mlock),
            ];
            if let Some((flag, _)) = model_flags.iter().find(|(_, set)| *set) {
                bail!("{flag} applies to -m; with --config, set it in the model's [models.NAME] table");
            }
            ServerConfig::from_file(path)?
        }
        (None, Some(path)) => {
            let name = match &args.alias {
                Some(a) => a.clone(),
                None => path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .with_context(|| {
                        format!(
                            "cannot name the model after {}; pass --alias",
                            path.display()
                        )
                    })?,
            };
            let mut m = ModelConfig::new(name.clone(), path.clone());
            m.n_ctx = args.n_ctx;
            m.n_threads = args.n_threads;
            m.parallel = args.parallel;
            m.use_mmap = !args.no_mmap;
            m.use_mlock = args.mlock;
            m.unload_after_idle = args.unload_after_idle.map(Duration::from_secs);
            m.chat_template = args.chat_template.clone();
            if let Some(n) = &args.numerics {
                m.numerics = ServeNumerics::from_name(n).with_context(|| {
                    format!("--numerics: unknown value `{n}` (expected fast or llamacpp)")
                })?;
            }
            let mut cfg = ServerConfig::default();
            cfg.models.insert(name, Arc::new(m));
            cfg
        }
        (None, None) => bail!("give -m MODEL or --config FILE"),
    };
    if let Some(h) = &args.host {
        cfg.host = h.clone();
    }
    if let Some(p) = args.port {
        cfg.port = p;
    }
    if let Some(k) = &args.api_key {
        cfg.api_key = Some(k.clone());
    }
    if let Some(q) = args.max_queue {
        cfg.max_queue = q;
    }
    if let Some(r) = size("--max-ram", &args.max_ram)? {
        cfg.max_ram = Some(r);
    }
    if let Some(b) = size("--max-body", &args.max_body)? {
        cfg.max_body_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    if args.config.is_none() || args.shutdown_timeout != 10 {
        cfg.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    }
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let cfg = config(args)?;
    outcore_server::run(cfg)?;
    Ok(())
}
