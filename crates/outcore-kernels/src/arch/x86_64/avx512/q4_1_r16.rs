//! AVX-512 Q4_1 x Q8_1 products of sixteen weight rows in the fast arithmetic
//! (`crate::rows16`): one zmm of accumulators holds the sixteen rows of a token, so a block's
//! float steps (scale, convert, two FMAs) are four vector operations for sixteen (row, token)
//! pairs instead of three per pair.
//!
//! Per block, four rows' nibbles go into each of four zmm (a load and three 128-bit inserts)
//! and an in-lane 4x4 transposition of dwords gives, for each group `k` of four bytes, a zmm
//! whose lanes hold the sixteen rows' bytes `4k..4k+4`; the sixteen `d, m` pairs come in one
//! gather. Each token's block sums are then eight `vpdpbusd` with the token's four bytes
//! broadcast from memory: no horizontal sums at all. Up to [`TOKENS`] tokens share one pass.

use std::arch::x86_64::*;

use super::r16::{by_tokens, row_offsets, run, transpose, Pass, TOKENS};
use crate::arch::x86_64::avx2::PREFETCH_ROWS_AHEAD;
use crate::quant::{BlockQ4_1, BlockQ8_1};
use crate::rows16::R16;

/// `out[r * n_tokens + t]` for the sixteen rows of `w` (`nb` blocks each) and `n_tokens`
/// activation rows, with the bits of `rows16::q4_1_q8_1_rows_scalar`.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q4_1_r16(
    w: &[BlockQ4_1],
    nb: usize,
    act: &[BlockQ8_1],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    let args = (w, nb, act, scales);
    run("q4_1_r16", args, n_tokens, out, |p, nt| {
        // SAFETY: same features as this function; `run` checked `p`'s slices.
        unsafe { by_tokens!(nt, pass, p) }
    });
}

/// The accumulators (lane order) of tokens `t0..t0 + T`; entries past `T` are unused.
///
/// # Safety
/// Requires the features of [`q4_1_r16`] and the slice lengths it checks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pass<const T: usize>(c: &Pass<'_, BlockQ4_1, BlockQ8_1>) -> [[f32; R16]; TOKENS] {
    let nb = c.nb;
    let mut a = [_mm512_setzero_ps(); T];
    let m4 = _mm512_set1_epi8(0x0F);
    // Byte offset of each lane's row for the gather of the `d, m` pairs.
    let offs = row_offsets(nb * size_of::<BlockQ4_1>());
    // SAFETY: `offs` is 16 readable i32.
    let vindex = unsafe { _mm512_loadu_si512(offs.as_ptr() as *const __m512i) };
    let base = c.w.as_ptr();
    let group = R16 * nb * size_of::<BlockQ4_1>();
    for i in 0..nb {
        // The four-row kernels' linear sweep (`avx2::prefetch_rows`): sixteen rows walked in
        // step are sixteen streams, too many for the hardware prefetcher.
        let ahead = group + PREFETCH_ROWS_AHEAD + i * R16 * size_of::<BlockQ4_1>();
        let pf = (base as *const i8).wrapping_add(ahead);
        for line in 0..(R16 * size_of::<BlockQ4_1>()).div_ceil(64) {
            _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(64 * line));
        }
        // SAFETY: rows 0..16 have `nb` blocks each (checked by the caller): block `i` of row
        // `r` is `base + r * nb + i`, and `qs` is 16 bytes at offset 4 of its block.
        let (z, h) = unsafe {
            let q = |r: usize| base.add(r * nb + i).cast::<u8>().add(4) as *const __m128i;
            let four = |r: usize| {
                let v = _mm512_castsi128_si512(_mm_loadu_si128(q(r)));
                let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(q(r + 1)));
                let v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(q(r + 2)));
                _mm512_inserti32x4::<3>(v, _mm_loadu_si128(q(r + 3)))
            };
            let h = _mm512_i32gather_epi32::<1>(vindex, base.add(i).cast::<i32>());
            ([four(0), four(4), four(8), four(12)], h)
        };
        // Zmm k: dword k (bytes 4k..4k+4: elements 4k.. low nibbles, 16+4k.. high) of every row.
        let g = transpose(z);
        let lo = g.map(|g| _mm512_and_si512(g, m4));
        let hi = g.map(|g| _mm512_and_si512(_mm512_srli_epi16(g, 4), m4));
        let dx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
        let mx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
        for (t, a) in a.iter_mut().enumerate() {
            let at = (c.t0 + t) * nb + i;
            let yq = c.act[at].qs.as_ptr() as *const i32;
            // SAFETY: `qs` is 32 readable bytes: eight unaligned i32 reads.
            let y = |k: usize| _mm512_set1_epi32(unsafe { yq.add(k).read_unaligned() });
            let mut s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], y(0));
            s = _mm512_dpbusd_epi32(s, lo[1], y(1));
            s = _mm512_dpbusd_epi32(s, lo[2], y(2));
            s = _mm512_dpbusd_epi32(s, lo[3], y(3));
            s = _mm512_dpbusd_epi32(s, hi[0], y(4));
            s = _mm512_dpbusd_epi32(s, hi[1], y(5));
            s = _mm512_dpbusd_epi32(s, hi[2], y(6));
            s = _mm512_dpbusd_epi32(s, hi[3], y(7));
            let [dy, sy] = c.scales[at];
            let dd = _mm512_mul_ps(dx, _mm512_set1_ps(dy));
            *a = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s), *a);
            *a = _mm512_fmadd_ps(mx, _mm512_set1_ps(sy), *a);
        }
    }
    let mut out = [[0f32; R16]; TOKENS];
    for (o, a) in out.iter_mut().zip(a) {
        // SAFETY: each row of `out` is 16 writable f32.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}
