//! HF -> GGUF tensor names, expected shapes and the q/k row permutation, in one table.
//!
//! Names follow llama.cpp's `gguf-py/gguf/tensor_mapping.py` for the llama family; the permutation
//! is `LlamaModel.permute` of `convert_hf_to_gguf.py` (llama only, never qwen2).

use crate::hf::{Arch, HfConfig};

/// What shape a tensor must have, in HF (row-major, outermost first) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Vocab,
    Embd,
    QRows,
    KvRows,
    Ff,
}

struct Row {
    /// GGUF name; `{}` is the layer index.
    gguf: &'static str,
    /// HF name; `{}` is the layer index.
    hf: &'static str,
    per_layer: bool,
    /// HF shape.
    shape: &'static [Dim],
    /// Permuted with n_head (Q) or n_head_kv (K) for llama.
    permute: Option<Heads>,
    /// Present only when the model has q/k/v biases.
    bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heads {
    Q,
    Kv,
}

use Dim::*;

const TABLE: &[Row] = &[
    Row {
        gguf: "token_embd.weight",
        hf: "model.embed_tokens.weight",
        per_layer: false,
        shape: &[Vocab, Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.attn_norm.weight",
        hf: "model.layers.{}.input_layernorm.weight",
        per_layer: true,
        shape: &[Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.attn_q.weight",
        hf: "model.layers.{}.self_attn.q_proj.weight",
        per_layer: true,
        shape: &[QRows, Embd],
        permute: Some(Heads::Q),
        bias: false,
    },
    Row {
        gguf: "blk.{}.attn_q.bias",
        hf: "model.layers.{}.self_attn.q_proj.bias",
        per_layer: true,
        shape: &[QRows],
        permute: Some(Heads::Q),
        bias: true,
    },
    Row {
        gguf: "blk.{}.attn_k.weight",
        hf: "model.layers.{}.self_attn.k_proj.weight",
        per_layer: true,
        shape: &[KvRows, Embd],
        permute: Some(Heads::Kv),
        bias: false,
    },
    Row {
        gguf: "blk.{}.attn_k.bias",
        hf: "model.layers.{}.self_attn.k_proj.bias",
        per_layer: true,
        shape: &[KvRows],
        permute: Some(Heads::Kv),
        bias: true,
    },
    Row {
        gguf: "blk.{}.attn_v.weight",
        hf: "model.layers.{}.self_attn.v_proj.weight",
        per_layer: true,
        shape: &[KvRows, Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.attn_v.bias",
        hf: "model.layers.{}.self_attn.v_proj.bias",
        per_layer: true,
        shape: &[KvRows],
        permute: None,
        bias: true,
    },
    Row {
        gguf: "blk.{}.attn_output.weight",
        hf: "model.layers.{}.self_attn.o_proj.weight",
        per_layer: true,
        shape: &[Embd, QRows],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.ffn_norm.weight",
        hf: "model.layers.{}.post_attention_layernorm.weight",
        per_layer: true,
        shape: &[Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.ffn_gate.weight",
        hf: "model.layers.{}.mlp.gate_proj.weight",
        per_layer: true,
        shape: &[Ff, Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.ffn_up.weight",
        hf: "model.layers.{}.mlp.up_proj.weight",
        per_layer: true,
        shape: &[Ff, Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "blk.{}.ffn_down.weight",
        hf: "model.layers.{}.mlp.down_proj.weight",
        per_layer: true,
        shape: &[Embd, Ff],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "output_norm.weight",
        hf: "model.norm.weight",
        per_layer: false,
        shape: &[Embd],
        permute: None,
        bias: false,
    },
    Row {
        gguf: "output.weight",
        hf: "lm_head.weight",
        per_layer: false,
        shape: &[Vocab, Embd],
        permute: None,
        bias: false,
    },
];

/// HF tensors that carry no weights and are dropped (as llama.cpp does).
pub fn is_ignored(hf_name: &str) -> bool {
    hf_name.ends_with(".rotary_emb.inv_freq") || hf_name.ends_with(".attention.masked_bias")
}

/// One output tensor of a conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPlan {
    pub gguf_name: String,
    pub hf_name: String,
    /// Expected HF shape (outermost first).
    pub hf_shape: Vec<u64>,
    /// Rows are permuted within heads of this many rows-per-head (llama q/k).
    pub permute_heads: Option<u64>,
    /// Optional in the checkpoint (`lm_head.weight`: absent means tied embeddings).
    pub optional: bool,
}

impl TensorPlan {
    /// The GGUF (ggml) shape: HF reversed.
    pub fn gguf_shape(&self) -> Vec<u64> {
        self.hf_shape.iter().rev().copied().collect()
    }
}

/// Every tensor a checkpoint with this config converts to, in file order:
/// token_embd, then each layer, then output_norm and output.
pub fn plan(cfg: &HfConfig) -> Vec<TensorPlan> {
    let dim = |d: Dim| match d {
        Vocab => cfg.n_vocab,
        Embd => cfg.n_embd,
        QRows => cfg.n_head * cfg.head_dim(),
        KvRows => cfg.n_head_kv * cfg.head_dim(),
        Ff => cfg.n_ff,
    };
    let mut out = Vec::new();
    let mut push = |r: &Row, layer: Option<u64>| {
        if r.bias && !cfg.qkv_bias {
            return;
        }
        let sub = |s: &str| match layer {
            Some(l) => s.replace("{}", &l.to_string()),
            None => s.to_string(),
        };
        let permute_heads = match (r.permute, cfg.arch.permutes_qk()) {
            (Some(Heads::Q), true) => Some(cfg.n_head),
            (Some(Heads::Kv), true) => Some(cfg.n_head_kv),
            _ => None,
        };
        out.push(TensorPlan {
            gguf_name: sub(r.gguf),
            hf_name: sub(r.hf),
            hf_shape: r.shape.iter().map(|&d| dim(d)).collect(),
            permute_heads,
            optional: r.gguf == "output.weight",
        });
    };
    for r in TABLE
        .iter()
        .filter(|r| !r.per_layer && r.gguf == "token_embd.weight")
    {
        push(r, None);
    }
    for l in 0..cfg.n_layer {
        for r in TABLE.iter().filter(|r| r.per_layer) {
            push(r, Some(l));
        }
    }
    for r in TABLE
        .iter()
        .filter(|r| !r.per_layer && r.gguf != "token_embd.weight")
    {
        push(r, None);
    }
    out
}

/// Which HF row lands at GGUF row `dst` under llama.cpp's permutation with `n_head` heads of
/// `rows_per_head` rows: within a head, HF row j (first half) goes to 2j and row j + d/2 to 2j+1.
pub fn permuted_source_row(dst: u64, rows_per_head: u64) -> u64 {
    let head = dst / rows_per_head;
    let r = dst % rows_per_head;
    let half = rows_per_head / 2;
    let (j, s) = (r / 2, r % 2);
    head * rows_per_head + s * half + j
}

/// The arch-specific HF spelling check for names the table does not know.
pub fn known_hf_names(cfg: &HfConfig) -> impl Fn(&str) -> bool + '_ {
    let names: std::collections::HashSet<String> =
        plan(cfg).into_iter().map(|p| p.hf_name).collect();
    move |n: &str| {
        names.contains(n) || is_ignored(n) || (cfg.arch == Arch::Llama && n == "lm_head.bias")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_llama_cpp() {
        // numpy: w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2).reshape(...) with d = 4:
        // GGUF rows per head = HF rows [0, 2, 1, 3].
        let rows: Vec<u64> = (0..8).map(|r| permuted_source_row(r, 4)).collect();
        assert_eq!(rows, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        // d = 64 (SmolLM2): GGUF row h*64 + 2j + s <- HF row h*64 + 32s + j.
        assert_eq!(permuted_source_row(64 + 2 * 5 + 1, 64), 64 + 32 + 5);
    }
}
