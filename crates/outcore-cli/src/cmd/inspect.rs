//! `outcore inspect`: what is in a model file (GGUF, safetensors file or Hugging Face directory)
//! without reading its tensor data. Metadata, a tensor table, bytes per type and per layer,
//! totals; `--json` for machines; `--stats` shows that the file was mapped, not read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use outcore_engine::memory::stats::ProcessStats;
use outcore_format::gguf::GgufFile;
use outcore_format::mapping::{LoadMode, Mapping};
use outcore_format::safetensors::SafetensorsModel;
use outcore_format::{Array, Value};
use serde::Serialize;
use serde_json::json;

#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// A .gguf file, a .safetensors file or a Hugging Face directory.
    pub path: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// After inspecting, print this process's memory (RSS anon/file) and how much of the model
    /// file is resident in RAM.
    #[arg(long)]
    pub stats: bool,
    /// Print bytes per layer (blk.N. / model.layers.N.) as a table.
    #[arg(long = "per-layer")]
    pub per_layer: bool,
    /// Leave out the tensor table.
    #[arg(long = "no-tensors")]
    pub no_tensors: bool,
    /// Print arrays of any length in full (JSON) instead of summarising long ones.
    #[arg(long = "full-arrays")]
    pub full_arrays: bool,
    /// How to open the file: mmap (default), read or mlock.
    #[arg(long = "load", default_value = "mmap")]
    pub load: String,
}

/// Arrays longer than this are summarised as `[type; len]`.
const SHORT_ARRAY: usize = 8;

#[derive(Serialize)]
struct MetaEntry {
    key: String,
    #[serde(rename = "type")]
    ty: String,
    value: serde_json::Value,
    /// What the human table prints.
    #[serde(skip)]
    display: String,
}

#[derive(Serialize)]
struct TensorRow {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    /// ggml order (row length first).
    shape: Vec<u64>,
    n_elements: u64,
    bytes: u64,
    /// Absolute offset in its file.
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<usize>,
}

#[derive(Serialize, Default, Clone)]
struct Bucket {
    n_tensors: usize,
    n_elements: u64,
    bytes: u64,
}

impl Bucket {
    fn add(&mut self, t: &TensorRow) {
        self.n_tensors += 1;
        self.n_elements += t.n_elements;
        self.bytes += t.bytes;
    }
}

#[derive(Serialize)]
struct FileEntry {
    path: PathBuf,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_bytes: Option<u64>,
}

#[derive(Serialize)]
struct MemStats {
    rss_bytes: u64,
    rss_anon_bytes: Option<u64>,
    rss_file_bytes: Option<u64>,
    model_file_bytes: u64,
    /// Pages of the model file(s) in the page cache (mincore; includes pages cached by others).
    model_resident_bytes: u64,
    /// Pages of the model file(s) mapped into this process (Rss of their /proc/self/smaps entries).
    model_mapped_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    path: PathBuf,
    format: &'static str,
    load_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alignment: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_offset: Option<u64>,
    files: Vec<FileEntry>,
    metadata: Vec<MetaEntry>,
    tensors: Vec<TensorRow>,
    by_type: BTreeMap<String, Bucket>,
    per_layer: BTreeMap<u32, Bucket>,
    non_layer: Bucket,
    total: Bucket,
    bits_per_weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<MemStats>,
}

/// The layer number of `blk.N.` / `model.layers.N.` / `layers.N.` names.
fn layer_of(name: &str) -> Option<u32> {
    let rest = ["blk.", "model.layers.", "layers.", "transformer.h."]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let (n, tail) = rest.split_once('.')?;
    if tail.is_empty() {
        return None;
    }
    n.parse().ok()
}

