//! The one table of tensor names: GGUF (llama.cpp) and Hugging Face spellings, per role, with binding flags.

/// What a tensor does in the llama-family graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOut,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
}

/// Whether a tensor must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    /// Falls back to another tensor when absent (tied embeddings).
    TiedTo(Role),
    /// Required when the architecture has q/k/v biases, ignored otherwise.
    IfQkvBias,
}

pub struct NameRow {
    pub role: Role,
    /// GGUF name; `{}` stands for the layer index.
    pub gguf: &'static str,
    /// Hugging Face name; `{}` stands for the layer index.
    pub hf: &'static str,
    pub per_layer: bool,
    pub need: Need,
}

pub const NAMES: &[NameRow] = &[
    NameRow {
        role: Role::TokenEmbd,
        gguf: "token_embd.weight",
        hf: "model.embed_tokens.weight",
        per_layer: false,
        need: Need::Required,
    },
    NameRow {
        role: Role::OutputNorm,
        gguf: "output_norm.weight",
        hf: "model.norm.weight",
        per_layer: false,
        need: Need::Required,
    },
    NameRow {
        role: Role::Output,
        gguf: "output.weight",
        hf: "lm_head.weight",
        per_layer: false,
        need: Need::TiedTo(Role::TokenEmbd),
    },
    NameRow {
        role: Role::AttnNorm,
        gguf: "blk.{}.attn_norm.weight",
        hf: "model.layers.{}.input_layernorm.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::AttnQ,
        gguf: "blk.{}.attn_q.weight",
        hf: "model.layers.{}.self_attn.q_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::AttnK,
        gguf: "blk.{}.attn_k.weight",
        hf: "model.layers.{}.self_attn.k_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::AttnV,
        gguf: "blk.{}.attn_v.weight",
        hf: "model.layers.{}.self_attn.v_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::AttnOut,
        gguf: "blk.{}.attn_output.weight",
        hf: "model.layers.{}.self_attn.o_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::AttnQBias,
        gguf: "blk.{}.attn_q.bias",
        hf: "model.layers.{}.self_attn.q_proj.bias",
        per_layer: true,
        need: Need::IfQkvBias,
    },
    NameRow {
        role: Role::AttnKBias,
        gguf: "blk.{}.attn_k.bias",
        hf: "model.layers.{}.self_attn.k_proj.bias",
        per_layer: true,
        need: Need::IfQkvBias,
    },
    NameRow {
        role: Role::AttnVBias,
        gguf: "blk.{}.attn_v.bias",
        hf: "model.layers.{}.self_attn.v_proj.bias",
        per_layer: true,
        need: Need::IfQkvBias,
    },
    NameRow {
        role: Role::FfnNorm,
        gguf: "blk.{}.ffn_norm.weight",
        hf: "model.layers.{}.post_attention_layernorm.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::FfnGate,
        gguf: "blk.{}.ffn_gate.weight",
        hf: "model.layers.{}.mlp.gate_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::FfnUp,
        gguf: "blk.{}.ffn_up.weight",
        hf: "model.layers.{}.mlp.up_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
    NameRow {
        role: Role::FfnDown,
        gguf: "blk.{}.ffn_down.weight",
        hf: "model.layers.{}.mlp.down_proj.weight",
        per_layer: true,
        need: Need::Required,
    },
];

/// Which naming scheme a source uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Gguf,
    Hf,
}

pub fn row(role: Role) -> &'static NameRow {
    NAMES
        .iter()
        .find(|r| r.role == role)
        .expect("every role has a row")
}

/// The tensor name for `role` (in layer `layer` for per-layer roles).
pub fn name(scheme: Scheme, role: Role, layer: usize) -> String {
    let r = row(role);
    let pat = match scheme {
        Scheme::Gguf => r.gguf,
        Scheme::Hf => r.hf,
    };
    if r.per_layer {
        pat.replace("{}", &layer.to_string())
    } else {
        pat.to_string()
    }
}

/// Maps a GGUF tensor name to its HF spelling (and back); None for names outside the table.
pub fn translate(name: &str, from: Scheme, to: Scheme) -> Option<String> {
    for r in NAMES {
        let (src, dst) = match from {
            Scheme::Gguf => (r.gguf, if to == Scheme::Hf { r.hf } else { r.gguf }),
            Scheme::Hf => (r.hf, if to == Scheme::Gguf { r.gguf } else { r.hf }),
        };
        if !r.per_layer {
            if name == src {
                return Some(dst.to_string());
            }
            continue;
        }
        let (pre, post) = src
            .split_once("{}")
            .expect("per-layer names have a placeholder");
        if let Some(rest) = name.strip_prefix(pre).and_then(|s| s.strip_suffix(post)) {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Some(dst.replace("{}", rest));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_translate_both_ways() {
        assert_eq!(name(Scheme::Gguf, Role::AttnQ, 7), "blk.7.attn_q.weight");
        assert_eq!(
            translate("blk.12.ffn_down.weight", Scheme::Gguf, Scheme::Hf).as_deref(),
            Some("model.layers.12.mlp.down_proj.weight")
        );
        assert_eq!(
            translate("model.norm.weight", Scheme::Hf, Scheme::Gguf).as_deref(),
            Some("output_norm.weight")
        );
        assert_eq!(
            translate("blk.x.attn_q.weight", Scheme::Gguf, Scheme::Hf),
            None
        );
    }
}
