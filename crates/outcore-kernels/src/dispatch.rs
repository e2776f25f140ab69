//! Picks the kernel set for this CPU once (`OnceLock`), like ggml's per-arch `type_traits_cpu`.
//!
//! `OUTCORE_CPU=scalar|avx2|avx512` caps the level (tests and benches use it to run every path);
//! a level the CPU lacks falls back to the best one it has below it.

use std::sync::OnceLock;

use half::{bf16, f16};

use crate::ops::{self, DotOrder};
use crate::quant::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlBlock, QuantizeFn, R4Tokens, VecDotFn, VecDotR4Fn,
    VecDotX4Fn,
};
use crate::rows16::RowsFn;

/// An instruction-set level with its own kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    Scalar,
    Avx2,
    Avx512,
}

impl CpuLevel {
    pub const ALL: [CpuLevel; 3] = [CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::Avx512];

    /// Parses `OUTCORE_CPU` values.
    pub fn from_name(s: &str) -> Option<CpuLevel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "generic" | "none" => Some(CpuLevel::Scalar),
            "avx2" => Some(CpuLevel::Avx2),
            "avx512" | "avx-512" => Some(CpuLevel::Avx512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "scalar",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level's kernels.
    pub fn is_available(self) -> bool {
        match self {
            CpuLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx2 => crate::arch::x86_64::avx2::is_available(),
            #[cfg(target_arch = "x86_64")]
            CpuLevel::Avx512 => crate::arch::x86_64::avx512::is_available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// One function per (weight type, activation type) dot product and per activation quantizer.
#[derive(Debug)]
pub struct KernelTable {
    pub level: CpuLevel,
    pub q4_0_q8_0: VecDotFn<BlockQ4_0, BlockQ8_0>,
    pub q4_1_q8_1: VecDotFn<BlockQ4_1, BlockQ8_1>,
    pub q5_0_q8_0: VecDotFn<BlockQ5_0, BlockQ8_0>,
    pub q5_1_q8_1: VecDotFn<BlockQ5_1, BlockQ8_1>,
    pub q8_0_q8_0: VecDotFn<BlockQ8_0, BlockQ8_0>,
    pub q2_k_q8_k: VecDotFn<BlockQ2K, BlockQ8K>,
    pub q3_k_q8_k: VecDotFn<BlockQ3K, BlockQ8K>,
    pub q4_k_q8_k: VecDotFn<BlockQ4K, BlockQ8K>,
    pub q5_k_q8_k: VecDotFn<BlockQ5K, BlockQ8K>,
    pub q6_k_q8_k: VecDotFn<BlockQ6K, BlockQ8K>,
    pub f32_f32: VecDotFn<f32, f32>,
    pub f16_f16: VecDotFn<f16, f16>,
    pub bf16_bf16: VecDotFn<bf16, bf16>,
    pub quantize_q8_0: QuantizeFn<BlockQ8_0>,
    pub quantize_q8_1: QuantizeFn<BlockQ8_1>,
    pub quantize_q8_k: QuantizeFn<BlockQ8K>,
    pub quantize_f16: QuantizeFn<f16>,
    /// One weight row times four activation rows (same bits as four single calls), where a
    /// level has such a kernel; `matmul` uses them for batches of tokens.
    pub q8_0_q8_0_x4: Option<VecDotX4Fn<BlockQ8_0, BlockQ8_0>>,
    pub q4_0_q8_0_x4: Option<VecDotX4Fn<BlockQ4_0, BlockQ8_0>>,
    pub q4_1_q8_1_x4: Option<VecDotX4Fn<BlockQ4_1, BlockQ8_1>>,
    pub q5_0_q8_0_x4: Option<VecDotX4Fn<BlockQ5_0, BlockQ8_0>>,
    pub q5_1_q8_1_x4: Option<VecDotX4Fn<BlockQ5_1, BlockQ8_1>>,
    /// Four weight rows times one activation row (same bits as four single calls), used by
    /// single-token products.
    pub q8_0_q8_0_r4: Option<VecDotR4Fn<BlockQ8_0, BlockQ8_0>>,
    pub q4_1_q8_1_r4: Option<VecDotR4Fn<BlockQ4_1, BlockQ8_1>>,
    pub q4_k_q8_k_r4: Option<VecDotR4Fn<BlockQ4K, BlockQ8K>>,
    pub q6_k_q8_k_r4: Option<VecDotR4Fn<BlockQ6K, BlockQ8K>>,
    /// Four weight rows times 2, 3 or 4 activation rows (same bits as the single calls), used
    /// by batches of tokens.
    pub q4_1_q8_1_r4xt: R4Tokens<BlockQ4_1, BlockQ8_1>,
    pub q8_0_q8_0_r4xt: R4Tokens<BlockQ8_0, BlockQ8_0>,
    /// Sixteen weight rows times any number of tokens in the fast arithmetic
    /// (`crate::rows16`: batch-invariant, not llama.cpp's bits).
    pub q4_1_q8_1_r16: Option<RowsFn<BlockQ4_1, BlockQ8_1>>,
    pub q8_0_q8_0_r16: Option<RowsFn<BlockQ8_0, BlockQ8_0>>,
    /// Float ops in llama.cpp's AVX2 order (`crate::ops`).
    pub attn_scores: AttnScoresFn,
    pub attn_values: AttnValuesFn,
    pub softmax: fn(&mut [f32]),
    pub swiglu: fn(&mut [f32], &[f32]),
    pub round_f16: fn(&mut [f32]),
    pub rope_apply: RopeApplyFn,
}

/// `crate::ops::attn_scores_scalar`'s signature.
pub type AttnScoresFn = fn(DotOrder, &[f32], &[f16], usize, f32, &mut [f32]);
/// `crate::ops::rope_apply_scalar`'s signature.
pub type RopeApplyFn = fn(&mut [f32], &[(f32, f32)], bool);
/// `crate::ops::attn_values_scalar`'s signature.
pub type AttnValuesFn = fn(DotOrder, &[f32], &[f16], usize, &mut [f32]);

/// The scalar twins: the definition every other table is tested against.
pub static SCALAR: KernelTable = SCALAR_TABLE;

/// [`SCALAR`] as a const, so SIMD tables can start from it (`..SCALAR_TABLE`).
pub(crate) const SCALAR_TABLE: KernelTable = KernelTable {
    level: CpuLevel::Scalar,
    q4_0_q8_0: BlockQ4_0::vec_dot_scalar,
    q4_1_q8_1: BlockQ4_1::vec_dot_scalar,
    q5_0_q8_0: BlockQ5_0::vec_dot_scalar,
    q5_1_q8_1: BlockQ5_1::vec_dot_scalar,
    q8_0_q8_0: BlockQ8_0::vec_dot_scalar,
    q2_k_q8_k: BlockQ2K::vec_dot_scalar,
    q3_k_q8_k: BlockQ3K::vec_dot_scalar,
    q4_k_q8_k: BlockQ4K::vec_dot_scalar,
    q5_k_q8_k: BlockQ5K::vec_dot_scalar,
    q6_k_q8_k: BlockQ6K::vec_dot_scalar,
    f32_f32: <f32 as GgmlBlock>::vec_dot_scalar,
    f16_f16: <f16 as GgmlBlock>::vec_dot_scalar,
    bf16_bf16: <bf16 as GgmlBlock>::vec_dot_scalar,
    quantize_q8_0: BlockQ8_0::quantize_activation_scalar,
    quantize_q8_1: BlockQ8_1::quantize_activation_scalar,
    quantize_q8_k: BlockQ8K::quantize_activation_scalar,
    quantize_f16: <f16 as GgmlBlock>::quantize_activation_scalar,
    q8_0_q8_0_x4: None,
    q4_0_q8_0_x4: None,
    q4_1_q8_1_x4: None,
    q5_0_q8_0_x4: None,
    q5_1_q8_1_x4: None,
    q8_0_q8_0_r4: None,
    q4_1_q8_1_r4: None,
    q4_k_q8_k_r4: None,
    q6_k_q8_k_r4: None,
    q4_1_q8_1_r4xt: R4Tokens::NONE,
    q8_0_q8_0_r4xt: R4Tokens::NONE,
    q4_1_q8_1_r16: None,
    q8_0_q8_0_r16: None,
    attn_scores: ops::attn_scores_scalar,
    attn_values: ops::attn_values_scalar,
    softmax: ops::softmax_scalar,
    swiglu: ops::swiglu_scalar,
    round_f16: ops::round_f16_scalar,
    rope_apply: ops::rope_apply_scalar,
};

/// The table for `level`, or None if this CPU cannot run it.
pub fn table(level: CpuLevel) -> Option<&'static KernelTable> {
    if !level.is_available() {
        return None;
    }
    match level {
        CpuLevel::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => Some(crate::arch::x86_64::avx2::table()),
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512 => Some(crate::arch::x86_64::avx512::table()),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// The best level this CPU supports, capped by `OUTCORE_CPU` when set.
pub fn detect() -> CpuLevel {
    detect_with(std::env::var("OUTCORE_CPU").ok().as_deref())
}

/// [`detect`] with an explicit cap (`None` or an unknown name: no cap).
pub fn detect_with(cap: Option<&str>) -> CpuLevel {
    let cap = cap
        .and_then(CpuLevel::from_name)
        .unwrap_or(CpuLevel::Avx512);
    CpuLevel::ALL
        .into_iter()
        .rev()
        .find(|l| *l <= cap && l.is_available())
        .unwrap_or(CpuLevel::Scalar)
}

/// The kernel table chosen once for this process.
pub fn kernels() -> &'static KernelTable {
    static CHOSEN: OnceLock<&'static KernelTable> = OnceLock::new();
    CHOSEN.get_or_init(|| table(detect()).unwrap_or(&SCALAR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_caps_the_level() {
        assert_eq!(detect_with(Some("scalar")), CpuLevel::Scalar);
        assert_eq!(
            detect_with(Some(" AVX2 ")).max(CpuLevel::Scalar),
            detect_with(Some("avx2"))
        );
        assert!(detect_with(Some("avx2")) <= CpuLevel::Avx2);
        assert_eq!(detect_with(None), detect_with(Some("bogus")));
        for l in CpuLevel::ALL {
            assert_eq!(CpuLevel::from_name(l.name()), Some(l));
            let t = table(l);
            assert_eq!(t.is_some(), l.is_available());
            if let Some(t) = t {
                assert_eq!(t.level, l);
            }
        }
        assert!(kernels().level.is_available());
    }
}
