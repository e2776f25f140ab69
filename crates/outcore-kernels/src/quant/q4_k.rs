//! Q4_K: super-blocks of 256 = 8 groups of 32 four-bit quants, `x = d*sc*q - dmin*m` with 6-bit
//! group scales/mins packed into 12 bytes (144 bytes, 4.5 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q4_K`), `ggml-quants.c` (`quantize_row_q4_K_ref`,
//! `dequantize_row_q4_K`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q4_K_q8_K_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_common::make_qkx2_quants;
use super::{
    get_scale_min_k4, nearest_int, unpack_scales_mins_k4, BlockQ8K, GgmlBlock, VecDotFn, QK_K,
};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; 12],
    /// Quants: 64-element chunks, element l low nibble, l + 32 high nibble.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Packs 8 six-bit scales and mins the way `quantize_row_q4_K_ref` does (shared with Q5_K).
pub(crate) fn pack_scales_mins_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The scale search both Q4_K and Q5_K run per 32-element group (weights `av_x + |x|`), then the
/// 6-bit quantization of the scales. Returns (d, dmin, packed scales) and leaves `l_all`
/// holding the first-pass quants.
pub(crate) fn quantize_scales_k4(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l_all: &mut [u8; QK_K],
) -> (f16, f16, [u8; 12]) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for l in 0..32 {
            weights[l] = av_x + xs[l].abs();
        }
        let (s, m) = make_qkx2_quants(
            32,
            nmax,
            xs,
            &weights,
            &mut l_all[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
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
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        // C: uint8_t ls = nearest_int(...); then MIN(63, ls).
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    (
        f16::from_f32(max_scale / 63.0),
        f16::from_f32(max_min / 63.0),
        pack_scales_mins_k4(&ls, &lm),
    )
}

/// Final pass shared by Q4_K/Q5_K: requantize each group with the stored (rounded) scales.
pub(crate) fn requantize_k4(
    x: &[f32],
    d: f16,
    dmin: f16,
    scales: &[u8; 12],
    nmax: i32,
    l_all: &mut [u8; QK_K],
) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d = d.to_f32() * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax);
            l_all[32 * j + ii] = l as u8;
        }
    }
}

impl GgmlBlock for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            let d = b.d.to_f32();
            let min = b.dmin.to_f32();
            for (c, y) in y.chunks_exact_mut(64).enumerate() {
                let q = &b.qs[32 * c..32 * c + 32];
                let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
                let (d1, m1) = (d * sc as f32, min * m as f32);
                let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
                let (d2, m2) = (d * sc as f32, min * m as f32);
                for l in 0..32 {
                    y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                }
                for l in 0..32 {
                    y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut l_all = [0u8; QK_K];
            let (d, dmin, scales) = quantize_scales_k4(x, 15, -1.0, 20, &mut l_all);
            b.d = d;
            b.dmin = dmin;
            b.scales = scales;
            requantize_k4(x, d, dmin, &scales, 15, &mut l_all);
            for (c, q) in b.qs.chunks_exact_mut(32).enumerate() {
                for l in 0..32 {
                    q[l] = l_all[64 * c + l] | (l_all[64 * c + l + 32] << 4);
                }
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
                for k in 0..4 {
                    for l in 0..8 {
                        let a = ((q4[8 * k + l] >> shift) & 0xF) as i32;
                        aux32[l] += scale * (y.qs[32 * j + 8 * k + l] as i32 * a);
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
        k.q4_k_q8_k
    }

    fn vec_dot_r4_fn(k: &KernelTable) -> Option<super::VecDotR4Fn<Self, BlockQ8K>> {
        k.q4_k_q8_k_r4
    }
}
