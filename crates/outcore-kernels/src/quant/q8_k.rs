//! Q8_K: 256 int8 quants, an f32 scale and 16 group sums (292 bytes). Only used for the
//! activations of k-quant dot products.
//!
//! Follows ggml `ggml-common.h` (`block_q8_K`) and `ggml-quants.c` (`quantize_row_q8_K_ref`,
//! `dequantize_row_q8_K`); llama.cpp's x86 CPU backend uses the reference quantizer for
//! activations too. ggml has no Q8_K x Q8_K dot; the one here is the integer dot times d*d.

use bytemuck::{Pod, Zeroable};

use super::{nearest_int, GgmlBlock, QuantizeFn, VecDotFn, QK_K};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other types).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of the quants in groups of 16.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

impl GgmlBlock for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = b.d * q as f32;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut max = 0.0f32;
            let mut amax = 0.0f32;
            for &v in x {
                let ax = v.abs();
                if ax > amax {
                    amax = ax;
                    max = v;
                }
            }
            if amax == 0.0 {
                b.d = 0.0;
                b.qs = [0; QK_K];
                b.bsums = [0; QK_K / 16];
                continue;
            }
            // ggml uses -127/max (not -128/max) so the AVX kernels of the IQ types stay simple.
            let iscale = -127.0f32 / max;
            for (q, &v) in b.qs.iter_mut().zip(x) {
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                *s = g.iter().map(|&q| q as i32).sum::<i32>() as i16;
            }
            b.d = 1.0 / iscale;
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let mut sumi = 0i32;
            for j in 0..QK_K {
                sumi += x.qs[j] as i32 * y.qs[j] as i32;
            }
            sumf += sumi as f32 * (x.d * y.d);
        }
        sumf
    }

    fn vec_dot_fn(_k: &KernelTable) -> VecDotFn<Self, Self> {
        Self::vec_dot_scalar
    }

    fn quantize_activation_fn(k: &KernelTable) -> QuantizeFn<Self> {
        k.quantize_q8_k
    }
}
