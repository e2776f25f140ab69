//! AVX2 Q4_K and Q6_K dot products for `R` weight rows at once (`R = 4`: the four-row kernels
//! of single-token products). Each row is the single-row AVX2 kernel (same lanes, same float
//! steps, so the same bits as the scalar twin); the activation block is loaded once for all rows
//! and the rows run independent float chains.

use std::arch::x86_64::*;

use super::{
    add_lanes, finish_sums, h2f, load256, prefetch_rows, sub32_two_scales, sub32_unsigned,
};
use crate::quant::{unpack_scales_mins_k4, BlockQ4K, BlockQ6K, BlockQ8K, QK_K};

/// The 256 activation quants as eight 32-byte vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn load_act(y: &BlockQ8K) -> [__m256i; 8] {
    let mut a = [_mm256_setzero_si256(); 8];
    for (k, a) in a.iter_mut().enumerate() {
        // SAFETY: y.qs[32k..32k + 32] is in bounds (k < 8).
        *a = unsafe { load256(y.qs.as_ptr().add(32 * k) as *const u8) };
    }
    a
}

/// Q4_K x Q8_K for `R` rows (the shortest row or activation decides the block count).
///
/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn q4_k_rows<const R: usize>(xs: [&[BlockQ4K]; R], y: &[BlockQ8K]) -> [f32; R] {
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sums = [_mm256_setzero_ps(); R];
    let mut sumf = [0f32; R];
    for i in 0..nb {
        let yb = &y[i];
        let a = load_act(yb);
        prefetch_rows(&xs, i);
        for r in 0..R {
            let x = &xs[r][i];
            let (scales, mins) = unpack_scales_mins_k4(&x.scales);
            let mut sumi = 0i32;
            for j in 0..QK_K / 16 {
                sumi += yb.bsums[j] as i32 * mins[j / 2] as i32;
            }
            let mut acc = _mm256_setzero_si256();
            for c in 0..4 {
                // SAFETY: qs[32c..32c + 32] is in bounds (c < 4).
                let q = unsafe { load256(x.qs.as_ptr().add(32 * c)) };
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                acc = sub32_unsigned(acc, lo, a[2 * c], scales[2 * c] as i32);
                acc = sub32_unsigned(acc, hi, a[2 * c + 1], scales[2 * c + 1] as i32);
            }
            sums[r] = add_lanes(sums[r], h2f(x.d) * yb.d, acc);
            let dmin = h2f(x.dmin) * yb.d;
            sumf[r] -= dmin * sumi as f32;
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = finish_sums(sumf[r], sums[r]);
    }
    out
}

/// Q6_K x Q8_K for `R` rows (the shortest row or activation decides the block count).
///
/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn q6_k_rows<const R: usize>(xs: [&[BlockQ6K]; R], y: &[BlockQ8K]) -> [f32; R] {
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut sums = [_mm256_setzero_ps(); R];
    for i in 0..nb {
        let yb = &y[i];
        let a = load_act(yb);
        prefetch_rows(&xs, i);
        for r in 0..R {
            let x = &xs[r][i];
            let mut acc = _mm256_setzero_si256();
            for c in 0..2 {
                // SAFETY: ql[64c..64c + 64] and qh[32c..32c + 32] are in bounds (c < 2).
                let (qa, qb, qh) = unsafe {
                    (
                        load256(x.ql.as_ptr().add(64 * c)),
                        load256(x.ql.as_ptr().add(64 * c + 32)),
                        load256(x.qh.as_ptr().add(32 * c)),
                    )
                };
                let h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4);
                let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4);
                let h4 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4);
                let h6 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4);
                let w = [
                    _mm256_or_si256(_mm256_and_si256(qa, m4), h0),
                    _mm256_or_si256(_mm256_and_si256(qb, m4), h2),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), h4),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), h6),
                ];
                for (k, w) in w.into_iter().enumerate() {
                    let w = _mm256_sub_epi8(w, m32);
                    let g = 8 * c + 2 * k; // first 16-element group of this 32-element run
                    acc = sub32_two_scales(
                        acc,
                        w,
                        a[4 * c + k],
                        x.scales[g] as i32,
                        x.scales[g + 1] as i32,
                    );
                }
            }
            sums[r] = add_lanes(sums[r], h2f(x.d) * yb.d, acc);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = finish_sums(0.0, sums[r]);
    }
    out
}
