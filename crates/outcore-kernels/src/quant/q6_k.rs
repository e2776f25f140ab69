//! Q6_K: super-blocks of 256 = 16 groups of 16 six-bit quants (4 low bits in `ql`, 2 high bits
//! in `qh`), int8 group scales, `x = d * sc * (q - 32)` (210 bytes, 6.5625 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q6_K`), `ggml-quants.c` (`quantize_row_q6_K_ref`,
//! `dequantize_row_q6_K`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q6_K_q8_K_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_common::make_qx_quants;
use super::{nearest_int, BlockQ8K, GgmlBlock, VecDotFn, GROUP_MAX_EPS, QK_K};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Group scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

/// The 256 signed quants (`q - 32`) of a block in element order.
#[inline(always)]
pub(crate) fn unpack_quants(b: &BlockQ6K, out: &mut [i8; QK_K]) {
    for c in 0..2 {
        let ql = &b.ql[64 * c..64 * c + 64];
        let qh = &b.qh[32 * c..32 * c + 32];
        let a = &mut out[128 * c..128 * c + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
}

impl GgmlBlock for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        let mut q = [0i8; QK_K];
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            unpack_quants(b, &mut q);
            for (i, (y, &q)) in y.iter_mut().zip(&q).enumerate() {
                // (d * sc) * q, as ggml.
                *y = d * b.scales[i / 16] as f32 * q as f32;
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut l_all = [0i8; QK_K];
            let mut scales = [0f32; QK_K / 16];
            let mut max_scale = 0.0f32;
            let mut max_abs_scale = 0.0f32;
            for ib in 0..QK_K / 16 {
                let scale = make_qx_quants(
                    16,
                    32,
                    &x[16 * ib..16 * ib + 16],
                    &mut l_all[16 * ib..16 * ib + 16],
                    1,
                );
                scales[ib] = scale;
                let abs_scale = scale.abs();
                if abs_scale > max_abs_scale {
                    max_abs_scale = abs_scale;
                    max_scale = scale;
                }
            }
            if max_abs_scale < GROUP_MAX_EPS {
                *b = Self::zeroed();
                continue;
            }
            let iscale = -128.0f32 / max_scale;
            b.d = f16::from_f32(1.0 / iscale);
            for ib in 0..QK_K / 16 {
                // C: MIN(127, nearest_int(...)) stored in int8 (the value is >= -128 here).
                b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
            }
            for j in 0..QK_K / 16 {
                let d = b.d.to_f32() * b.scales[j] as f32;
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                    l_all[16 * j + ii] = (l + 32) as i8;
                }
            }
            for c in 0..2 {
                let j = 128 * c;
                for l in 0..32 {
                    let q1 = l_all[j + l] as u8 & 0xF;
                    let q2 = l_all[j + l + 32] as u8 & 0xF;
                    let q3 = l_all[j + l + 64] as u8 & 0xF;
                    let q4 = l_all[j + l + 96] as u8 & 0xF;
                    b.ql[64 * c + l] = q1 | (q3 << 4);
                    b.ql[64 * c + l + 32] = q2 | (q4 << 4);
                    b.qh[32 * c + l] = (l_all[j + l] as u8 >> 4)
                        | ((l_all[j + l + 32] as u8 >> 4) << 2)
                        | ((l_all[j + l + 64] as u8 >> 4) << 4)
                        | ((l_all[j + l + 96] as u8 >> 4) << 6);
                }
            }
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        let mut aux8 = [0i8; QK_K];
        for (x, y) in x.iter().zip(y) {
            unpack_quants(x, &mut aux8);
            let mut aux32 = [0i32; 8];
            for j in 0..QK_K / 16 {
                let scale = x.scales[j] as i32;
                for half in 0..2 {
                    let o = 16 * j + 8 * half;
                    for l in 0..8 {
                        aux32[l] += scale * (y.qs[o + l] as i32 * aux8[o + l] as i32);
                    }
                }
            }
            let d = x.d.to_f32() * y.d;
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
        }
        let mut sumf = 0.0f32;
        for s in sums {
            sumf += s;
        }
        sumf
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8K> {
        k.q6_k_q8_k
    }

    fn vec_dot_r4_fn(k: &KernelTable) -> Option<super::VecDotR4Fn<Self, BlockQ8K>> {
        k.q6_k_q8_k_r4
    }
}
