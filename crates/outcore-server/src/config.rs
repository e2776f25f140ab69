//! Server configuration: `outcore.toml` (or flags), validated once at start.
//!
//! ```toml
//! host = "127.0.0.1"
//! port = 8080
//! max_ram = "4G"
//! [models.smol]
//! path = "SmolLM2-135M-Instruct.Q4_1.gguf"
//! parallel = 4
//! unload_after_idle_seconds = 300
//! numerics = "fast"   # or "llamacpp": llama.cpp's bits, slower in batches
//! ```
//! Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};
use toml::Spanned;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_MAX_QUEUE: usize = 64;
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PARALLEL: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Parse {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: `{key}`: {reason}")]
    Invalid {
        origin: String,
        key: String,
        reason: String,
    },
}

/// One model the server may load.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub path: PathBuf,
    /// Context per sequence; `None` = the model's training context (capped by the engine adapter).
    pub n_ctx: Option<usize>,
    pub n_threads: Option<usize>,
    pub use_mmap: bool,
    pub use_mlock: bool,
    /// This model's own RAM cap (passed to the engine's planner).
    pub max_ram: Option<u64>,
    /// Sequences decoded together (continuous batching slots).
    pub parallel: usize,
    pub unload_after_idle: Option<Duration>,
    /// A built-in template name or an inline Jinja template.
    pub chat_template: Option<String>,
    /// The forward pass's arithmetic.
    pub numerics: ServeNumerics,
}

/// Arithmetic a served model runs (`numerics = "fast" | "llamacpp"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServeNumerics {
    /// The engine's fast arithmetic: a token's results do not depend on what else is in its
    /// batch (seeded sampling repeats under load) and batches cost less; not llama.cpp's bits.
    #[default]
    Fast,
    /// llama.cpp's CPU arithmetic bit for bit (also batch-invariant, slower in batches).
    Llamacpp,
}

impl ServeNumerics {
    pub fn from_name(s: &str) -> Option<ServeNumerics> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fast" => Some(ServeNumerics::Fast),
            "llamacpp" | "llama.cpp" | "exact" => Some(ServeNumerics::Llamacpp),
            _ => None,
        }
    }
}

impl ModelConfig {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            path: path.into(),
            n_ctx: None,
            n_threads: None,
            use_mmap: true,
            use_mlock: false,
            max_ram: None,
            parallel: 1,
            unload_after_idle: None,
            chat_template: None,
            numerics: ServeNumerics::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Requests waiting for a slot (all models together) before 429s.
    pub max_queue: usize,
    /// Total RAM budget for loaded models.
    pub max_ram: Option<u64>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub models: BTreeMap<String, Arc<ModelConfig>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            api_key: None,
            max_queue: DEFAULT_MAX_QUEUE,
            max_ram: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            models: BTreeMap::new(),
        }
    }
}

/// A byte count written as an integer or a string like "4G", "512M", "1.5GiB".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// Parses "4G", "512M", "1.5GiB", "4096" (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M, G or T)")),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"4G\" or \"512M\""))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes or a string like \"4G\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<Spanned<String>>,
    port: Option<u16>,
    api_key: Option<Spanned<String>>,
    max_queue: Option<Spanned<usize>>,
    max_ram: Option<Spanned<ByteSize>>,
    max_body_bytes: Option<Spanned<ByteSize>>,
    shutdown_timeout_seconds: Option<u64>,
    #[serde(default)]
    models: BTreeMap<String, Spanned<FileModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    path: Spanned<PathBuf>,
    n_ctx: Option<Spanned<usize>>,
    n_threads: Option<Spanned<usize>>,
    use_mmap: Option<bool>,
    use_mlock: Option<Spanned<bool>>,
    max_ram: Option<Spanned<ByteSize>>,
    parallel: Option<Spanned<usize>>,
    unload_after_idle_seconds: Option<Spanned<u64>>,
    chat_template: Option<Spanned<String>>,
    numerics: Option<Spanned<String>>,
}

/// Where a value came from, for messages: "outcore.toml:7" or "command line".
struct Origin<'a> {
    file: &'a str,
    text: Option<&'a str>,
}

