//! Block layouts and the scalar definition of every ggml type: dequantize, reference quantizer
//! and the dot product with the activation type llama.cpp pairs it with.
//!
//! One file per type. Each follows ggml's `ggml-common.h` (layout), `ggml-quants.c`
//! (`dequantize_row_*`, `quantize_row_*_ref`) and `ggml-cpu/quants.c` (`ggml_vec_dot_*_generic`),
//! keeping ggml's float operation order so results match llama.cpp's C code bit for bit where the
//! C code is deterministic. The scalar functions here are the definition; the SIMD twins in
//! `crate::arch` must agree with them (exactly for integer math).
// The ports keep ggml's index arithmetic so they can be read side by side with the C code.
#![allow(clippy::needless_range_loop)]

use bytemuck::Pod;
use outcore_format::GgmlType;

use crate::dispatch::KernelTable;

pub mod float;
mod k_common;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8K;

/// QK_K: elements per k-quant super-block.
pub const QK_K: usize = 256;

/// ggml's `GROUP_MAX_EPS`: groups whose max |x| is below this quantize to all zeros.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// A dot-product kernel: weight blocks times activation blocks of the same element count.
/// ggml's x86 `hsum_float_8`: halves added lane-wise, then pairs, then the last two.
#[inline(always)]
pub(crate) fn hsum8_x86(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

pub type VecDotFn<W, A> = fn(&[W], &[A]) -> f32;

/// One weight row times four activation rows at once.
pub type VecDotX4Fn<W, A> = fn(&[W], [&[A]; 4]) -> [f32; 4];

/// Four weight rows times one activation row (same bits as four single calls): single-token
/// products run four independent accumulation chains instead of one latency-bound chain.
pub type VecDotR4Fn<W, A> = fn([&[W]; 4], &[A]) -> [f32; 4];

/// Four weight rows times `T` activation rows: `out[r][t]`, the same bits as `4 * T` single
/// calls (batched decode of `T` sequences).
pub type VecDotR4XtFn<W, A, const T: usize> = fn([&[W]; 4], [&[A]; T]) -> [[f32; T]; 4];

/// Four weight rows times four activation rows (batched decode of four sequences).
pub type VecDotR4X4Fn<W, A> = VecDotR4XtFn<W, A, 4>;

/// A type's four-row kernels for 2, 3 and 4 tokens, where a level has them: `matmul` runs the
/// tokens of a batch in groups of four and the remainder through the kernel of its size, so a
/// batch of 3 sequences reads the weights once rather than three times.
pub struct R4Tokens<W: 'static, A: 'static> {
    pub t2: Option<VecDotR4XtFn<W, A, 2>>,
    pub t3: Option<VecDotR4XtFn<W, A, 3>>,
    pub t4: Option<VecDotR4XtFn<W, A, 4>>,
}

impl<W, A> R4Tokens<W, A> {
    /// No multi-token four-row kernels.
    pub const NONE: Self = R4Tokens {
        t2: None,
        t3: None,
        t4: None,
    };

    /// Whether any of the kernels is there.
    pub fn any(&self) -> bool {
        self.t2.is_some() || self.t3.is_some() || self.t4.is_some()
    }
}

// Function pointers are `Copy` whatever `W` and `A` are (a derive would require `W: Copy`).
impl<W, A> Clone for R4Tokens<W, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<W, A> Copy for R4Tokens<W, A> {}

impl<W, A> std::fmt::Debug for R4Tokens<W, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("R4Tokens")
            .field("t2", &self.t2.is_some())
            .field("t3", &self.t3.is_some())
            .field("t4", &self.t4.is_some())
            .finish()
    }
}

/// An activation quantizer: f32 row -> blocks (row length = blocks * BLOCK).
pub type QuantizeFn<A> = fn(&[f32], &mut [A]);

