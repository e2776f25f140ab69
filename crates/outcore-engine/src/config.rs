//! `ModelConfig`: the hyperparameters of a llama-family model, read from GGUF metadata or an HF config.json.

use outcore_format::{Metadata, MetadataError};
use serde::Serialize;

use crate::error::EngineError;

/// Architectures the forward pass implements (as `general.architecture` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// llama, and models stored as llama (Mistral, TinyLlama, SmolLM2, Llama 2/3).
    Llama,
    /// mistral (older llama.cpp conversions use their own architecture name; same graph as llama).
    Mistral,
    /// qwen2: q/k/v biases, NeoX RoPE.
    Qwen2,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "mistral" => Some(Arch::Mistral),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// llama.cpp's "normal": pairs (2i, 2i+1) (llama GGUFs, whose q/k rows were permuted by the converter).
    Interleaved,
    /// NeoX / HF rotate-half: pairs (i, i + d/2) (qwen2, and HF llama checkpoints loaded directly).
    Neox,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub name: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// 1 / linear scaling factor (1.0 when unscaled), as ggml's freq_scale.
    pub rope_freq_scale: f32,
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    pub n_ctx_train: usize,
    /// q/k/v projections carry biases (qwen2).
    pub qkv_bias: bool,
}

fn key(arch: &str, k: &str) -> String {
    format!("{arch}.{k}")
}

fn meta_err(arch: &str, e: MetadataError) -> EngineError {
    EngineError::Metadata {
        arch: arch.to_string(),
        source: e,
    }
}