fn array_json(a: &Array, full: bool) -> serde_json::Value {
    let items = |n: usize| -> Vec<serde_json::Value> {
        macro_rules! take {
            ($v:expr) => {
                $v.iter().take(n).map(|x| json!(x)).collect()
            };
        }
        match a {
            Array::U8(v) => take!(v),
            Array::I8(v) => take!(v),
            Array::U16(v) => take!(v),
            Array::I16(v) => take!(v),
            Array::U32(v) => take!(v),
            Array::I32(v) => take!(v),
            Array::F32(v) => take!(v),
            Array::Bool(v) => take!(v),
            Array::String(v) => take!(v),
            Array::U64(v) => take!(v),
            Array::I64(v) => take!(v),
            Array::F64(v) => take!(v),
            Array::Array(v) => v.iter().take(n).map(|x| array_json(x, full)).collect(),
        }
    };
    if full || a.len() <= SHORT_ARRAY {
        serde_json::Value::Array(items(usize::MAX))
    } else {
        json!({ "elem_type": a.elem_type().name(), "len": a.len(), "head": items(SHORT_ARRAY) })
    }
}

fn value_json(v: &Value, full: bool) -> serde_json::Value {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => array_json(a, full),
    }
}

/// Human form: short arrays in full, long ones as `[type; len]`, long strings cut.
fn value_display(v: &Value) -> String {
    match v {
        Value::Array(a) if a.len() <= SHORT_ARRAY && !matches!(a, Array::Array(_)) => {
            let j = array_json(a, true);
            let s = j.to_string();
            if s.len() <= 120 {
                s
            } else {
                v.to_string()
            }
        }
        Value::String(s) if s.contains('\n') || s.len() > 120 => {
            let mut end = s.len().min(60);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{:?}… ({} bytes)", &s[..end], s.len())
        }
        other => other.to_string(),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn is_gguf(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}

fn empty_report(path: &Path, format: &'static str, mode: LoadMode) -> Report {
    Report {
        path: path.to_path_buf(),
        format,
        load_mode: mode.to_string(),
        version: None,
        alignment: None,
        data_offset: None,
        files: Vec::new(),
        metadata: Vec::new(),
        tensors: Vec::new(),
        by_type: BTreeMap::new(),
        per_layer: BTreeMap::new(),
        non_layer: Bucket::default(),
        total: Bucket::default(),
        bits_per_weight: 0.0,
        stats: None,
    }
}

fn gguf_report(f: &GgufFile, mode: LoadMode, full: bool) -> Report {
    let mut r = empty_report(f.path(), "gguf", mode);
    r.version = Some(f.version());
    r.alignment = Some(f.alignment());
    r.data_offset = Some(f.data_offset());
    r.files.push(FileEntry {
        path: f.path().to_path_buf(),
        bytes: f.mapping().len() as u64,
        resident_bytes: None,
    });
    for (k, v) in f.metadata().iter() {
        let ty = match v {
            Value::Array(a) => format!("array<{}>", a.elem_type().name()),
            v => v.value_type().name().to_string(),
        };
        r.metadata.push(MetaEntry {
            key: k.to_string(),
            ty,
            value: value_json(v, full),
            display: value_display(v),
        });
    }
    for t in f.tensor_infos() {
        r.tensors.push(TensorRow {
            name: t.name.clone(),
            ty: t.ty.name().to_string(),
            shape: t.shape.clone(),
            n_elements: t.n_elements(),
            bytes: t.size,
            offset: f.data_offset() + t.offset,
            shard: None,
        });
    }
    r
}

fn safetensors_report(
    path: &Path,
    m: &SafetensorsModel,
    mode: LoadMode,
    full: bool,
) -> Result<Report> {
    let mut r = empty_report(path, "safetensors", mode);
    for s in m.shards() {
        r.files.push(FileEntry {
            path: s.path().to_path_buf(),
            bytes: s.mapping().len() as u64,
            resident_bytes: None,
        });
    }
    // config.json (HF directories) and the shards' __metadata__ as metadata.
    let config = if path.is_dir() {
        Some(path.join("config.json"))
    } else {
        path.parent().map(|d| d.join("config.json"))
    };
    if let Some(cfg) = config.filter(|c| c.is_file()) {
        let text = std::fs::read_to_string(&cfg)
            .with_context(|| format!("cannot read {}", cfg.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", cfg.display()))?;
        if let Some(obj) = json.as_object() {
            for (k, v) in obj {
                let display = match v {
                    serde_json::Value::Array(a) if a.len() > SHORT_ARRAY && !full => {
                        format!("[{}]", a.len())
                    }
                    v => v.to_string(),
                };
                r.metadata.push(MetaEntry {
                    key: format!("config.{k}"),
                    ty: json_type(v).to_string(),
                    value: v.clone(),
                    display,
                });
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in m.shards() {
        for (k, v) in s.metadata() {
            if seen.insert(k.clone()) {
                r.metadata.push(MetaEntry {
                    key: format!("__metadata__.{k}"),
                    ty: "string".into(),
                    value: json!(v),
                    display: format!("{v:?}"),
                });
            }
        }
    }
    for i in m.infos() {
        r.tensors.push(TensorRow {
            name: i.name.clone(),
            ty: i
                .ty
                .map(|t| t.name().to_string())
                .unwrap_or_else(|| i.dtype.clone()),
            shape: i.shape.clone(),
            n_elements: i.shape.iter().product(),
            bytes: i.range.len() as u64,
            offset: i.range.start as u64,
            shard: (m.shards().len() > 1).then_some(i.shard),
        });
    }
    Ok(r)
}

fn summarise(r: &mut Report) {
    for t in &r.tensors {
        r.by_type.entry(t.ty.clone()).or_default().add(t);
        match layer_of(&t.name) {
            Some(l) => r.per_layer.entry(l).or_default().add(t),
            None => r.non_layer.add(t),
        }
        r.total.add(t);
    }
    r.bits_per_weight = if r.total.n_elements > 0 {
        r.total.bytes as f64 * 8.0 / r.total.n_elements as f64
    } else {
        0.0
    };
}

/// Sum of `Rss:` over the `/proc/self/smaps` entries that map one of `paths`.
fn smaps_rss(smaps: &str, paths: &[PathBuf]) -> u64 {
    let mut total = 0u64;
    let mut in_model = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            let path = fields.nth(4).map(Path::new);
            in_model = path.is_some_and(|p| paths.iter().any(|m| m == p));
        } else if in_model && first == "Rss:" {
            total += fields
                .next()
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024;
        }
    }
    total
}

fn mem_stats(mappings: &[&Mapping]) -> Result<MemStats> {
    let p = ProcessStats::now().context("cannot read /proc/self/status")?;
    let mut file_bytes = 0u64;
    let mut resident = 0u64;
    let mut paths = Vec::new();
    for m in mappings {
        file_bytes += m.len() as u64;
        resident += m
            .resident_bytes(0..m.len())
            .with_context(|| format!("mincore on {}", m.path().display()))?;
        paths.push(std::fs::canonicalize(m.path()).unwrap_or_else(|_| m.path().to_path_buf()));
    }
    let mapped = std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .map(|s| smaps_rss(&s, &paths));
    Ok(MemStats {
        rss_bytes: p.mem.vm_rss,
        rss_anon_bytes: p.mem.rss_anon,
        rss_file_bytes: p.mem.rss_file,
        model_file_bytes: file_bytes,
        model_resident_bytes: resident,
        model_mapped_rss_bytes: mapped,
    })
}

/// 1536 -> "1.50 KiB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn opt_human(b: Option<u64>) -> String {
    b.map(human).unwrap_or_else(|| "n/a".into())
}

fn shape_str(shape: &[u64]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

fn render(r: &Report, args: &InspectArgs) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} ({}, load mode {})",
        r.path.display(),
        r.format,
        r.load_mode
    );
    if let Some(v) = r.version {
        let _ = writeln!(
            o,
            "GGUF v{v}, alignment {}, data section at offset {}",
            r.alignment.unwrap_or_default(),
            r.data_offset.unwrap_or_default()
        );
    }
    for f in &r.files {
        let _ = writeln!(
            o,
            "file: {} ({}, {} bytes)",
            f.path.display(),
            human(f.bytes),
            f.bytes
        );
    }

    let _ = writeln!(o, "\nmetadata ({} keys):", r.metadata.len());
    let width = r.metadata.iter().map(|m| m.key.len()).max().unwrap_or(0);
    for m in &r.metadata {
        let _ = writeln!(o, "  {:width$}  {:<14} {}", m.key, m.ty, m.display);
    }

    if !args.no_tensors {
        let _ = writeln!(o, "\ntensors ({}):", r.tensors.len());
        let nw = r
            .tensors
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let sw = r
            .tensors
            .iter()
            .map(|t| shape_str(&t.shape).len())
            .max()
            .unwrap_or(5)
            .max(5);
        let shard_col = r.tensors.iter().any(|t| t.shard.is_some());
        let _ = write!(
            o,
            "  {:nw$}  {:<5}  {:sw$}  {:>12}  {:>12}",
            "name", "type", "shape", "bytes", "offset"
        );
        let _ = writeln!(o, "{}", if shard_col { "  shard" } else { "" });
        for t in &r.tensors {
            let _ = write!(
                o,
                "  {:nw$}  {:<5}  {:sw$}  {:>12}  {:>12}",
                t.name,
                t.ty,
                shape_str(&t.shape),
                t.bytes,
                t.offset
            );
            match t.shard {
                Some(s) => {
                    let _ = writeln!(o, "  {s}");
                }
                None => o.push('\n'),
            }
        }
    }

    let _ = writeln!(o, "\nbytes per type:");
    for (ty, b) in &r.by_type {
        let pct = if r.total.bytes > 0 {
            100.0 * b.bytes as f64 / r.total.bytes as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  {:<6} {:>4} tensors  {:>14} elements  {:>12}  {:5.1}%",
            ty,
            b.n_tensors,
            b.n_elements,
            human(b.bytes),
            pct
        );
    }

    if !r.per_layer.is_empty() {
        if args.per_layer {
            let _ = writeln!(o, "\nbytes per layer:");
            for (l, b) in &r.per_layer {
                let _ = writeln!(
                    o,
                    "  layer {:<4} {:>3} tensors  {:>12}  ({} bytes)",
                    l,
                    b.n_tensors,
                    human(b.bytes),
                    b.bytes
                );
            }
            let nl = &r.non_layer;
            let _ = writeln!(
                o,
                "  other      {:>3} tensors  {:>12}  ({} bytes)",
                nl.n_tensors,
                human(nl.bytes),
                nl.bytes
            );
        } else {
            let min = r.per_layer.values().map(|b| b.bytes).min().unwrap_or(0);
            let max = r.per_layer.values().map(|b| b.bytes).max().unwrap_or(0);
            let _ = writeln!(
                o,
                "\nlayers: {} ({} to {} each; --per-layer for the table); outside layers: {}",
                r.per_layer.len(),
                human(min),
                human(max),
                human(r.non_layer.bytes)
            );
        }
    }

    let _ = writeln!(
        o,
        "\ntotal: {} tensors, {} parameters, {} ({} bytes), {:.2} bits per weight",
        r.total.n_tensors,
        r.total.n_elements,
        human(r.total.bytes),
        r.total.bytes,
        r.bits_per_weight
    );

    if let Some(s) = &r.stats {
        let pct = |b: u64| {
            if s.model_file_bytes > 0 {
                100.0 * b as f64 / s.model_file_bytes as f64
            } else {
                0.0
            }
        };
        let _ = writeln!(
            o,
            "\nmemory: RSS {} (anon {}, file {})",
            human(s.rss_bytes),
            opt_human(s.rss_anon_bytes),
            opt_human(s.rss_file_bytes),
        );
        let _ = writeln!(o, "model file: {}", human(s.model_file_bytes));
        if let Some(m) = s.model_mapped_rss_bytes {
            let _ = writeln!(
                o,
                "  touched by this process (smaps Rss): {} ({:.1}%)",
                human(m),
                pct(m)
            );
        }
        let label = if r.load_mode == "read" {
            "copied into RAM (read mode):    "
        } else {
            "in the page cache (mincore):        "
        };
        let _ = writeln!(
            o,
            "  {label}{} ({:.1}%)",
            human(s.model_resident_bytes),
            pct(s.model_resident_bytes)
        );
    }
    o
}

/// Runs `outcore inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let mode: LoadMode = args
        .load
        .parse()
        .map_err(|e| anyhow::anyhow!("--load: {e}"))?;
    let path = &args.path;
    let use_gguf = !path.is_dir() && is_gguf(path)?;
    let mut report;
    if use_gguf {
        let f = GgufFile::open(path, mode)
            .with_context(|| format!("cannot read GGUF {}", path.display()))?;
        report = gguf_report(&f, mode, args.full_arrays);
        summarise(&mut report);
        if args.stats {
            let s = mem_stats(&[f.mapping()])?;
            report.files[0].resident_bytes = Some(s.model_resident_bytes);
            report.stats = Some(s);
        }
    } else {
        let m = SafetensorsModel::open_with(path, mode)
            .with_context(|| format!("cannot read safetensors {}", path.display()))?;
        report = safetensors_report(path, &m, mode, args.full_arrays)?;
        summarise(&mut report);
        if args.stats {
            let maps: Vec<&Mapping> = m.shards().iter().map(|s| s.mapping()).collect();
            let s = mem_stats(&maps)?;
            for (entry, map) in report.files.iter_mut().zip(&maps) {
                entry.resident_bytes = map.resident_bytes(0..map.len()).ok();
            }
            report.stats = Some(s);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, args));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers() {
        assert_eq!(layer_of("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_of("model.layers.3.mlp.up_proj.weight"), Some(3));
        assert_eq!(layer_of("token_embd.weight"), None);
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert_eq!(layer_of("blk.1."), None);
    }

    #[test]
    fn smaps_rss_sums_model_entries() {
        let smaps = "\
7f00-7f10 r--s 00000000 08:01 1234 /models/m.gguf
Size:                 64 kB
Rss:                  12 kB
7f10-7f20 rw-p 00000000 00:00 0 
Rss:                 100 kB
7f20-7f30 r--s 00010000 08:01 1234 /models/m.gguf
Rss:                   4 kB
";
        assert_eq!(
            smaps_rss(smaps, &[PathBuf::from("/models/m.gguf")]),
            16 * 1024
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(3 << 30), "3.00 GiB");
    }

    #[test]
    fn arrays_are_summarised() {
        let long = Value::Array(Array::String((0..100).map(|i| i.to_string()).collect()));
        assert_eq!(value_display(&long), "[string; 100]");
        let j = value_json(&long, false);
        assert_eq!(j["len"], 100);
        assert_eq!(j["head"].as_array().unwrap().len(), SHORT_ARRAY);
        assert_eq!(value_json(&long, true).as_array().unwrap().len(), 100);
        let short = Value::Array(Array::String(vec!["en".into()]));
        assert_eq!(value_display(&short), "[\"en\"]");
    }

    fn fixtures() -> PathBuf {
        std::env::var_os("OUTCORE_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
            })
    }

    #[test]
    fn inspects_gguf_and_hf_fixtures() {
        let dir = fixtures().join("tiny-llama");
        let base = InspectArgs {
            path: dir.join("tiny-llama.f32.gguf"),
            json: false,
            stats: true,
            per_layer: true,
            no_tensors: false,
            full_arrays: false,
            load: "mmap".into(),
        };
        let f = GgufFile::open(&base.path, LoadMode::Mmap).unwrap();
        let mut r = gguf_report(&f, LoadMode::Mmap, false);
        summarise(&mut r);
        assert_eq!(r.tensors.len(), f.tensor_infos().len());
        assert_eq!(r.total.bytes, f.tensor_bytes());
        assert_eq!(r.by_type["F32"].bytes, r.total.bytes);
        assert!(!r.per_layer.is_empty());
        let layered: u64 = r.per_layer.values().map(|b| b.bytes).sum();
        assert_eq!(layered + r.non_layer.bytes, r.total.bytes);
        let text = render(&r, &base);
        assert!(text.contains("general.architecture"));
        assert!(text.contains("bytes per layer"));
        run(&base).unwrap();

        let m = SafetensorsModel::open(&dir).unwrap();
        let mut s = safetensors_report(&dir, &m, LoadMode::Mmap, false).unwrap();
        summarise(&mut s);
        assert_eq!(s.files.len(), 8);
        assert_eq!(s.total.bytes, m.total_bytes());
        // The HF and GGUF forms of the same weights have the same layer structure.
        assert_eq!(s.per_layer.len(), r.per_layer.len());
        assert!(s.metadata.iter().any(|e| e.key == "config.hidden_size"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["tensors"].as_array().unwrap().len(), m.len());
        run(&InspectArgs {
            path: dir.clone(),
            json: true,
            ..base.clone()
        })
        .unwrap();
        run(&InspectArgs {
            path: fixtures().join("tiny-llama-bf16/model.safetensors"),
            ..base
        })
        .unwrap();
    }
}
