//! Output types and the per-tensor type mix, following llama.cpp's `llama-quantize`
//! (`src/llama-quant.cpp`: `tensor_allows_quantization`, `llama_tensor_get_type_impl`,
//! `tensor_type_fallback`) for dense llama-family models.
//!
//! The rules, for a file type with base type B (`--type`):
//! - Tensors with fewer than 2 dimensions, norms and anything not named `*weight` stay F32.
//! - Float file types (f32, f16, bf16): every 2-D weight is stored as B (as `convert_hf_to_gguf.py` does).
//! - `output.weight`, and `token_embd.weight` when the embeddings are tied (no `output.weight`),
//!   become Q6_K unless B is Q8_0; if the row length is not a multiple of B's block they become Q8_0.
//! - q4_k_m / q5_k_m: `attn_v` and `ffn_down` become Q6_K on the "more bits" layers
//!   (the first and last eighth of the layers, and every third layer in between).
//! - q4_k_s: `attn_v` in the first 4 layers and `ffn_down` in the first eighth become Q5_K.
//! - A row length that is not a multiple of the chosen type's block falls back as in llama.cpp:
//!   Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and then to F16 if even that does not fit
//!   (llama.cpp refuses those shapes for the 32-block types; we store them as F16, as its
//!   converter does for q8_0).
//! - `pure` turns off every rule but the fallback.

use outcore_format::GgmlType;

use crate::error::{ConvertError, Result};

/// `--help` text: the types and the mix rules.
pub const MIX_HELP: &str = "\
Output types (--type), as llama.cpp's llama-quantize names them:
  f32, f16, bf16   every 2-D weight in that type (convert_hf_to_gguf.py --outtype)
  q8_0             Q8_0
  q4_0 q4_1 q5_0 q5_1
                   that type; output.weight Q6_K
  q4_k_s           Q4_K; attn_v of the first 4 layers and ffn_down of the first 1/8 Q5_K
  q4_k_m (= q4_k)  Q4_K; attn_v and ffn_down Q6_K on the 'more bits' layers
                   (first and last 1/8 of the layers and every third in between)
  q5_k_s           Q5_K
  q5_k_m (= q5_k)  Q5_K; attn_v and ffn_down Q6_K on the 'more bits' layers
  q6_k             Q6_K
Rules for every type:
  - 1-D tensors (norms, biases, rope_freqs) stay F32.
  - output.weight, and token_embd.weight when the embeddings are tied, get Q6_K
    (Q8_0 when the base type is Q8_0, or when the row length is not a multiple of
    the base type's block).
  - A row length that the chosen type's block does not divide falls back:
    Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if even that does not fit.
  - --pure turns off everything but that fallback.";

/// A file type (`general.file_type`, llama.cpp's `llama_ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// (name on the command line, file type, llama_ftype id, note for --help).
const FILE_TYPES: &[(&str, FileType, u32, &str)] = &[
    ("f32", FileType::F32, 0, "all 2-D weights F32"),
    ("f16", FileType::F16, 1, "all 2-D weights F16"),
    ("bf16", FileType::BF16, 32, "all 2-D weights BF16"),
    ("q8_0", FileType::Q8_0, 7, "Q8_0"),
    ("q4_0", FileType::Q4_0, 2, "Q4_0, output Q6_K"),
    ("q4_1", FileType::Q4_1, 3, "Q4_1, output Q6_K"),
    ("q5_0", FileType::Q5_0, 8, "Q5_0, output Q6_K"),
    ("q5_1", FileType::Q5_1, 9, "Q5_1, output Q6_K"),
    (
        "q4_k_s",
        FileType::Q4_K_S,
        14,
        "Q4_K, some attn_v/ffn_down Q5_K, output Q6_K",
    ),
    (
        "q4_k_m",
        FileType::Q4_K_M,
        15,
        "Q4_K, attn_v/ffn_down Q6_K on more-bits layers, output Q6_K",
    ),
    (
        "q4_k",
        FileType::Q4_K_M,
        15,
        "alias of q4_k_m (as in llama-quantize)",
    ),
    ("q5_k_s", FileType::Q5_K_S, 16, "Q5_K, output Q6_K"),
    (
        "q5_k_m",
        FileType::Q5_K_M,
        17,
        "Q5_K, attn_v/ffn_down Q6_K on more-bits layers, output Q6_K",
    ),
    (
        "q5_k",
        FileType::Q5_K_M,
        17,
        "alias of q5_k_m (as in llama-quantize)",
    ),
    ("q6_k", FileType::Q6_K, 18, "Q6_K"),
];

impl FileType {
    /// Parses a `--type` name (case-insensitive).
    pub fn parse(name: &str) -> Result<FileType> {
        FILE_TYPES
            .iter()
            .find(|r| r.0.eq_ignore_ascii_case(name))
            .map(|r| r.1)
            .ok_or_else(|| ConvertError::UnknownType {
                name: name.to_string(),
                expected: Self::names().join(", "),
            })
    }

    /// Every accepted `--type` name.
    pub fn names() -> Vec<&'static str> {
        FILE_TYPES.iter().map(|r| r.0).collect()
    }

    /// A multi-line description of every type and the mix rules, for `--help`.
    pub fn help() -> String {
        let mut s = String::new();
        for (name, _, _, note) in FILE_TYPES {
            s.push_str(&format!("  {name:<7} {note}\n"));
        }
        s
    }

    /// The `general.file_type` value.
    pub fn id(self) -> u32 {
        FILE_TYPES
            .iter()
            .find(|r| r.1 == self)
            .map(|r| r.2)
            .unwrap_or(0)
    }

    /// The canonical name (never an alias).
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::BF16 => "bf16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4_1 => "q4_1",
            FileType::Q5_0 => "q5_0",
            FileType::Q5_1 => "q5_1",
            FileType::Q4_K_S => "q4_k_s",
            FileType::Q4_K_M => "q4_k_m",
            FileType::Q5_K_S => "q5_k_s",
            FileType::Q5_K_M => "q5_k_m",
            FileType::Q6_K => "q6_k",
        }
    }

    /// The type most tensors get (llama.cpp's `llama_ftype_get_default_type`).
    pub fn base_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q4_K_S | FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
        }
    }

    pub fn is_float(self) -> bool {
        self.base_type().is_float()
    }

    /// The file type whose base type is `ty` (for `synth --type q4_k` and the like).
    pub fn from_ggml(ty: GgmlType) -> Option<FileType> {
        Some(match ty {
            GgmlType::F32 => FileType::F32,
            GgmlType::F16 => FileType::F16,
            GgmlType::BF16 => FileType::BF16,
            GgmlType::Q8_0 => FileType::Q8_0,
            GgmlType::Q4_0 => FileType::Q4_0,
            GgmlType::Q4_1 => FileType::Q4_1,
            GgmlType::Q5_0 => FileType::Q5_0,
            GgmlType::Q5_1 => FileType::Q5_1,
            GgmlType::Q4_K => FileType::Q4_K_M,
            GgmlType::Q5_K => FileType::Q5_K_M,
            GgmlType::Q6_K => FileType::Q6_K,
            _ => return None,
        })
    }
}

