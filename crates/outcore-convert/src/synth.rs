//! Random models with the real shapes of a size class, for benchmarks and memory tests: the
//! vocabulary and tokenizer come from a donor model so the result runs end to end.
//!
//! Weights are approximately N(0, 0.02²) (biases too; Irwin-Hall, see [`SynthRows`]), norms are 1. Each row is drawn from its own generator
//! seeded by (seed, tensor, row), so the output does not depend on thread count or chunking, and
//! the GGUF of a seed equals the GGUF converted from the safetensors of the same seed (llama q/k
//! rows are permuted the way the converter permutes them). Written one tensor at a time, one row
//! block at a time: an 8B model needs no 8B of RAM.

use std::path::{Path, PathBuf};

use outcore_format::gguf::GgufFile;
use outcore_format::{GgmlType, LoadMode, Metadata, Value};
use serde_json::{json, Map, Value as Json};

use crate::convert::{ModeChoice, Report};
use crate::error::{ConvertError, Result};
use crate::hf::{Arch, HfConfig, RopeScaling};
use crate::mix::{choose_type, FileType, MixContext};
use crate::names::{self, permuted_source_row};
use crate::pipeline::{self, OutTensor, Progress, RowSource, VecRows};
use crate::st_writer::SafetensorsWriter;
use crate::vocab::Vocab;

/// Output container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthFormat {
    Gguf,
    Safetensors,
}

#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub arch: Arch,
    /// "135M", "1B", "1.7B", "3B" or "8B".
    pub params: String,
    /// File type for GGUF; f32/f16/bf16 for safetensors.
    pub ftype: FileType,
    pub output: PathBuf,
    pub format: SynthFormat,
    pub shard_size: u64,
    pub seed: u64,
    /// A GGUF (its `tokenizer.*` metadata) or an HF directory (its tokenizer files).
    pub donor: PathBuf,
    pub force: bool,
    pub mode: ModeChoice,
    pub threads: usize,
}

/// (hidden, layers, heads, kv heads, ffn, tied, rope theta, context, llama3 rope scaling)
type Shape = (u64, u64, u64, u64, u64, bool, f64, u64, bool);

/// The size classes: Llama 3.2 1B/3B, Llama 3.1 8B, SmolLM2-135M/1.7B; Qwen2.5 0.5B/1.5B/3B/7B.
pub fn size_class(arch: Arch, params: &str) -> Result<Shape> {
    let p = params.to_ascii_uppercase();
    let s = match (arch, p.as_str()) {
        // A few-MB model for tests: rows of 256 exercise the k-quants.
        (Arch::Llama, "TINY") => (256, 2, 4, 2, 512, false, 10000.0, 256, false),
        (Arch::Qwen2, "TINY") => (256, 2, 4, 2, 512, true, 1000000.0, 256, false),
        (Arch::Llama, "135M") => (576, 30, 9, 3, 1536, true, 100000.0, 8192, false),
        (Arch::Llama, "1B") => (2048, 16, 32, 8, 8192, true, 500000.0, 131072, true),
        // SmolLM2-1.7B: the demo model's big sibling (same vocabulary), ~1.8 GB in Q8_0.
        (Arch::Llama, "1.7B") => (2048, 24, 32, 32, 8192, true, 130000.0, 8192, false),
        (Arch::Llama, "3B") => (3072, 28, 24, 8, 8192, true, 500000.0, 131072, true),
        (Arch::Llama, "8B") => (4096, 32, 32, 8, 14336, false, 500000.0, 131072, true),
        (Arch::Qwen2, "135M") => (896, 24, 14, 2, 4864, true, 1000000.0, 32768, false),
        (Arch::Qwen2, "1B") => (1536, 28, 12, 2, 8960, true, 1000000.0, 32768, false),
        (Arch::Qwen2, "3B") => (2048, 36, 16, 2, 11008, true, 1000000.0, 32768, false),
        (Arch::Qwen2, "8B") => (3584, 28, 28, 4, 18944, false, 1000000.0, 32768, false),
        _ => {
            return Err(ConvertError::Invalid {
                what: format!(
                    "unknown size class `{params}` (expected 135M, 1B, 1.7B, 3B, 8B, or tiny for tests)"
                ),
            })
        }
    };
    Ok(s)
}

