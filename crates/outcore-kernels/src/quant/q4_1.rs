//! Q4_1: 32 4-bit quants with an f16 scale and an f16 min, `x = d*q + m` (20 bytes).
//!
//! Follows ggml `ggml-common.h` (`block_q4_1`), `ggml-quants.c` (`quantize_row_q4_1_ref`,
//! `dequantize_row_q4_1`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q4_1_q8_1_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{BlockQ8_1, GgmlBlock, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

pub const QK4_1: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Min.
    pub m: f16,
    /// Nibbles: element j low, element j + 16 high.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// (min, max) of a block with ggml's loop (starting from +/-FLT_MAX).
#[inline(always)]
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

impl GgmlBlock for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLOCK: usize = QK4_1;
    type Dot = BlockQ8_1;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
            let d = b.d.to_f32();
            let m = b.m.to_f32();
            for j in 0..QK4_1 / 2 {
                let x0 = (b.qs[j] & 0x0F) as f32;
                let x1 = (b.qs[j] >> 4) as f32;
                y[j] = x0 * d + m;
                y[j + QK4_1 / 2] = x1 * d + m;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
            let (min, max) = min_max(x);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            b.m = f16::from_f32(min);
            for j in 0..QK4_1 / 2 {
                let x0 = (x[j] - min) * id;
                let x1 = (x[QK4_1 / 2 + j] - min) * id;
                let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
                let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
                b.qs[j] = xi0 | (xi1 << 4);
            }
        }
    }

    /// llama.cpp's x86 order (`ggml_vec_dot_q4_1_q8_1`, AVX2 path): eight f32 lane
    /// accumulators, lane `l` adding `(dx*dy) * sum(q*y over elements 4l..4l+4)` with one FMA per
    /// block; `m*s` summed with FMAs in a scalar; at the end `hsum8(lanes) + summs`.
    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8_1]) -> f32 {
        let mut acc = [0.0f32; 8];
        let mut summs = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let dd = x.d.to_f32() * y.d.to_f32();
            summs = x.m.to_f32().mul_add(y.s.to_f32(), summs);
            for (l, a) in acc.iter_mut().enumerate() {
                let mut sumi = 0i32;
                for e in 4 * l..4 * l + 4 {
                    let q = if e < 16 {
                        x.qs[e] & 0x0F
                    } else {
                        x.qs[e - 16] >> 4
                    };
                    sumi += q as i32 * y.qs[e] as i32;
                }
                *a = dd.mul_add(sumi as f32, *a);
            }
        }
        super::hsum8_x86(&acc) + summs
    }

    fn vec_dot_r4_fn(k: &KernelTable) -> Option<super::VecDotR4Fn<Self, BlockQ8_1>> {
        k.q4_1_q8_1_r4
    }

    fn vec_dot_x4_fn(k: &KernelTable) -> Option<super::VecDotX4Fn<Self, BlockQ8_1>> {
        k.q4_1_q8_1_x4
    }

    fn vec_dot_r4xt_fns(k: &KernelTable) -> super::R4Tokens<Self, BlockQ8_1> {
        k.q4_1_q8_1_r4xt
    }

    fn fast_rows(k: &KernelTable) -> Option<crate::rows16::FastRows<Self, BlockQ8_1>> {
        k.q4_1_q8_1_r16.map(|simd| crate::rows16::FastRows {
            simd,
            scalar: crate::rows16::q4_1_q8_1_rows_scalar,
            prepare: crate::rows16::q8_1_scales,
        })
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8_1> {
        k.q4_1_q8_1
    }
}