/// What the mix needs to know about the whole model.
#[derive(Clone, Copy, Debug)]
pub struct MixContext {
    pub ftype: FileType,
    pub n_layer: usize,
    /// The model has a separate `output.weight` (untied embeddings).
    pub has_output: bool,
    /// Only the shape fallback applies (llama-quantize --pure).
    pub pure: bool,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between.
pub fn use_more_bits(i_layer: usize, n_layer: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layer as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8).rem_euclid(3) == 2
}

/// The layer index in a `blk.N.` name.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Whether llama.cpp would quantize this tensor at all (`tensor_allows_quantization`).
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    n_dims >= 2
        && name.ends_with("weight")
        && !name.contains("_norm.weight")
        && !name.contains("rope_freqs")
}

/// The type tensor `name` (ggml shape `shape`, ne0 first) gets in this file type.
/// `src` is the type it has now (kept for tensors that are never quantized, e.g. 1-D F32 norms).
pub fn choose_type(ctx: &MixContext, name: &str, shape: &[u64], src: GgmlType) -> GgmlType {
    if !allows_quantization(name, shape.len()) {
        // Norms, biases and other 1-D tensors: F32, as both llama.cpp tools write them.
        return if src.is_float() { GgmlType::F32 } else { src };
    }
    let base = ctx.ftype.base_type();
    let ne0 = shape[0];
    if ctx.ftype.is_float() {
        return base;
    }
    let mut ty = base;
    if !ctx.pure {
        ty = mixed_type(ctx, name, ne0, base);
    }
    fallback(ty, ne0)
}

fn mixed_type(ctx: &MixContext, name: &str, ne0: u64, base: GgmlType) -> GgmlType {
    use FileType as F;
    let is_output = name == "output.weight";
    let is_embd = name == "token_embd.weight";
    if is_output || (is_embd && !ctx.has_output) {
        if !ne0.is_multiple_of(base.block_size() as u64) {
            return GgmlType::Q8_0;
        }
        return if base != GgmlType::Q8_0 {
            GgmlType::Q6_K
        } else {
            base
        };
    }
    let layer = layer_of(name);
    let n = ctx.n_layer;
    if name.contains("attn_v.weight") {
        let i = layer.unwrap_or(0);
        return match ctx.ftype {
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => GgmlType::Q6_K,
            F::Q4_K_S if i < 4 => GgmlType::Q5_K,
            _ => base,
        };
    }
    if name.contains("ffn_down") {
        let i = layer.unwrap_or(0);
        return match ctx.ftype {
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => GgmlType::Q6_K,
            F::Q4_K_S if i < n / 8 => GgmlType::Q5_K,
            _ => base,
        };
    }
    base
}