/// The donor's vocabulary as GGUF metadata, its size, and (for an HF donor) its directory.
struct Donor {
    metadata: Vec<(String, Value)>,
    n_vocab: u64,
}

fn load_donor(path: &Path) -> Result<Donor> {
    if path.is_dir() {
        let cfg = HfConfig::load(path)?;
        let v = Vocab::load(path, cfg.n_vocab, &cfg.token_ids, None)?.ok_or_else(|| {
            ConvertError::NoTokenizer {
                dir: path.to_path_buf(),
            }
        })?;
        return Ok(Donor {
            n_vocab: v.tokens.len() as u64,
            metadata: v.gguf_metadata(),
        });
    }
    let g = GgufFile::open(path, LoadMode::Mmap)?;
    let n_vocab = g.metadata.get_str_array("tokenizer.ggml.tokens")?.len() as u64;
    let metadata = g
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Ok(Donor { metadata, n_vocab })
}

/// The config of a synthetic model (as if read from its config.json).
pub fn synth_config(arch: Arch, params: &str, n_vocab: u64) -> Result<HfConfig> {
    let (n_embd, n_layer, n_head, n_head_kv, n_ff, tied, theta, ctx, llama3) =
        size_class(arch, params)?;
    Ok(HfConfig {
        path: PathBuf::from("config.json"),
        hf_arch: match arch {
            Arch::Llama => "LlamaForCausalLM".into(),
            Arch::Qwen2 => "Qwen2ForCausalLM".into(),
        },
        arch,
        n_vocab,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim_explicit: None,
        n_ff,
        n_ctx: Some(ctx),
        rms_eps: Some(if arch == Arch::Qwen2 { 1e-6 } else { 1e-5 }),
        rope_theta: Some(theta),
        rope_scaling: if llama3 {
            RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_ctx: 8192.0,
            }
        } else {
            RopeScaling::None
        },
        tie_word_embeddings: tied,
        qkv_bias: arch == Arch::Qwen2,
        token_ids: Vec::new(),
    })
}

/// SplitMix64: seeds and mixes.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// xoshiro256++ for one row.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut s = [0u64; 4];
        let mut x = seed;
        for v in &mut s {
            x = splitmix(x);
            *v = x;
        }
        Rng(s)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
}

/// Random rows of one tensor (by its HF row order; `permute` maps GGUF rows to HF rows).
struct SynthRows {
    seed: u64,
    tensor: u64,
    row_len: usize,
    /// Norm weights: all ones.
    ones: bool,
    std: f32,
    permute: Option<u64>,
    one_d_permute: bool,
    /// f32 bytes generated (counted as "input" for progress).
    bytes: u64,
}

impl SynthRows {
    fn row(&self, hf_row: u64, out: &mut [f32]) {
        if self.ones {
            out.fill(1.0);
            return;
        }
        let mut rng = Rng::new(splitmix(
            self.seed ^ splitmix(self.tensor.wrapping_mul(0x1_0000_0001) ^ hf_row),
        ));
        // Irwin-Hall: the sum of four uniforms (16 bits each, one u64 per value) is close to a
        // normal of mean 2 and variance 1/3, bounded at +-3.5 sigma, and an order of magnitude
        // cheaper than Box-Muller.
        let scale = self.std * 3f32.sqrt();
        for o in out.iter_mut() {
            let h = rng.next_u64();
            let sum = (h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48);
            *o = ((sum as f32 + 2.0) / 65536.0 - 2.0) * scale;
        }
    }
}

