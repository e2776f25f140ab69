//! Q8_1: 32 int8 quants with an f16 scale and an f16 `s = d * sum(qs)` (36 bytes). Used for the
//! activations of Q4_1/Q5_1 dot products.
//!
//! Follows ggml `ggml-common.h` (`block_q8_1`), `ggml-quants.c` (`quantize_row_q8_1_ref`) and,
//! for the activation quantizer, `ggml-cpu/arch/x86/quants.c` (`quantize_row_q8_1`). ggml has no
//! `dequantize_row_q8_1` or Q8_1 x Q8_1 dot; the ones here are the obvious `d * q` and integer dot.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{q8_0, GgmlBlock, QuantizeFn, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

pub const QK8_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK8_1],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

impl GgmlBlock for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const BLOCK: usize = QK8_1;
    type Dot = BlockQ8_1;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
            let d = b.d.to_f32();
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = q as f32 * d;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
            let amax = q8_0::amax(x);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            let mut sum = 0i32;
            for (q, &v) in b.qs.iter_mut().zip(x) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            b.s = f16::from_f32(sum as f32 * d);
        }
    }

    fn quantize_activation_scalar(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
            let d = q8_0::quantize_block_x86(x, &mut b.qs);
            let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
            b.d = f16::from_f32(d);
            b.s = f16::from_f32(d * sum as f32);
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let mut sumi = 0i32;
            for j in 0..QK8_1 {
                sumi += x.qs[j] as i32 * y.qs[j] as i32;
            }
            sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
        }
        sumf
    }

    fn vec_dot_fn(_k: &KernelTable) -> VecDotFn<Self, Self> {
        Self::vec_dot_scalar
    }

    fn quantize_activation_fn(k: &KernelTable) -> QuantizeFn<Self> {
        k.quantize_q8_1
    }
}
