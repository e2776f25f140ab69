//! Q4_0: 32 4-bit quants `q - 8` with one f16 scale (18 bytes, 4.5 bits per weight).
//! Element j sits in the low nibble of `qs[j]`, element j + 16 in the high nibble.
//!
//! Follows ggml `ggml-common.h` (`block_q4_0`), `ggml-quants.c` (`quantize_row_q4_0_ref`,
//! `dequantize_row_q4_0`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q4_0_q8_0_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{BlockQ8_0, GgmlBlock, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

pub const QK4_0: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// The value with the largest magnitude (first one on ties), as ggml's Q4_0/Q5_0 quantizers pick it.
#[inline(always)]
pub(crate) fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

impl GgmlBlock for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLOCK: usize = QK4_0;
    type Dot = BlockQ8_0;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
            let d = b.d.to_f32();
            for j in 0..QK4_0 / 2 {
                let x0 = (b.qs[j] & 0x0F) as i32 - 8;
                let x1 = (b.qs[j] >> 4) as i32 - 8;
                y[j] = x0 as f32 * d;
                y[j + QK4_0 / 2] = x1 as f32 * d;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
            let max = signed_absmax(x);
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            for j in 0..QK4_0 / 2 {
                let x0 = x[j] * id;
                let x1 = x[QK4_0 / 2 + j] * id;
                // C: MIN(15, (int8_t)(x + 8.5f)), truncation toward zero.
                let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
                let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
                b.qs[j] = xi0 | (xi1 << 4);
            }
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK4_0 / 2 {
                let v0 = (x.qs[j] & 0x0F) as i32 - 8;
                let v1 = (x.qs[j] >> 4) as i32 - 8;
                sumi0 += v0 * y.qs[j] as i32;
                sumi1 += v1 * y.qs[j + QK4_0 / 2] as i32;
            }
            let sumi = sumi0 + sumi1;
            sumf += sumi as f32 * x.d.to_f32() * y.d.to_f32();
        }
        sumf
    }

    fn vec_dot_x4_fn(k: &KernelTable) -> Option<super::VecDotX4Fn<Self, BlockQ8_0>> {
        k.q4_0_q8_0_x4
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8_0> {
        k.q4_0_q8_0
    }
}
