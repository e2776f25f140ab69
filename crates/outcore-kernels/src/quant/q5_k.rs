//! Q5_K: like Q4_K with a fifth bit per quant in `qh` (176 bytes, 5.5 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q5_K`), `ggml-quants.c` (`quantize_row_q5_K_ref`,
//! `dequantize_row_q5_K`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q5_K_q8_K_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::q4_k::{quantize_scales_k4, requantize_k4};
use super::{get_scale_min_k4, unpack_scales_mins_k4, BlockQ8K, GgmlBlock, VecDotFn, QK_K};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; 12],
    /// High bits: bit 2c of `qh[l]` for element 64c + l, bit 2c+1 for 64c + 32 + l.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out like Q4_K.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

impl GgmlBlock for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            let min = b.dmin.to_f32();
            for (c, y) in y.chunks_exact_mut(64).enumerate() {
                let ql = &b.qs[32 * c..32 * c + 32];
                let u1 = 1u8 << (2 * c);
                let u2 = 2u8 << (2 * c);
                let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
                let (d1, m1) = (d * sc as f32, min * m as f32);
                let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
                let (d2, m2) = (d * sc as f32, min * m as f32);
                for l in 0..32 {
                    let h = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                    y[l] = d1 * ((ql[l] & 0xF) + h) as f32 - m1;
                }
                for l in 0..32 {
                    let h = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                    y[l + 32] = d2 * ((ql[l] >> 4) + h) as f32 - m2;
                }
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut l_all = [0u8; QK_K];
            let (d, dmin, scales) = quantize_scales_k4(x, 31, -0.5, 15, &mut l_all);
            b.d = d;
            b.dmin = dmin;
            b.scales = scales;
            requantize_k4(x, d, dmin, &scales, 31, &mut l_all);
            b.qh = [0; QK_K / 8];
            let mut m1 = 1u8;
            let mut m2 = 2u8;
            for (c, ql) in b.qs.chunks_exact_mut(32).enumerate() {
                let n = 64 * c;
                for j in 0..32 {
                    let mut l1 = l_all[n + j];
                    if l1 > 15 {
                        l1 -= 16;
                        b.qh[j] |= m1;
                    }
                    let mut l2 = l_all[n + j + 32];
                    if l2 > 15 {
                        l2 -= 16;
                        b.qh[j] |= m2;
                    }
                    ql[j] = l1 | (l2 << 4);
                }
                m1 = m1.wrapping_shl(2);
                m2 = m2.wrapping_shl(2);
            }
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let (scales, mins) = unpack_scales_mins_k4(&x.scales);
            let mut sumi = 0i32;
            for j in 0..QK_K / 16 {
                sumi += y.bsums[j] as i32 * mins[j / 2] as i32;
            }
            let mut aux32 = [0i32; 8];
            for j in 0..QK_K / 32 {
                let scale = scales[j] as i32;
                let q4 = &x.qs[32 * (j / 2)..32 * (j / 2) + 32];
                let shift = 4 * (j % 2);
                let hbit = 1u8 << j;
                for k in 0..4 {
                    for l in 0..8 {
                        let i = 8 * k + l;
                        let h = if x.qh[i] & hbit != 0 { 16 } else { 0 };
                        let a = (((q4[i] >> shift) & 0xF) + h) as i32;
                        aux32[l] += scale * (y.qs[32 * j + i] as i32 * a);
                    }
                }
            }
            let d = x.d.to_f32() * y.d;
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
            let dmin = x.dmin.to_f32() * y.d;
            sumf -= dmin * sumi as f32;
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8K> {
        k.q5_k_q8_k
    }
}