impl RowSource for SynthRows {
    fn fill(&self, first: usize, out: &mut [f32]) -> Result<()> {
        if self.one_d_permute {
            let mut hf = vec![0f32; out.len()];
            self.row(first as u64, &mut hf);
            let rph = self.permute.expect("set with one_d_permute");
            for (i, o) in out.iter_mut().enumerate() {
                *o = hf[permuted_source_row(i as u64, rph) as usize];
            }
            return Ok(());
        }
        for (i, row) in out.chunks_exact_mut(self.row_len).enumerate() {
            let dst = (first + i) as u64;
            let src = match self.permute {
                Some(rph) => permuted_source_row(dst, rph),
                None => dst,
            };
            self.row(src, row);
        }
        Ok(())
    }

    fn row_align(&self) -> usize {
        match self.permute {
            Some(r) if !self.one_d_permute => r as usize,
            _ => 1,
        }
    }

    fn input_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Parses "2G", "500M", "100MB", "1.5GB", "4096" (decimal units, as transformers' max_shard_size).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| ConvertError::Invalid {
        what: format!("bad size `{s}` (e.g. 2G, 500M)"),
    })?;
    if v.is_nan() || v <= 0.0 {
        return Err(ConvertError::Invalid {
            what: format!("size `{s}` must be positive"),
        });
    }
    Ok((v * mult) as u64)
}

/// Generates a model.
pub fn synth(opts: &SynthOptions, progress: &dyn Progress) -> Result<Report> {
    let donor = load_donor(&opts.donor)?;
    let cfg = synth_config(opts.arch, &opts.params, donor.n_vocab)?;
    let plan: Vec<_> = names::plan(&cfg)
        .into_iter()
        .filter(|p| !(p.optional && cfg.tie_word_embeddings))
        .collect();
    let has_output = plan.iter().any(|p| p.gguf_name == "output.weight");
    let mix = MixContext {
        ftype: opts.ftype,
        n_layer: cfg.n_layer as usize,
        has_output,
        pure: false,
    };
    let st = opts.format == SynthFormat::Safetensors;
    if st && !opts.ftype.is_float() {
        return Err(ConvertError::Invalid {
            what: "--format safetensors writes f32, f16 or bf16 only".into(),
        });
    }
    let mut tensors: Vec<OutTensor<'_>> = Vec::new();
    if !st {
        if let Some(f) = cfg.rope_freqs() {
            tensors.push(OutTensor {
                name: "rope_freqs.weight".into(),
                shape: vec![f.len() as u64],
                ty: GgmlType::F32,
                source: Box::new(VecRows(f)),
            });
        }
    }
    let mut largest = 0u64;
    for (i, p) in plan.iter().enumerate() {
        let gshape = p.gguf_shape();
        let ones = p.gguf_name.ends_with("norm.weight");
        let permute_rows = if st {
            None
        } else {
            p.permute_heads.map(|h| p.hf_shape[0] / h)
        };
        let one_d = gshape.len() == 1;
        let source = Box::new(SynthRows {
            seed: opts.seed,
            tensor: i as u64,
            row_len: gshape[0] as usize,
            ones,
            std: 0.02,
            permute: permute_rows,
            one_d_permute: one_d && permute_rows.is_some(),
            bytes: gshape.iter().product::<u64>() * 4,
        });
        let ty = if st {
            // HF checkpoints store every tensor, norms included, in the checkpoint dtype.
            opts.ftype.base_type()
        } else {
            choose_type(&mix, &p.gguf_name, &gshape, GgmlType::F32)
        };
        largest = largest.max(gshape.iter().product::<u64>() * 4);
        let name = if st {
            p.hf_name.clone()
        } else {
            p.gguf_name.clone()
        };
        tensors.push(OutTensor {
            name,
            shape: gshape,
            ty,
            source,
        });
    }
    let (mode, mode_reason) = opts.mode.resolve(largest);
    let name = format!(
        "synth-{}-{}",
        cfg.arch.gguf_name(),
        opts.params.to_ascii_uppercase()
    );
    let stats = if st {
        let infos: Vec<(String, GgmlType, Vec<u64>)> = tensors
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.ty,
                    t.shape.iter().rev().copied().collect(),
                )
            })
            .collect();
        pipeline::check_encodable(&tensors)?;
        let mut w = SafetensorsWriter::create(&opts.output, opts.force, &infos, opts.shard_size)?;
        write_hf_side_files(&opts.output, &cfg, &opts.donor, opts.ftype, opts.force)?;
        let stats = pipeline::stream(&tensors, &mut w, mode, opts.threads, progress)?;
        w.finish()?;
        stats
    } else {
        if !opts.force && opts.output.exists() {
            return Err(ConvertError::OutputExists {
                path: opts.output.clone(),
            });
        }
        let mut md = Metadata::new();
        for (k, v) in cfg.gguf_metadata(&name, opts.ftype.id()) {
            md.insert(k, v);
        }
        for (k, v) in donor.metadata {
            // As the converter: only llama models carry add_space_prefix.
            if cfg.arch != Arch::Llama && k == "tokenizer.ggml.add_space_prefix" {
                continue;
            }
            md.insert(k, v);
        }
        pipeline::write_gguf(
            &opts.output,
            opts.force,
            &md,
            tensors,
            mode,
            opts.threads,
            progress,
        )?
    };
    Ok(Report {
        stats,
        mode,
        mode_reason,
        peak_rss: crate::pipeline::peak_rss(),
        largest_tensor_f32: largest,
    })
}

