//! Q5_1: 32 5-bit quants with an f16 scale and min, `x = d*q + m` (24 bytes).
//!
//! Follows ggml `ggml-common.h` (`block_q5_1`), `ggml-quants.c` (`quantize_row_q5_1_ref`,
//! `dequantize_row_q5_1`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q5_1_q8_1_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q4_1::min_max;
use super::{BlockQ8_1, GgmlBlock, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

pub const QK5_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Min.
    pub m: f16,
    /// 5th bits (little-endian u32).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

impl GgmlBlock for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLOCK: usize = QK5_1;
    type Dot = BlockQ8_1;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
            let d = b.d.to_f32();
            let m = b.m.to_f32();
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..QK5_1 / 2 {
                let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
                let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
                let x0 = ((b.qs[j] & 0x0F) | xh_0) as f32;
                let x1 = ((b.qs[j] >> 4) | xh_1) as f32;
                y[j] = x0 * d + m;
                y[j + QK5_1 / 2] = x1 * d + m;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
            let (min, max) = min_max(x);
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            b.m = f16::from_f32(min);
            let mut qh = 0u32;
            for j in 0..QK5_1 / 2 {
                let x0 = (x[j] - min) * id;
                let x1 = (x[QK5_1 / 2 + j] - min) * id;
                // C: (uint8_t)(x + 0.5f); the value is in [0.5, 31.5] so no clamp is needed.
                let xi0 = (x0 + 0.5) as u8;
                let xi1 = (x1 + 0.5) as u8;
                b.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
                qh |= (((xi0 & 0x10) >> 4) as u32) << j;
                qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK5_1 / 2);
            }
            b.qh = qh.to_le_bytes();
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let qh = u32::from_le_bytes(x.qh);
            let mut sumi0 = 0i32;
            let mut sumi1 = 0i32;
            for j in 0..QK5_1 / 2 {
                let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
                let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
                let x0 = ((x.qs[j] & 0x0F) | xh_0) as i32;
                let x1 = ((x.qs[j] >> 4) | xh_1) as i32;
                sumi0 += x0 * y.qs[j] as i32;
                sumi1 += x1 * y.qs[j + QK5_1 / 2] as i32;
            }
            let sumi = sumi0 + sumi1;
            sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
        }
        sumf
    }

    fn vec_dot_x4_fn(k: &KernelTable) -> Option<super::VecDotX4Fn<Self, BlockQ8_1>> {
        k.q5_1_q8_1_x4
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8_1> {
        k.q5_1_q8_1
    }
}
