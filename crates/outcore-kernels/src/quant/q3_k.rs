//! Q3_K: super-blocks of 256 = 16 groups of 16 three-bit quants (2 low bits in `qs`, the high bit
//! in `hmask`), 6-bit signed group scales packed into 12 bytes, `x = d * (sc - 32) * (q - 4)`
//! (110 bytes, 3.4375 bits per weight).
//!
//! Follows ggml `ggml-common.h` (`block_q3_K`), `ggml-quants.c` (`quantize_row_q3_K_ref`,
//! `dequantize_row_q3_K`) and `ggml-cpu/quants.c` (`ggml_vec_dot_q3_K_q8_K_generic`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::k_common::make_q3_quants;
use super::{nearest_int, BlockQ8K, GgmlBlock, VecDotFn, QK_K};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bits of the quants.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 six-bit scales.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

/// The 16 scales (still offset by 32) of a Q3_K block, unpacked like ggml's `aux`/`kmask` code.
#[inline(always)]
pub(crate) fn unpack_scales(s: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (o, a) in out.chunks_exact_mut(4).zip(aux) {
        for (o, b) in o.iter_mut().zip(a.to_le_bytes()) {
            *o = b as i8;
        }
    }
    out
}

impl GgmlBlock for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const BLOCK: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
            let d_all = b.d.to_f32();
            let scales = unpack_scales(&b.scales);
            let mut m = 1u8;
            let mut is = 0;
            let mut out = 0;
            for n in (0..QK_K).step_by(128) {
                let q = &b.qs[n / 4..n / 4 + 32];
                for shift in [0u32, 2, 4, 6] {
                    for half in 0..2 {
                        let dl = d_all * (scales[is] as i32 - 32) as f32;
                        is += 1;
                        for l in 16 * half..16 * half + 16 {
                            let lo = ((q[l] >> shift) & 3) as i32;
                            let hi = if b.hmask[l] & m != 0 { 0 } else { 4 };
                            y[out] = dl * (lo - hi) as f32;
                            out += 1;
                        }
                    }
                    m <<= 1;
                }
            }
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            let mut l_all = [0i8; QK_K];
            let mut scales = [0f32; QK_K / 16];
            let mut max_scale = 0.0f32;
            let mut amax = 0.0f32;
            for j in 0..QK_K / 16 {
                scales[j] = make_q3_quants(
                    16,
                    4,
                    &x[16 * j..16 * j + 16],
                    &mut l_all[16 * j..16 * j + 16],
                    true,
                );
                let scale = scales[j].abs();
                if scale > amax {
                    amax = scale;
                    max_scale = scales[j];
                }
            }
            b.scales = [0; 12];
            if max_scale != 0.0 {
                let iscale = -32.0f32 / max_scale;
                for j in 0..QK_K / 16 {
                    // C: int8_t l = nearest_int(...); the value fits in i8 after the clamp.
                    let l = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
                    if j < 8 {
                        b.scales[j] = l & 0xF;
                    } else {
                        b.scales[j - 8] |= (l & 0xF) << 4;
                    }
                    b.scales[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
                }
                b.d = f16::from_f32(1.0 / iscale);
            } else {
                b.d = f16::from_f32(0.0);
            }
            for j in 0..QK_K / 16 {
                let lo = if j < 8 {
                    b.scales[j] & 0xF
                } else {
                    b.scales[j - 8] >> 4
                };
                let sc = (lo | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
                let d = b.d.to_f32() * sc as f32;
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    let l = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                    l_all[16 * j + ii] = (l + 4) as i8;
                }
            }
            b.hmask = [0; QK_K / 8];
            let mut m = 0;
            let mut hm = 1u8;
            for l in l_all.iter_mut() {
                if *l > 3 {
                    b.hmask[m] |= hm;
                    *l -= 4;
                }
                m += 1;
                if m == QK_K / 8 {
                    m = 0;
                    hm <<= 1;
                }
            }
            for j in (0..QK_K).step_by(128) {
                for l in 0..32 {
                    b.qs[j / 4 + l] = l_all[j + l] as u8
                        | (l_all[j + l + 32] as u8) << 2
                        | (l_all[j + l + 64] as u8) << 4
                        | (l_all[j + l + 96] as u8) << 6;
                }
            }
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        let mut aux8 = [0i8; QK_K];
        for (x, y) in x.iter().zip(y) {
            let mut aux32 = [0i32; 8];
            let mut m = 1u8;
            let mut a = 0;
            for j in (0..QK_K).step_by(128) {
                let q3 = &x.qs[j / 4..j / 4 + 32];
                for shift in [0u32, 2, 4, 6] {
                    for l in 0..32 {
                        let v = ((q3[l] >> shift) & 3) as i8;
                        aux8[a + l] = v - if x.hmask[l] & m != 0 { 0 } else { 4 };
                    }
                    a += 32;
                    m <<= 1;
                }
            }
            let scales = unpack_scales(&x.scales);
            for j in 0..QK_K / 16 {
                let sc = scales[j] as i32 - 32;
                for half in 0..2 {
                    let o = 16 * j + 8 * half;
                    for l in 0..8 {
                        let p = y.qs[o + l] as i32 * aux8[o + l] as i32;
                        aux32[l] += sc * p;
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
        k.q3_k_q8_k
    }
}