/// config.json, generation_config.json and the tokenizer files of a synthetic HF checkpoint.
fn write_hf_side_files(
    dir: &Path,
    cfg: &HfConfig,
    donor: &Path,
    ftype: FileType,
    force: bool,
) -> Result<()> {
    let torch_dtype = match ftype {
        FileType::F16 => "float16",
        FileType::BF16 => "bfloat16",
        _ => "float32",
    };
    let mut c = json!({
        "architectures": [cfg.hf_arch],
        "model_type": cfg.arch.gguf_name(),
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.n_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head_kv,
        "max_position_embeddings": cfg.n_ctx,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "vocab_size": cfg.n_vocab,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "hidden_act": "silu",
        "torch_dtype": torch_dtype,
    });
    if let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_ctx,
    } = cfg.rope_scaling
    {
        c["rope_scaling"] = json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_ctx as u64});
    }
    let write = |name: &str, v: &Json| -> Result<()> {
        let p = dir.join(name);
        if !force && p.exists() {
            return Err(ConvertError::OutputExists { path: p });
        }
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("JSON") + "\n")
            .map_err(|e| ConvertError::io(&p, e))
    };
    if donor.is_dir() {
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
        ] {
            let src = donor.join(f);
            if src.exists() {
                let dst = dir.join(f);
                if !force && dst.exists() {
                    return Err(ConvertError::OutputExists { path: dst });
                }
                std::fs::copy(&src, &dst).map_err(|e| ConvertError::io(&dst, e))?;
            }
        }
        let dc = HfConfig::load(donor)?;
        for (name, id) in &dc.token_ids {
            c[format!("{name}_token_id")] = json!(id);
        }
    } else {
        let g = GgufFile::open(donor, LoadMode::Mmap)?;
        let (tok, tcfg, ids) = hf_tokenizer_from_gguf(&g.metadata, donor)?;
        for (k, v) in ids {
            c[k] = json!(v);
        }
        write("tokenizer.json", &tok)?;
        write("tokenizer_config.json", &tcfg)?;
    }
    write("config.json", &c)
}

/// tokenizer.json + tokenizer_config.json for a GGUF byte-level BPE vocabulary (the inverse of
/// [`Vocab`]): control and user-defined tokens become added tokens, the pre-tokenizer is the HF
/// structure that splits like llama.cpp's `tokenizer.ggml.pre`.
/// tokenizer.json, tokenizer_config.json, and the config.json special ids.
type HfTokenizerFiles = (Json, Json, Vec<(String, u32)>);

