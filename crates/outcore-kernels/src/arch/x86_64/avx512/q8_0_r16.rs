//! AVX-512 Q8_0 x Q8_0 products of sixteen weight rows in the fast arithmetic
//! (`crate::rows16`), laid out like `q4_1_r16`: per block, two sets of four zmm (each a load
//! and three 128-bit inserts: four rows' first or second sixteen quants) are transposed within
//! 128-bit lanes into eight zmm, one per group of four quants, whose lanes are the sixteen rows.
//! The activations come offset by 128 (`rows16::q8_0_offset`) as `vpdpbusd`'s unsigned operand,
//! broadcast four bytes at a time; `128 * sum(w)` per row, one set of eight `vpdpbusd` per block
//! shared by every token, takes the offset back out, exactly.

use std::arch::x86_64::*;

use super::r16::{by_tokens, row_offsets, run, transpose, Pass, TOKENS};
use crate::arch::x86_64::avx2::PREFETCH_ROWS_AHEAD;
use crate::quant::BlockQ8_0;
use crate::rows16::R16;

/// `out[r * n_tokens + t]` for the sixteen rows of `w` (`nb` blocks each) and `n_tokens`
/// activation rows prepared by `rows16::q8_0_offset`, with the bits of
/// `rows16::q8_0_q8_0_rows_scalar`.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q8_0_r16(
    w: &[BlockQ8_0],
    nb: usize,
    act: &[BlockQ8_0],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    let args = (w, nb, act, scales);
    run("q8_0_r16", args, n_tokens, out, |p, nt| {
        // SAFETY: same features as this function; `run` checked `p`'s slices.
        unsafe { by_tokens!(nt, pass, p) }
    });
}

/// The accumulators (lane order) of tokens `t0..t0 + T`; entries past `T` are unused.
///
/// # Safety
/// Requires the features of [`q8_0_r16`] and the slice lengths it checks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pass<const T: usize>(c: &Pass<'_, BlockQ8_0, BlockQ8_0>) -> [[f32; R16]; TOKENS] {
    let nb = c.nb;
    let bs = size_of::<BlockQ8_0>();
    let mut a = [_mm512_setzero_ps(); T];
    let offs = row_offsets(nb * bs);
    // SAFETY: `offs` is 16 readable i32.
    let vindex = unsafe { _mm512_loadu_si512(offs.as_ptr() as *const __m512i) };
    let k128 = _mm512_set1_epi8(-128);
    let base = c.w.as_ptr();
    let group = R16 * nb * bs;
    for i in 0..nb {
        // The four-row kernels' linear sweep (`avx2::prefetch_rows`).
        let pf = (base as *const i8).wrapping_add(group + PREFETCH_ROWS_AHEAD + i * R16 * bs);
        for line in 0..(R16 * bs).div_ceil(64) {
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64 * line));
        }
        // SAFETY: rows 0..16 have `nb` blocks each (checked by the caller): block `i` of row
        // `r` is `base + r * nb + i`, its 32 quants at byte offset 2; the gather reads the
        // block's first four bytes (`d` and two quants).
        let (lo, hi, h) = unsafe {
            let q = |r: usize, half: usize| {
                base.add(r * nb + i).cast::<u8>().add(2 + 16 * half) as *const __m128i
            };
            let four = |r: usize, half: usize| {
                let v = _mm512_castsi128_si512(_mm_loadu_si128(q(r, half)));
                let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(q(r + 1, half)));
                let v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(q(r + 2, half)));
                _mm512_inserti32x4::<3>(v, _mm_loadu_si128(q(r + 3, half)))
            };
            let h = _mm512_i32gather_epi32::<1>(vindex, base.add(i).cast::<i32>());
            (
                transpose([four(0, 0), four(4, 0), four(8, 0), four(12, 0)]),
                transpose([four(0, 1), four(4, 1), four(8, 1), four(12, 1)]),
                h,
            )
        };
        // The weights' quants in groups of four per lane: g[k] = quants 4k..4k+4 of each row.
        let g = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]];
        let mut corr = _mm512_setzero_si512();
        for gk in g {
            corr = _mm512_dpbusd_epi32(corr, k128, gk);
        }
        let dx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
        for (t, a) in a.iter_mut().enumerate() {
            let at = (c.t0 + t) * nb + i;
            let yq = c.act[at].qs.as_ptr() as *const i32;
            // SAFETY: `qs` is 32 readable bytes: eight unaligned i32 reads.
            let y = |k: usize| _mm512_set1_epi32(unsafe { yq.add(k).read_unaligned() });
            let mut s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), y(0), g[0]);
            for (k, gk) in g.iter().enumerate().skip(1) {
                s = _mm512_dpbusd_epi32(s, y(k), *gk);
            }
            let s = _mm512_sub_epi32(s, corr);
            let dd = _mm512_mul_ps(dx, _mm512_set1_ps(c.scales[at][0]));
            *a = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s), *a);
        }
    }
    let mut out = [[0f32; R16]; TOKENS];
    for (o, a) in out.iter_mut().zip(a) {
        // SAFETY: each row of `out` is 16 writable f32.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}