impl ModelConfig {
    /// Reads the hyperparameters from GGUF metadata (`general.architecture` names the prefix).
    pub fn from_gguf(
        md: &Metadata,
        n_vocab_from_tokens: Option<usize>,
    ) -> Result<ModelConfig, EngineError> {
        let arch_name = md
            .get_str("general.architecture")
            .map_err(|e| meta_err("?", e))?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| EngineError::UnsupportedArch {
            arch: arch_name.to_string(),
        })?;
        let a = arch_name;
        let e = |err| meta_err(a, err);
        let n_embd = md.get_usize(&key(a, "embedding_length")).map_err(e)?;
        let n_layer = md.get_usize(&key(a, "block_count")).map_err(e)?;
        let n_head = md.get_usize(&key(a, "attention.head_count")).map_err(e)?;
        let n_head_kv = match md.opt_u32(&key(a, "attention.head_count_kv")).map_err(e)? {
            Some(v) => v as usize,
            None => n_head,
        };
        let n_ff = md.get_usize(&key(a, "feed_forward_length")).map_err(e)?;
        let rms_eps = md
            .get_f32(&key(a, "attention.layer_norm_rms_epsilon"))
            .map_err(e)?;
        let rope_base = md
            .opt_f32(&key(a, "rope.freq_base"))
            .map_err(e)?
            .unwrap_or(10000.0);
        let mut rope_freq_scale = 1.0f32;
        if let Some(kind) = md.opt_str(&key(a, "rope.scaling.type")).map_err(e)? {
            match kind {
                "none" => {}
                "linear" => {
                    let f = md
                        .opt_f32(&key(a, "rope.scaling.factor"))
                        .map_err(e)?
                        .unwrap_or(1.0);
                    if f > 0.0 {
                        rope_freq_scale = 1.0 / f;
                    }
                }
                other => {
                    return Err(EngineError::Unsupported {
                        what: format!("rope scaling type `{other}` ({a}.rope.scaling.type)"),
                    })
                }
            }
        } else if let Some(f) = md.opt_f32(&key(a, "rope.scale_linear")).map_err(e)? {
            if f > 0.0 {
                rope_freq_scale = 1.0 / f;
            }
        }
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::BadConfig {
                what: format!(
                    "head_count {n_head} is not a positive multiple of head_count_kv {n_head_kv}"
                ),
            });
        }
        let head_dim = match md.opt_u32(&key(a, "attention.key_length")).map_err(e)? {
            Some(v) => v as usize,
            None => n_embd / n_head,
        };
        let rope_dims = match md.opt_u32(&key(a, "rope.dimension_count")).map_err(e)? {
            Some(v) => v as usize,
            None => head_dim,
        };
        let n_vocab = match md.opt_u32(&key(a, "vocab_size")).map_err(e)? {
            Some(v) => v as usize,
            None => n_vocab_from_tokens.ok_or_else(|| {
                meta_err(
                    a,
                    MetadataError::Missing {
                        key: "tokenizer.ggml.tokens".into(),
                    },
                )
            })?,
        };
        let n_ctx_train = md
            .opt_u32(&key(a, "context_length"))
            .map_err(e)?
            .unwrap_or(2048) as usize;
        let name = md
            .opt_str("general.name")
            .ok()
            .flatten()
            .unwrap_or(a)
            .to_string();
        let cfg = ModelConfig {
            arch,
            name,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            rms_eps,
            rope_base,
            rope_freq_scale,
            rope_dims,
            rope_style: if arch == Arch::Qwen2 {
                RopeStyle::Neox
            } else {
                RopeStyle::Interleaved
            },
            n_ctx_train,
            qkv_bias: arch == Arch::Qwen2,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads an HF `config.json` (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
    /// HF checkpoints keep q/k in rotate-half order, so RoPE is NeoX-style for every architecture here.
    pub fn from_hf_json(json: &serde_json::Value) -> Result<ModelConfig, EngineError> {
        let archs = json
            .get("architectures")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .unwrap_or("");
        let model_type = json
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let arch = match (archs, model_type) {
            ("LlamaForCausalLM", _) | (_, "llama") => Arch::Llama,
            ("MistralForCausalLM", _) | (_, "mistral") => Arch::Mistral,
            ("Qwen2ForCausalLM", _) | (_, "qwen2") => Arch::Qwen2,
            _ => {
                return Err(EngineError::UnsupportedArch {
                    arch: if archs.is_empty() {
                        model_type.to_string()
                    } else {
                        archs.to_string()
                    },
                })
            }
        };
        let get = |k: &str| -> Result<usize, EngineError> {
            json.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::BadConfig {
                    what: format!("config.json: missing or non-integer `{k}`"),
                })
        };
        let n_embd = get("hidden_size")?;
        let n_head = get("num_attention_heads")?;
        let n_head_kv = get("num_key_value_heads").unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::BadConfig {
                what: format!("num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"),
            });
        }
        let head_dim = json
            .get("head_dim")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(n_embd / n_head);
        let mut rope_freq_scale = 1.0f32;
        if let Some(rs) = json.get("rope_scaling").filter(|v| !v.is_null()) {
            let kind = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            match kind {
                "linear" => {
                    let f = rs.get("factor").and_then(|v| v.as_f64()).unwrap_or(1.0);
                    if f > 0.0 {
                        rope_freq_scale = (1.0 / f) as f32;
                    }
                }
                "default" | "" => {}
                other => {
                    return Err(EngineError::Unsupported {
                        what: format!("rope_scaling type `{other}`"),
                    })
                }
            }
        }
        let cfg = ModelConfig {
            arch,
            name: model_type.to_string(),
            n_vocab: get("vocab_size")?,
            n_embd,
            n_layer: get("num_hidden_layers")?,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: get("intermediate_size")?,
            rms_eps: json
                .get("rms_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-6) as f32,
            rope_base: json
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(10000.0) as f32,
            rope_freq_scale,
            rope_dims: head_dim,
            rope_style: RopeStyle::Neox,
            n_ctx_train: get("max_position_embeddings").unwrap_or(2048),
            qkv_bias: arch == Arch::Qwen2,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: String| Err(EngineError::BadConfig { what });
        if self.n_embd == 0
            || self.n_layer == 0
            || self.n_ff == 0
            || self.n_vocab == 0
            || self.head_dim == 0
        {
            return bad(format!(
                "zero-sized dimension (n_embd {}, n_layer {}, n_ff {}, n_vocab {}, head_dim {})",
                self.n_embd, self.n_layer, self.n_ff, self.n_vocab, self.head_dim
            ));
        }
        if self.rope_dims > self.head_dim || !self.rope_dims.is_multiple_of(2) {
            return bad(format!(
                "rope dimension count {} vs head_dim {}",
                self.rope_dims, self.head_dim
            ));
        }
        if !(self.rms_eps.is_finite() && self.rope_base.is_finite() && self.rope_base > 0.0) {
            return bad("non-finite rms epsilon or rope base".into());
        }
        if self.n_layer > 4096 || self.n_embd > 1 << 20 || self.n_head > 4096 {
            return bad("implausibly large dimensions".into());
        }
        Ok(())
    }

    /// Width of the q projection output.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the k and v projection outputs.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