impl Origin<'_> {
    fn at(&self, span: Option<std::ops::Range<usize>>) -> String {
        match (self.text, span) {
            (Some(text), Some(span)) => {
                let line = text[..span.start.min(text.len())]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count()
                    + 1;
                format!("{}:{line}", self.file)
            }
            _ => self.file.to_string(),
        }
    }

    fn invalid<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            origin: self.at(span),
            key: key.to_string(),
            reason: reason.into(),
        })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        ServerConfig::from_toml(&text, &path.display().to_string(), base)
    }

    /// Parses and validates TOML text; relative model paths are resolved against `base`.
    pub fn from_toml(text: &str, origin: &str, base: &Path) -> Result<ServerConfig, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let o = Origin {
            file: origin,
            text: Some(text),
        };
        let mut cfg = ServerConfig::default();
        if let Some(h) = file.host {
            cfg.host = h.get_ref().clone();
            if cfg.host.trim().is_empty() {
                return o.invalid(Some(h.span()), "host", "must not be empty");
            }
        }
        if let Some(p) = file.port {
            cfg.port = p;
        }
        if let Some(k) = file.api_key {
            if k.get_ref().is_empty() {
                return o.invalid(
                    Some(k.span()),
                    "api_key",
                    "must not be empty (omit it to disable auth)",
                );
            }
            cfg.api_key = Some(k.into_inner());
        }
        if let Some(q) = file.max_queue {
            if *q.get_ref() == 0 {
                return o.invalid(Some(q.span()), "max_queue", "must be at least 1");
            }
            cfg.max_queue = q.into_inner();
        }
        if let Some(r) = file.max_ram {
            if r.get_ref().0 == 0 {
                return o.invalid(Some(r.span()), "max_ram", "must be more than 0 bytes");
            }
            cfg.max_ram = Some(r.get_ref().0);
        }
        if let Some(b) = file.max_body_bytes {
            if b.get_ref().0 < 1024 {
                return o.invalid(Some(b.span()), "max_body_bytes", "must be at least 1K");
            }
            cfg.max_body_bytes = usize::try_from(b.get_ref().0).unwrap_or(usize::MAX);
        }
        if let Some(s) = file.shutdown_timeout_seconds {
            cfg.shutdown_timeout = Duration::from_secs(s);
        }
        if file.models.is_empty() {
            return o.invalid(
                None,
                "models",
                "no [models.NAME] table: the server needs at least one model",
            );
        }
        for (name, table) in file.models {
            let span = table.span();
            let m = table.into_inner();
            let key = |k: &str| format!("models.{name}.{k}");
            check_model_name(&name).or_else(|reason| {
                o.invalid(Some(span.clone()), &format!("models.{name}"), reason)
            })?;
            let mut path = m.path.get_ref().clone();
            if path.is_relative() {
                path = base.join(path);
            }
            let mut mc = ModelConfig::new(name.clone(), path);
            if !mc.path.exists() {
                return o.invalid(
                    Some(m.path.span()),
                    &key("path"),
                    format!("{} does not exist", mc.path.display()),
                );
            }
            if let Some(v) = m.n_ctx {
                if *v.get_ref() < 8 {
                    return o.invalid(Some(v.span()), &key("n_ctx"), "must be at least 8");
                }
                mc.n_ctx = Some(v.into_inner());
            }
            if let Some(v) = m.n_threads {
                if *v.get_ref() == 0 {
                    return o.invalid(Some(v.span()), &key("n_threads"), "must be at least 1");
                }
                mc.n_threads = Some(v.into_inner());
            }
            mc.use_mmap = m.use_mmap.unwrap_or(true);
            if let Some(v) = m.use_mlock {
                if *v.get_ref() && !mc.use_mmap {
                    return o.invalid(
                        Some(v.span()),
                        &key("use_mlock"),
                        "locks the mapping, so it needs use_mmap = true",
                    );
                }
                mc.use_mlock = v.into_inner();
            }
            if let Some(v) = m.max_ram {
                if v.get_ref().0 == 0 {
                    return o.invalid(Some(v.span()), &key("max_ram"), "must be more than 0 bytes");
                }
                mc.max_ram = Some(v.get_ref().0);
            }
            if let Some(v) = m.parallel {
                let p = *v.get_ref();
                if !(1..=MAX_PARALLEL).contains(&p) {
                    return o.invalid(
                        Some(v.span()),
                        &key("parallel"),
                        format!("must be between 1 and {MAX_PARALLEL}"),
                    );
                }
                mc.parallel = p;
            }
            if let Some(v) = m.unload_after_idle_seconds {
                if *v.get_ref() == 0 {
                    return o.invalid(
                        Some(v.span()),
                        &key("unload_after_idle_seconds"),
                        "must be at least 1 (omit it to keep the model loaded)",
                    );
                }
                mc.unload_after_idle = Some(Duration::from_secs(v.into_inner()));
            }
            if let Some(v) = m.chat_template {
                if v.get_ref().trim().is_empty() {
                    return o.invalid(Some(v.span()), &key("chat_template"), "must not be empty");
                }
                mc.chat_template = Some(v.into_inner());
            }
            if let Some(v) = m.numerics {
                mc.numerics = match ServeNumerics::from_name(v.get_ref()) {
                    Some(n) => n,
                    None => {
                        return o.invalid(
                            Some(v.span()),
                            &key("numerics"),
                            "must be \"fast\" or \"llamacpp\"",
                        )
                    }
                };
            }
            cfg.models.insert(name, Arc::new(mc));
        }
        Ok(cfg)
    }

    /// Checks a config built from flags (the same rules as a file's).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let o = Origin {
            file: "command line",
            text: None,
        };
        if self.host.trim().is_empty() {
            return o.invalid(None, "--host", "must not be empty");
        }
        if self.max_queue == 0 {
            return o.invalid(None, "--max-queue", "must be at least 1");
        }
        if self.models.is_empty() {
            return o.invalid(None, "--model", "no model given");
        }
        for m in self.models.values() {
            check_model_name(&m.name).or_else(|reason| o.invalid(None, "--model-name", reason))?;
            if !m.path.exists() {
                return o.invalid(
                    None,
                    "--model",
                    format!("{} does not exist", m.path.display()),
                );
            }
            if !(1..=MAX_PARALLEL).contains(&m.parallel) {
                return o.invalid(
                    None,
                    "--parallel",
                    format!("must be between 1 and {MAX_PARALLEL}"),
                );
            }
            if m.n_ctx.is_some_and(|n| n < 8) {
                return o.invalid(None, "--ctx-size", "must be at least 8");
            }
            if m.n_threads == Some(0) {
                return o.invalid(None, "--threads", "must be at least 1");
            }
        }
        Ok(())
    }
}