/// One ggml type: its block layout and the scalar math on it (ggml's `type_traits` +
/// `type_traits_cpu` rows in one place).
pub trait GgmlBlock: Pod + Send + Sync {
    /// The ggml type id this block belongs to.
    const TYPE: GgmlType;
    /// Elements per block.
    const BLOCK: usize;
    /// The type the activations are quantized to for [`GgmlBlock::vec_dot_scalar`]
    /// (ggml's `vec_dot_type`).
    type Dot: GgmlBlock;

    /// ggml's `dequantize_row_*` / `to_float`. `y.len() == x.len() * BLOCK`.
    fn dequantize(x: &[Self], y: &mut [f32]);

    /// ggml's `quantize_row_*_ref`: the deterministic quantizer used to write model files.
    /// `x.len() == y.len() * BLOCK`.
    fn quantize(x: &[f32], y: &mut [Self]);

    /// The quantizer llama.cpp's CPU backend applies to activations (`from_float` in
    /// `type_traits_cpu`). Defaults to the reference quantizer.
    fn quantize_activation_scalar(x: &[f32], y: &mut [Self]) {
        Self::quantize(x, y)
    }

    /// The scalar dot product (ggml's `ggml_vec_dot_*_generic`); the definition the SIMD
    /// kernels are tested against.
    fn vec_dot_scalar(x: &[Self], y: &[Self::Dot]) -> f32;

    /// The dot product chosen for this CPU (SIMD where available, else the scalar twin).
    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, Self::Dot>;

    /// A four-activation-row kernel for this CPU, if it has one (bit-identical to four
    /// [`GgmlBlock::vec_dot_fn`] calls).
    fn vec_dot_x4_fn(_k: &KernelTable) -> Option<VecDotX4Fn<Self, Self::Dot>> {
        None
    }

    /// A four-weight-row kernel for this CPU, if it has one (bit-identical to four
    /// [`GgmlBlock::vec_dot_fn`] calls).
    fn vec_dot_r4_fn(_k: &KernelTable) -> Option<VecDotR4Fn<Self, Self::Dot>> {
        None
    }

    /// The four-weight-row kernels for 2, 3 and 4 activation rows this CPU has (each
    /// bit-identical to the [`GgmlBlock::vec_dot_fn`] calls it replaces).
    fn vec_dot_r4xt_fns(_k: &KernelTable) -> R4Tokens<Self, Self::Dot> {
        R4Tokens::NONE
    }

    /// The fast (batch-invariant, not llama.cpp-exact) sixteen-row kernel for this CPU, if the
    /// type has one (`crate::rows16`).
    fn fast_rows(_k: &KernelTable) -> Option<crate::rows16::FastRows<Self, Self::Dot>> {
        None
    }

    /// The activation quantizer chosen for this CPU.
    fn quantize_activation_fn(_k: &KernelTable) -> QuantizeFn<Self> {
        Self::quantize_activation_scalar
    }
}

/// ggml's `nearest_int`: round-to-nearest-even through the 1.5 * 2^23 magic constant.
/// Valid for |fval| <= 4194303 (as in ggml); callers feed it scaled values well inside that.
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0f32;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline(always)]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 8 scales and 8 mins of a Q4_K/Q5_K block, unpacked like ggml's `utmp` trick in
/// `ggml_vec_dot_q4_K_q8_K_generic` (equivalent to `get_scale_min_k4` for j = 0..8).
#[inline(always)]
pub(crate) fn unpack_scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        let (s, m) = get_scale_min_k4(j, q);
        sc[j] = s;
        mn[j] = m;
    }
    (sc, mn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(127.4), 127);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
    }

    #[test]
    fn scale_min_unpack_matches_get_scale_min() {
        let q: [u8; 12] = [
            0xC1, 0x52, 0xFF, 0x00, 0x7E, 0x81, 0x3C, 0xDA, 0x5A, 0xA5, 0x0F, 0xF0,
        ];
        let (sc, mn) = unpack_scales_mins_k4(&q);
        for j in 0..8 {
            assert_eq!((sc[j], mn[j]), get_scale_min_k4(j, &q));
            assert!(sc[j] < 64 && mn[j] < 64);
        }
    }
}
