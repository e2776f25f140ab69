//! A Hugging Face checkpoint's `config.json`, read into the hyperparameters the converter needs and
//! turned into GGUF metadata the way llama.cpp's `convert_hf_to_gguf.py` writes it
//! (`TextModel.set_gguf_parameters`, `LlamaModel`, `Qwen2Model`).

use std::path::{Path, PathBuf};

use outcore_format::{Array, Value};
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// The GGUF architecture a checkpoint converts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` and `MistralForCausalLM` (llama.cpp stores Mistral as llama). q/k permuted.
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v biases, NeoX RoPE, no permutation.
    Qwen2,
}

impl Arch {
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// llama.cpp reorders q/k rows for llama's interleaved RoPE (not for qwen2's NeoX RoPE).
    pub fn permutes_qk(self) -> bool {
        self == Arch::Llama
    }

    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "llama" | "mistral" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }
}

/// RoPE scaling as declared in config.json (`rope_scaling`, or transformers 5's `rope_parameters`).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Yarn {
        factor: f64,
        original_ctx: Option<u64>,
    },
    /// Llama 3.1+: per-frequency factors, written as the `rope_freqs.weight` tensor.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_ctx: f64,
    },
}

/// The hyperparameters of a llama-family checkpoint.
#[derive(Clone, Debug)]
pub struct HfConfig {
    pub path: PathBuf,
    pub hf_arch: String,
    pub arch: Arch,
    pub n_vocab: u64,
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    /// `head_dim` when config.json states it.
    pub head_dim_explicit: Option<u64>,
    pub n_ff: u64,
    pub n_ctx: Option<u64>,
    pub rms_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: RopeScaling,
    pub tie_word_embeddings: bool,
    /// q/k/v biases (qwen2 always; llama with `attention_bias: true`).
    pub qkv_bias: bool,
    /// `bos_token_id` etc. from config.json (fallbacks for the tokenizer's special ids).
    pub token_ids: Vec<(&'static str, u32)>,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ConvertError::Missing {
                path: path.to_path_buf(),
                what: "config.json of an HF checkpoint",
            }
        } else {
            ConvertError::io(path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|source| ConvertError::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl HfConfig {
    /// Reads `DIR/config.json`.
    pub fn load(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        let json = read_json(&path)?;
        Self::from_json(&json, &path)
    }

    pub fn from_json(json: &Json, path: &Path) -> Result<HfConfig> {
        let bad = |key: &str, problem: &str| ConvertError::BadConfig {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: problem.to_string(),
        };
        let hf_arch = json
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .unwrap_or("")
            .to_string();
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let arch = match hf_arch.as_str() {
            "LlamaForCausalLM" | "MistralForCausalLM" => Arch::Llama,
            "Qwen2ForCausalLM" => Arch::Qwen2,
            "" => Arch::parse(model_type).ok_or_else(|| ConvertError::UnsupportedArch {
                arch: format!("model_type {model_type:?}"),
            })?,
            other => {
                return Err(ConvertError::UnsupportedArch {
                    arch: other.to_string(),
                })
            }
        };
        let uint = |key: &str| -> Result<Option<u64>> {
            match json.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad(key, "is not a non-negative integer")),
            }
        };
        let need = |key: &str| -> Result<u64> {
            let v = uint(key)?.ok_or_else(|| bad(key, "is missing"))?;
            if v == 0 {
                return Err(bad(key, "is zero"));
            }
            Ok(v)
        };
        let float = |key: &str| -> Result<Option<f64>> {
            match json.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(key, "is not a number")),
            }
        };
        let n_embd = need("hidden_size")?;
        let n_head = need("num_attention_heads")?;
        let n_head_kv = uint("num_key_value_heads")?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(
                "num_key_value_heads",
                &format!("= {n_head_kv} does not divide num_attention_heads {n_head}"),
            ));
        }
        let head_dim_explicit = uint("head_dim")?;
        if head_dim_explicit.is_none() && n_embd % n_head != 0 {
            return Err(bad(
                "hidden_size",
                &format!("= {n_embd} is not a multiple of num_attention_heads {n_head}"),
            ));
        }
        let rope_params = json.get("rope_parameters").filter(|v| v.is_object());
        let rope_theta = float("rope_theta")?.or_else(|| {
            rope_params
                .and_then(|p| p.get("rope_theta"))
                .and_then(|v| v.as_f64())
        });
        let scaling = json
            .get("rope_scaling")
            .filter(|v| v.is_object())
            .or(rope_params);
        let rope_scaling = match scaling {
            Some(s) => parse_rope_scaling(s),
            None => RopeScaling::None,
        };
        let mut token_ids = Vec::new();
        for (key, name) in [
            ("bos_token_id", "bos"),
            ("eos_token_id", "eos"),
            ("unk_token_id", "unk"),
            ("sep_token_id", "sep"),
            ("pad_token_id", "pad"),
            ("mask_token_id", "mask"),
        ] {
            // eos_token_id may be a list (Llama 3.1); llama.cpp's SpecialVocab takes the first.
            let v = match json.get(key) {
                Some(Json::Array(a)) => a.first().and_then(|x| x.as_u64()),
                Some(v) => v.as_u64(),
                None => None,
            };
            if let Some(id) = v.and_then(|x| u32::try_from(x).ok()) {
                token_ids.push((name, id));
            }
        }
        let cfg = HfConfig {
            path: path.to_path_buf(),
            hf_arch: if hf_arch.is_empty() {
                model_type.to_string()
            } else {
                hf_arch
            },
            arch,
            n_vocab: need("vocab_size")?,
            n_embd,
            n_layer: need("num_hidden_layers")?,
            n_head,
            n_head_kv,
            head_dim_explicit,
            n_ff: need("intermediate_size")?,
            n_ctx: uint("max_position_embeddings")?,
            rms_eps: float("rms_norm_eps")?,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2
                || json
                    .get("attention_bias")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            token_ids,
        };
        if cfg.head_dim() == 0 || !cfg.head_dim().is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                &format!("= {} must be even and nonzero", cfg.head_dim()),
            ));
        }
        if cfg.n_layer > 4096
            || cfg.n_embd > (1 << 20)
            || cfg.n_ff > (1 << 22)
            || cfg.n_vocab > (1 << 24)
        {
            return Err(bad("hidden_size", "implausibly large dimensions"));
        }
        Ok(cfg)
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim_explicit.unwrap_or(self.n_embd / self.n_head)
    }

    /// GGUF metadata for the hyperparameters, in the order llama.cpp writes them.
    /// `name` is `general.name`; `file_type` is `general.file_type`.
    pub fn gguf_metadata(&self, name: &str, file_type: u32) -> Vec<(String, Value)> {
        let a = self.arch.gguf_name();
        let k = |s: &str| format!("{a}.{s}");
        let mut md: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(a.into())),
            ("general.type".into(), Value::String("model".into())),
            ("general.name".into(), Value::String(name.into())),
            ("general.quantization_version".into(), Value::U32(2)),
            ("general.file_type".into(), Value::U32(file_type)),
            (k("block_count"), Value::U32(self.n_layer as u32)),
        ];
        if let Some(n_ctx) = self.n_ctx {
            md.push((k("context_length"), Value::U32(n_ctx as u32)));
        }
        md.push((k("embedding_length"), Value::U32(self.n_embd as u32)));
        md.push((k("feed_forward_length"), Value::U32(self.n_ff as u32)));
        md.push((k("attention.head_count"), Value::U32(self.n_head as u32)));
        md.push((
            k("attention.head_count_kv"),
            Value::U32(self.n_head_kv as u32),
        ));
        if let Some(theta) = self.rope_theta {
            md.push((k("rope.freq_base"), Value::F32(theta as f32)));
        }
        if let Some(eps) = self.rms_eps {
            md.push((
                k("attention.layer_norm_rms_epsilon"),
                Value::F32(eps as f32),
            ));
        }
        // Newer converters write these for llama even when config.json only implies the head size.
        if self.head_dim_explicit.is_some() || self.arch == Arch::Llama {
            md.push((
                k("attention.key_length"),
                Value::U32(self.head_dim() as u32),
            ));
            md.push((
                k("attention.value_length"),
                Value::U32(self.head_dim() as u32),
            ));
        }
        if self.arch == Arch::Llama {
            md.push((k("vocab_size"), Value::U32(self.n_vocab as u32)));
            md.push((
                k("rope.dimension_count"),
                Value::U32(self.head_dim() as u32),
            ));
        }
        match &self.rope_scaling {
            RopeScaling::Linear { factor } => {
                md.push((k("rope.scaling.type"), Value::String("linear".into())));
                md.push((k("rope.scaling.factor"), Value::F32(*factor as f32)));
            }
            RopeScaling::Yarn {
                factor,
                original_ctx,
            } => {
                md.push((k("rope.scaling.type"), Value::String("yarn".into())));
                md.push((k("rope.scaling.factor"), Value::F32(*factor as f32)));
                if let Some(o) = original_ctx {
                    md.push((
                        k("rope.scaling.original_context_length"),
                        Value::U32(*o as u32),
                    ));
                }
            }
            RopeScaling::None | RopeScaling::Llama3 { .. } => {}
        }
        md
    }

    /// Llama 3's `rope_freqs.weight` (one factor per rotated pair), as `LlamaModel.generate_extra_tensors`
    /// computes it; None for other RoPE scalings.
    pub fn rope_freqs(&self) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_ctx,
        } = self.rope_scaling
        else {
            return None;
        };
        let base = self.rope_theta.unwrap_or(10000.0);
        let dim = self.head_dim();
        let low_wavelen = original_ctx / low_freq_factor;
        let high_wavelen = original_ctx / high_freq_factor;
        // torch does all of this on 0-d f32 tensors: every operation rounds to f32, and Python
        // floats meeting a tensor are first rounded to f32 themselves.
        let out = (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0f32 / (base as f32).powf(i as f32 / dim as f32);
                let wavelen = (2.0 * std::f64::consts::PI) as f32 / freq;
                if (wavelen as f64) < high_wavelen {
                    1.0
                } else if (wavelen as f64) > low_wavelen {
                    factor as f32
                } else {
                    let smooth = ((original_ctx as f32) / wavelen - low_freq_factor as f32)
                        / (high_freq_factor - low_freq_factor) as f32;
                    1.0f32 / ((1.0f32 - smooth) / factor as f32 + smooth)
                }
            })
            .collect();
        Some(out)
    }
}