/// Model names appear in URLs (`/v1/models/{id}/unload`), so keep them plain.
fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("a model name must have 1 to 128 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:-".contains(*c)))
    {
        return Err(format!(
            "model name {name:?} has {c:?}; use letters, digits, '.', '_', ':' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_model() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"x").unwrap();
        (dir, p)
    }

    fn err(text: &str) -> String {
        let (dir, _) = dir_with_model();
        ServerConfig::from_toml(text, "outcore.toml", dir.path())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn full_config() {
        let (dir, _) = dir_with_model();
        let text = r#"
host = "0.0.0.0"
port = 9000
api_key = "k"
max_queue = 3
max_ram = "1G"
max_body_bytes = "64K"

[models.smol]
path = "m.gguf"
n_ctx = 512
n_threads = 2
use_mmap = true
use_mlock = false
max_ram = "512M"
parallel = 4
unload_after_idle_seconds = 30
chat_template = "chatml"
"#;
        let c = ServerConfig::from_toml(text, "outcore.toml", dir.path()).unwrap();
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 9000);
        assert_eq!(c.api_key.as_deref(), Some("k"));
        assert_eq!(c.max_queue, 3);
        assert_eq!(c.max_ram, Some(1 << 30));
        assert_eq!(c.max_body_bytes, 64 << 10);
        let m = &c.models["smol"];
        assert_eq!(m.path, dir.path().join("m.gguf"));
        assert_eq!(m.n_ctx, Some(512));
        assert_eq!(m.parallel, 4);
        assert_eq!(m.unload_after_idle, Some(Duration::from_secs(30)));
        assert_eq!(m.chat_template.as_deref(), Some("chatml"));
        assert_eq!(m.max_ram, Some(512 << 20));
    }

    #[test]
    fn defaults() {
        let (dir, _) = dir_with_model();
        let c = ServerConfig::from_toml("[models.a]\npath = \"m.gguf\"\n", "x.toml", dir.path())
            .unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.api_key, None);
        assert_eq!(c.models["a"].parallel, 1);
        assert!(c.models["a"].use_mmap);
        assert_eq!(c.models["a"].numerics, ServeNumerics::Fast);
        let c = ServerConfig::from_toml(
            "[models.a]\npath = \"m.gguf\"\nnumerics = \"llamacpp\"\n",
            "x.toml",
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.models["a"].numerics, ServeNumerics::Llamacpp);
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = err("[models.a]\npath = \"m.gguf\"\nnumerics = \"quick\"\n");
        assert_eq!(
            e, "outcore.toml:3: `models.a.numerics`: must be \"fast\" or \"llamacpp\"",
            "{e}"
        );
        let e = err("[models.a]\npath = \"m.gguf\"\nparallel = 0\n");
        assert_eq!(
            e, "outcore.toml:3: `models.a.parallel`: must be between 1 and 256",
            "{e}"
        );
        let e = err("[models.a]\npath = \"nope.gguf\"\n");
        assert!(
            e.starts_with("outcore.toml:2: `models.a.path`:") && e.contains("does not exist"),
            "{e}"
        );
        let e = err("port = 8080\n[models.a]\npath = \"m.gguf\"\nparalel = 2\n");
        assert!(
            e.starts_with("outcore.toml:4:") && e.contains("unknown field `paralel`"),
            "{e}"
        );
        let e = err("port = \"eighty\"\n[models.a]\npath = \"m.gguf\"\n");
        assert!(
            e.starts_with("outcore.toml:1:") && e.contains("invalid type"),
            "{e}"
        );
        let e = err("port = 70000\n[models.a]\npath = \"m.gguf\"\n");
        assert!(e.starts_with("outcore.toml:1:"), "{e}");
        let e = err("max_ram = \"4X\"\n[models.a]\npath = \"m.gguf\"\n");
        assert!(
            e.starts_with("outcore.toml:1:") && e.contains("unit"),
            "{e}"
        );
        let e = err("[models.a]\nn_ctx = 5\n");
        assert!(
            e.starts_with("outcore.toml:1:") && e.contains("missing field `path`"),
            "{e}"
        );
        let e = err("[models.a]\npath = \"m.gguf\"\nn_ctx = 4\n");
        assert!(e.contains("`models.a.n_ctx`"), "{e}");
        let e = err("[models.\"a/b\"]\npath = \"m.gguf\"\n");
        assert!(e.contains("`models.a/b`"), "{e}");
        let e = err("port = 1\n");
        assert!(e.contains("`models`"), "{e}");
        let e = err("[models.a]\npath = \"m.gguf\"\nuse_mmap = false\nuse_mlock = true\n");
        assert!(e.starts_with("outcore.toml:4: `models.a.use_mlock`"), "{e}");
        let e = err("[models.a\npath = 1");
        assert!(e.starts_with("outcore.toml:1:"), "{e}");
    }

    #[test]
    fn flags_validate() {
        let (_dir, p) = dir_with_model();
        let mut c = ServerConfig::default();
        c.models
            .insert("m".into(), Arc::new(ModelConfig::new("m", &p)));
        c.validate().unwrap();
        let mut bad = ModelConfig::new("m", &p);
        bad.parallel = 0;
        c.models.insert("m".into(), Arc::new(bad));
        assert!(c.validate().unwrap_err().to_string().contains("--parallel"));
    }
}
