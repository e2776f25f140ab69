//! Q8_0: 32 int8 quants with one f16 scale (34 bytes, 8.5 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q8_0`), `ggml-quants.c` (`quantize_row_q8_0_ref`,
//! `dequantize_row_q8_0`), `ggml-cpu/quants.c` (`ggml_vec_dot_q8_0_q8_0_generic`) and, for the
//! activation quantizer, `ggml-cpu/arch/x86/quants.c` (`quantize_row_q8_0`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{GgmlBlock, QuantizeFn, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

pub const QK8_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Max |x| of a block the way the AVX code reduces it (NaN-free input assumed).
#[inline(always)]
pub(crate) fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// llama.cpp's activation quantizer on x86 (AVX/AVX2/AVX-512 builds all use it):
/// `d = amax / 127`, `id = 127 / amax`, round half to even (`_mm256_round_ps`), saturate to i8.
/// It differs from `quantize_row_q8_0_ref` (used for model files) only on exact .5 ties and
/// where `127/amax` and `1/(amax/127)` differ by an ulp. Returns (d, quants) for Q8_1's sum.
#[inline(always)]
pub(crate) fn quantize_block_x86(x: &[f32], qs: &mut [i8; 32]) -> f32 {
    let amax = amax(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        // cvtps_epi32 + packs: out-of-range saturates; values here are within [-127, 127].
        *q = ((v * id).round_ties_even() as i32).clamp(-128, 127) as i8;
    }
    d
}

impl GgmlBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLOCK: usize = QK8_0;
    type Dot = BlockQ8_0;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
            let d = b.d.to_f32();
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = q as f32 * d;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
            let amax = amax(x);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            for (q, &v) in b.qs.iter_mut().zip(x) {
                // roundf: half away from zero.
                *q = (v * id).round() as i8;
            }
        }
    }

    fn quantize_activation_scalar(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
            let d = quantize_block_x86(x, &mut b.qs);
            b.d = f16::from_f32(d);
        }
    }

    /// llama.cpp's x86 order (`ggml_vec_dot_q8_0_q8_0`, AVX2 path): eight f32 lane
    /// accumulators, lane `l` adding `(dx*dy) * sum(x*y over elements 4l..4l+4)` with one FMA
    /// per block, then `hsum8`.
    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        let mut acc = [0.0f32; 8];
        for (x, y) in x.iter().zip(y) {
            let dd = x.d.to_f32() * y.d.to_f32();
            for (l, a) in acc.iter_mut().enumerate() {
                let mut sumi = 0i32;
                for e in 4 * l..4 * l + 4 {
                    sumi += x.qs[e] as i32 * y.qs[e] as i32;
                }
                *a = dd.mul_add(sumi as f32, *a);
            }
        }
        super::hsum8_x86(&acc)
    }

    fn vec_dot_r4_fn(k: &KernelTable) -> Option<super::VecDotR4Fn<Self, Self>> {
        k.q8_0_q8_0_r4
    }

    fn vec_dot_x4_fn(k: &KernelTable) -> Option<super::VecDotX4Fn<Self, Self>> {
        k.q8_0_q8_0_x4
    }

    fn vec_dot_r4xt_fns(k: &KernelTable) -> super::R4Tokens<Self, Self> {
        k.q8_0_q8_0_r4xt
    }

    fn fast_rows(k: &KernelTable) -> Option<crate::rows16::FastRows<Self, Self>> {
        k.q8_0_q8_0_r16.map(|simd| crate::rows16::FastRows {
            simd,
            scalar: crate::rows16::q8_0_q8_0_rows_scalar,
            prepare: crate::rows16::q8_0_offset,
        })
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, Self> {
        k.q8_0_q8_0
    }

    fn quantize_activation_fn(k: &KernelTable) -> QuantizeFn<Self> {
        k.quantize_q8_0
    }
}