/// llama.cpp's `tensor_type_fallback`, extended to F16 for the 32-block types.
pub fn fallback(ty: GgmlType, ne0: u64) -> GgmlType {
    let fits = |t: GgmlType| ne0.is_multiple_of(t.block_size() as u64);
    if fits(ty) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if fits(next) {
        next
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(ftype: FileType, n_layer: usize, has_output: bool) -> MixContext {
        MixContext {
            ftype,
            n_layer,
            has_output,
            pure: false,
        }
    }

    #[test]
    fn parse_names_and_ids() {
        assert_eq!(FileType::parse("Q4_K").unwrap(), FileType::Q4_K_M);
        assert_eq!(FileType::parse("q4_k_m").unwrap().id(), 15);
        assert_eq!(FileType::parse("bf16").unwrap().id(), 32);
        assert_eq!(FileType::parse("q8_0").unwrap().id(), 7);
        assert!(FileType::parse("q3_k").is_err());
    }

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        // n_layer = 16 (Llama-3.2-1B): n/8 = 2, 7n/8 = 14.
        let picked: Vec<usize> = (0..16).filter(|&i| use_more_bits(i, 16)).collect();
        assert_eq!(picked, vec![0, 1, 4, 7, 10, 13, 14, 15]);
    }

    #[test]
    fn q4_k_m_mix() {
        let c = ctx(FileType::Q4_K_M, 16, true);
        let t = |name: &str, shape: &[u64]| choose_type(&c, name, shape, GgmlType::F32);
        assert_eq!(t("blk.0.attn_norm.weight", &[2048]), GgmlType::F32);
        assert_eq!(t("blk.0.attn_q.bias", &[2048]), GgmlType::F32);
        assert_eq!(t("blk.0.attn_v.weight", &[2048, 512]), GgmlType::Q6_K);
        assert_eq!(t("blk.2.attn_v.weight", &[2048, 512]), GgmlType::Q4_K);
        assert_eq!(t("blk.4.ffn_down.weight", &[8192, 2048]), GgmlType::Q6_K);
        assert_eq!(t("blk.5.ffn_down.weight", &[8192, 2048]), GgmlType::Q4_K);
        assert_eq!(t("blk.5.ffn_up.weight", &[2048, 8192]), GgmlType::Q4_K);
        assert_eq!(t("output.weight", &[2048, 128256]), GgmlType::Q6_K);
        assert_eq!(t("token_embd.weight", &[2048, 128256]), GgmlType::Q4_K);
        // Tied embeddings: the embedding is quantized like the output.
        let tied = ctx(FileType::Q4_K_M, 16, false);
        assert_eq!(
            choose_type(&tied, "token_embd.weight", &[2048, 128256], GgmlType::F32),
            GgmlType::Q6_K
        );
    }

    #[test]
    fn shape_fallbacks() {
        // SmolLM2: 576 columns, tied. Q4_1 file: embedding -> Q6_K -> (576 % 256) -> Q8_0, as in the demo model.
        let c = ctx(FileType::Q4_1, 30, false);
        assert_eq!(
            choose_type(&c, "token_embd.weight", &[576, 49152], GgmlType::F32),
            GgmlType::Q8_0
        );
        assert_eq!(
            choose_type(&c, "blk.0.ffn_down.weight", &[1536, 576], GgmlType::F32),
            GgmlType::Q4_1
        );
        let k = ctx(FileType::Q4_K_M, 30, false);
        assert_eq!(
            choose_type(&k, "blk.3.attn_q.weight", &[576, 576], GgmlType::F32),
            GgmlType::Q5_0
        );
        assert_eq!(
            choose_type(&k, "blk.0.ffn_down.weight", &[1536, 576], GgmlType::F32),
            GgmlType::Q6_K
        );
        assert_eq!(
            choose_type(&k, "blk.0.attn_v.weight", &[576, 192], GgmlType::F32),
            GgmlType::Q8_0
        );
        // 172 columns fit no block: F16.
        assert_eq!(
            choose_type(&k, "blk.0.ffn_down.weight", &[172, 64], GgmlType::F32),
            GgmlType::F16
        );
        let q8 = ctx(FileType::Q8_0, 3, true);
        assert_eq!(
            choose_type(&q8, "output.weight", &[64, 512], GgmlType::F32),
            GgmlType::Q8_0
        );
        let f16 = ctx(FileType::F16, 3, true);
        assert_eq!(
            choose_type(&f16, "blk.0.ffn_down.weight", &[172, 64], GgmlType::F32),
            GgmlType::F16
        );
        assert_eq!(
            choose_type(&f16, "output_norm.weight", &[64], GgmlType::F32),
            GgmlType::F32
        );
    }
}