fn hf_tokenizer_from_gguf(md: &Metadata, path: &Path) -> Result<HfTokenizerFiles> {
    let err = |problem: String| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        problem,
    };
    if md.get_str("tokenizer.ggml.model")? != "gpt2" {
        return Err(err(
            "only a gpt2 (byte-level BPE) donor vocabulary can be written as tokenizer.json".into(),
        ));
    }
    let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
    let types = md
        .get_int_array("tokenizer.ggml.token_type")
        .unwrap_or_else(|_| vec![1; tokens.len()]);
    let merges = md
        .get_str_array("tokenizer.ggml.merges")
        .map(|m| m.to_vec())
        .unwrap_or_default();
    let pre = md.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let split = |re: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
    };
    let pre_tok = match pre {
        "smollm" | "starcoder" => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]})
        }
        "gpt-2" | "default" => byte_level,
        "llama-bpe" => split(crate::vocab::LLAMA3_REGEX),
        "qwen2" => split(crate::vocab::QWEN2_REGEX_CI),
        other => {
            return Err(err(format!(
                "tokenizer.ggml.pre `{other}` has no tokenizer.json equivalent here"
            )))
        }
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
        let ty = types.get(i).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == 3}));
        }
    }
    let id = |k: &str| md.get_u32(k).ok().filter(|&i| (i as usize) < tokens.len());
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null,
            "unk_token": id("tokenizer.ggml.unknown_token_id").map(|i| tokens[i as usize].clone()),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let mut tcfg = json!({
        "add_bos_token": md.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
        "clean_up_tokenization_spaces": false,
        "tokenizer_class": "GPT2Tokenizer",
    });
    let mut ids = Vec::new();
    for (typ, key, cfg_key) in [
        ("bos", "tokenizer.ggml.bos_token_id", Some("bos_token_id")),
        ("eos", "tokenizer.ggml.eos_token_id", Some("eos_token_id")),
        ("unk", "tokenizer.ggml.unknown_token_id", None),
        (
            "pad",
            "tokenizer.ggml.padding_token_id",
            Some("pad_token_id"),
        ),
    ] {
        if let Some(i) = id(key) {
            tcfg[format!("{typ}_token")] = json!(tokens[i as usize]);
            if let Some(k) = cfg_key {
                ids.push((k.to_string(), i));
            }
        }
    }
    if let Ok(b) = md.get_bool("tokenizer.ggml.add_space_prefix") {
        tcfg["add_prefix_space"] = json!(b);
    }
    if let Ok(b) = md.get_bool("tokenizer.ggml.add_eos_token") {
        tcfg["add_eos_token"] = json!(b);
    }
    if let Ok(t) = md.get_str("tokenizer.chat_template") {
        tcfg["chat_template"] = json!(t);
    }
    Ok((tok, tcfg, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert!(parse_size("x").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn rows_are_reproducible_and_small() {
        let s = SynthRows {
            seed: 7,
            tensor: 3,
            row_len: 64,
            ones: false,
            std: 0.02,
            permute: None,
            one_d_permute: false,
            bytes: 0,
        };
        let (mut a, mut b) = (vec![0f32; 128], vec![0f32; 64]);
        s.fill(0, &mut a).unwrap();
        s.fill(1, &mut b).unwrap();
        assert_eq!(&a[64..], &b[..]);
        let var = a.iter().map(|x| (x * x) as f64).sum::<f64>() / a.len() as f64;
        assert!((var.sqrt() - 0.02).abs() < 0.005, "std {}", var.sqrt());
    }

    #[test]
    fn size_classes_have_real_shapes() {
        let c = synth_config(Arch::Llama, "1B", 128256).unwrap();
        assert_eq!(
            (c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.n_ff),
            (2048, 16, 32, 8, 8192)
        );
        let p: u64 = names::plan(&c)
            .iter()
            .filter(|p| !p.optional)
            .map(|p| p.hf_shape.iter().product::<u64>())
            .sum();
        assert!((1_200_000_000..1_300_000_000).contains(&p), "{p}");
        assert!(synth_config(Arch::Qwen2, "70B", 10).is_err());
    }
}
