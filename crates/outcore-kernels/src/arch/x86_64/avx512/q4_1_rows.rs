//! AVX-512 Q4_1 x Q8_1 dot products of four weight rows and `T` (1..=4) tokens: the four-row
//! kernels of batched decode (2, 3 and 4 tokens) and of single-token products (`T = 1`).
//!
//! The single-row kernel (`avx2.rs`, `vec_dot_q4_1_q8_1_impl`) keeps eight f32 lanes per
//! product: per block, lane `l` gets `fma(dx * dy, sum(q * y over elements 4l..4l+4), lane)` with
//! `dx * dy` rounded once, and `m * s` goes into its own chain of FMAs. Here every (row, token)
//! runs exactly those steps in ymm lanes, so `out[r][t]` has the single kernel's bits; the
//! activation blocks are loaded once for the four rows and each row's nibbles unpacked once for
//! the `T` tokens. The `m * s` chains are lane `2t + 1` of one FMA per row (as in the AVX2
//! four-token kernel).
//!
//! The kernel is bound by the vector pipes, not by loads, so the choices count operations:
//! `dy` is broadcast once per token and block and `dx * dy` is one multiply per pair, where
//! broadcasting `(dx * dy)[t]` out of a vector took two shuffles per pair; the nibbles come from
//! a 128-bit broadcast load, one variable shift and one mask. Four rows of 4608 elements in L1
//! (thread CPU time per call, Zen 4): 2 / 3 / 4 tokens 1008 / 1314 / 1592 ns with the shuffles,
//! 925 / 1205 / 1458 ns so. Tried and slower or no better: two (row, token) pairs per zmm (Zen 4
//! runs zmm operations as two halves, so the pipe time per product stays the same: 4 tokens
//! 1540 ns), the 16 products `dx * dy` of a block in one zmm and broadcast from memory (1830 ns),
//! and the `m * s` chains of all rows in one zmm FMA (1550 ns).

use std::arch::x86_64::*;

use crate::arch::x86_64::avx2::{common_blocks, hsum_f32x8, load128, load256, prefetch_rows};
use crate::quant::{BlockQ4_1, BlockQ8_1};

/// An f16 pair as the two halves of an i32 (one `vcvtph2ps` converts both).
#[inline(always)]
fn pair(a: half::f16, b: half::f16) -> i32 {
    (a.to_bits() as u32 | (b.to_bits() as u32) << 16) as i32
}

/// Four weight rows times `T` tokens: `out[r][t]` has the bits of the single-row kernel on
/// `(xs[r], ys[t])`. Blocks past the shortest row or activation are ignored, as there.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q4_1_r4xt<const T: usize>(
    xs: [&[BlockQ4_1]; 4],
    ys: [&[BlockQ8_1]; T],
) -> [[f32; T]; 4] {
    let nb = common_blocks(&xs, &ys);
    let mut acc = [[_mm256_setzero_ps(); T]; 4];
    // Per row: lane 2t+1 holds token t's running `m * s` sum; even lanes are unused.
    let mut summs = [_mm256_setzero_ps(); 4];
    let m4 = _mm256_set1_epi8(0x0F);
    // Shift counts per 16-bit word: the high 128 bits take the high nibbles.
    let nib_shift = _mm256_setr_epi64x(0, 0, 0x0004_0004_0004_0004, 0x0004_0004_0004_0004);
    for i in 0..nb {
        prefetch_rows(&xs, i);
        // The tokens' [d, s] pairs, converted together (lanes past T stay zero).
        let mut p = [0i32; 4];
        for t in 0..T {
            p[t] = pair(ys[t][i].d, ys[t][i].s);
        }
        let ds = _mm256_cvtph_ps(_mm_setr_epi32(p[0], p[1], p[2], p[3]));
        let mut dy = [_mm256_setzero_ps(); T];
        let mut b = [_mm256_setzero_si256(); T];
        for t in 0..T {
            dy[t] = _mm256_permutevar8x32_ps(ds, _mm256_set1_epi32(2 * t as i32));
            // SAFETY: activation quants are 32 readable bytes.
            b[t] = unsafe { load256(ys[t][i].qs.as_ptr() as *const u8) };
        }
        for r in 0..4 {
            let x = &xs[r][i];
            // SAFETY: `qs` is 16 readable bytes.
            let raw = _mm256_broadcastsi128_si256(unsafe { load128(x.qs.as_ptr()) });
            let q = _mm256_and_si256(_mm256_srlv_epi16(raw, nib_shift), m4);
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(pair(x.d, x.m)));
            let mx = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
            summs[r] = _mm256_fmadd_ps(mx, ds, summs[r]);
            let dx = _mm256_broadcastss_ps(dm);
            for t in 0..T {
                let dd = _mm256_mul_ps(dx, dy[t]);
                let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, b[t]);
                acc[r][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; T]; 4];
    for r in 0..4 {
        let mut sm = [0f32; 8];
        // SAFETY: `sm` is 32 writable bytes.
        unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs[r]) };
        for t in 0..T {
            out[r][t] = hsum_f32x8(acc[r][t]) + sm[2 * t + 1];
        }
    }
    out
}
