//! Q2_K: super-blocks of 256 = 16 groups of 16 two-bit quants, `x = d*sc*q - dmin*m` with 4-bit
//! group scales/mins (84 bytes, 2.625 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q2_K`), `ggml-quants.c` (`quantize_row_q2_K_ref`,
//! `dequantize_row_q2_K`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q2_K_q8_K_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_common::make_qkx2_quants;
use super::{nearest_int, BlockQ8K, GgmlBlock, VecDotFn, QK_K};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Group scales (low nibble) and mins (high nibble).
    pub scales: [u8; QK_K / 16],
    /// Quants, 4 per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);

impl GgmlBlock for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            let min = b.dmin.to_f32();
            let mut out = 0;
            let mut is = 0;
            for n in (0..QK_K).step_by(128) {
                let q = &b.qs[n / 4..n / 4 + 32];
                for shift in [0u32, 2, 4, 6] {
                    for half in 0..2 {
                        let sc = b.scales[is];
                        is += 1;
                        let dl = d * (sc & 0xF) as f32;
                        let ml = min * (sc >> 4) as f32;
                        for l in 0..16 {
                            let qv = ((q[l + 16 * half] >> shift) & 3) as f32;
                            y[out] = dl * qv - ml;
                            out += 1;
                        }
                    }
                }
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        const Q4SCALE: f32 = 15.0;
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut l_all = [0u8; QK_K];
            let mut laux = [0u8; 16];
            let mut weights = [0f32; 16];
            let mut mins = [0f32; QK_K / 16];
            let mut scales = [0f32; QK_K / 16];
            let mut max_scale = 0.0f32;
            let mut max_min = 0.0f32;
            for j in 0..QK_K / 16 {
                let xs = &x[16 * j..16 * j + 16];
                for l in 0..16 {
                    weights[l] = xs[l].abs();
                }
                let (s, m) = make_qkx2_quants(
                    16,
                    3,
                    xs,
                    &weights,
                    &mut l_all[16 * j..16 * j + 16],
                    &mut laux,
                    -0.5,
                    0.1,
                    15,
                    true,
                );
                scales[j] = s;
                mins[j] = m;
                if s > max_scale {
                    max_scale = s;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            if max_scale > 0.0 {
                let iscale = Q4SCALE / max_scale;
                for j in 0..QK_K / 16 {
                    b.scales[j] = nearest_int(iscale * scales[j]) as u8;
                }
                b.d = f16::from_f32(max_scale / Q4SCALE);
            } else {
                b.scales = [0; QK_K / 16];
                b.d = f16::from_f32(0.0);
            }
            if max_min > 0.0 {
                let iscale = Q4SCALE / max_min;
                for j in 0..QK_K / 16 {
                    let l = nearest_int(iscale * mins[j]);
                    b.scales[j] |= (l << 4) as u8;
                }
                b.dmin = f16::from_f32(max_min / Q4SCALE);
            } else {
                b.dmin = f16::from_f32(0.0);
            }
            for j in 0..QK_K / 16 {
                let d = b.d.to_f32() * (b.scales[j] & 0xF) as f32;
                if d == 0.0 {
                    continue;
                }
                let dm = b.dmin.to_f32() * (b.scales[j] >> 4) as f32;
                for ii in 0..16 {
                    let l = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3);
                    l_all[16 * j + ii] = l as u8;
                }
            }
            for j in (0..QK_K).step_by(128) {
                for l in 0..32 {
                    b.qs[j / 4 + l] = l_all[j + l]
                        | (l_all[j + l + 32] << 2)
                        | (l_all[j + l + 64] << 4)
                        | (l_all[j + l + 96] << 6);
                }
            }
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in x.iter().zip(y) {
            let sc = &x.scales;
            let mut summs = 0i32;
            for j in 0..16 {
                summs += y.bsums[j] as i32 * (sc[j] >> 4) as i32;
            }
            let dall = y.d * x.d.to_f32();
            let dmin = y.d * x.dmin.to_f32();
            let mut isum = 0i32;
            let mut is = 0;
            let mut q8 = 0;
            for k in 0..QK_K / 128 {
                let q2 = &x.qs[32 * k..32 * k + 32];
                for shift in [0u32, 2, 4, 6] {
                    let d = (sc[is] & 0xF) as i32;
                    is += 1;
                    let mut isuml = 0i32;
                    for l in 0..16 {
                        isuml += y.qs[q8 + l] as i32 * ((q2[l] >> shift) & 3) as i32;
                    }
                    isum += d * isuml;
                    let d = (sc[is] & 0xF) as i32;
                    is += 1;
                    isuml = 0;
                    for l in 16..32 {
                        isuml += y.qs[q8 + l] as i32 * ((q2[l] >> shift) & 3) as i32;
                    }
                    isum += d * isuml;
                    q8 += 32;
                }
            }
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, BlockQ8K> {
        k.q2_k_q8_k
    }
}