fn parse_rope_scaling(s: &Json) -> RopeScaling {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let num = |k: &str| s.get(k).and_then(|v| v.as_f64());
    match kind {
        "linear" => match num("factor") {
            Some(factor) => RopeScaling::Linear { factor },
            None => RopeScaling::None,
        },
        "yarn" => match num("factor") {
            Some(factor) => RopeScaling::Yarn {
                factor,
                original_ctx: num("original_max_position_embeddings").map(|x| x as u64),
            },
            None => RopeScaling::None,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor").unwrap_or(8.0),
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_ctx: num("original_max_position_embeddings").unwrap_or(8192.0),
        },
        _ => RopeScaling::None,
    }
}

/// `general.name` for a checkpoint directory: its last path component (as llama.cpp's metadata
/// heuristics fall back to).
pub fn default_name(dir: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canon
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Helper for callers that build string-array metadata.
pub fn str_array(v: Vec<String>) -> Value {
    Value::Array(Array::String(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_rope_freqs_shape_and_range() {
        let json: Json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "num_attention_heads": 32,
            "num_key_value_heads": 8, "num_hidden_layers": 16, "intermediate_size": 8192, "vocab_size": 128256,
            "rope_theta": 500000.0, "head_dim": 64,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        });
        let cfg = HfConfig::from_json(&json, Path::new("config.json")).unwrap();
        let f = cfg.rope_freqs().unwrap();
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[31], 32.0);
        assert!(f.iter().all(|&x| (1.0..=32.0).contains(&x)));
    }

    /// Bit for bit what llama.cpp's converter (torch) wrote for Llama 3.2 3B's rope settings
    /// (head_dim 128, theta 5e5, llama3 factor 32): the transition band, indices 28..37.
    #[test]
    fn llama3_rope_freqs_match_llama_cpp_bits() {
        let json: Json = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 3072, "num_attention_heads": 24,
            "num_key_value_heads": 8, "num_hidden_layers": 28, "intermediate_size": 8192, "vocab_size": 49152,
            "rope_theta": 500000.0,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        });
        let cfg = HfConfig::from_json(&json, Path::new("config.json")).unwrap();
        let f = cfg.rope_freqs().unwrap();
        let bits: Vec<u32> = f[28..37].iter().map(|x| x.to_bits()).collect();
        assert_eq!(
            bits,
            [
                0x3f800000, 0x3f9e126b, 0x3fd35ec2, 0x4011b4ca, 0x4052b46f, 0x40a57db9, 0x411aaaee,
                0x42000000, 0x42000000
            ]
        );
    }

    #[test]
    fn v5_rope_parameters_and_errors() {
        let json: Json = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 160, "vocab_size": 512,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}
        });
        let cfg = HfConfig::from_json(&json, Path::new("c.json")).unwrap();
        assert_eq!(cfg.rope_theta, Some(1e6));
        assert_eq!(cfg.rope_scaling, RopeScaling::None);
        assert!(cfg.qkv_bias);
        let bad: Json = serde_json::json!({"architectures": ["GPT2LMHeadModel"]});
        assert!(matches!(
            HfConfig::from_json(&bad, Path::new("c.json")),
            Err(ConvertError::UnsupportedArch { .. })
        ));
        let bad: Json =
            serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64});
        assert!(matches!(
            HfConfig::from_json(&bad, Path::new("c.json")),
            Err(ConvertError::BadConfig { .. })
        ));
    }
}
