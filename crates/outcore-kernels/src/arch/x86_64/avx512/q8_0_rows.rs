//! AVX-512 Q8_0 x Q8_0 dot products of four weight rows and `T` (1..=4) tokens: the four-row
//! kernels of batched decode (2, 3 and 4 tokens) and of single-token products (`T = 1`), for the
//! Q8_0 output matrix of Q4_1 models and for Q8_0 models.
//!
//! The single-row kernel of this level (`avx2.rs` `vec_dot_q8_0_q8_0_impl` with `vpdpbusd`)
//! keeps eight f32 lanes: per block, lane `l` gets `fma(dx * dy, sum(x * y over elements
//! 4l..4l+4), lane)` with `dx * dy` rounded once, then `hsum_f32x8`. Here every (row, token)
//! runs exactly those float steps in ymm lanes, so `out[r][t]` has the single kernel's bits; the
//! integer lane sums are exact in either kernel, so they may be formed differently. The single
//! kernel moves the weights' signs onto the activations (`vpsignb`, two per product); here the
//! activations are offset to unsigned once per token (`y ^ 0x80 = y + 128`) and each row's lane
//! sums start from `-128 * sum(x)` (one `vpdpbusd` per row and block), so a product is one
//! `vpdpbusd`. (The sign trick is exact for activations in -127..=127, which is all the
//! activation quantizer writes; the offset is exact for any bytes.) As in `q4_1_rows`, `dy` is
//! broadcast once per token and block and `dx * dy` is one multiply per pair.
//!
//! Four rows of 4608 elements in L1 (thread CPU time per call, Zen 4), 2 / 3 / 4 tokens: the
//! AVX2 kernel's steps with `vpdpbusd` (`vec_dot_q8_0_q8_0_r4xt_impl` of this level) 1115 /
//! 1305 / 1615 ns, this kernel 1020 / 1280 / 1555 ns (the same without the opaque lane indices,
//! where the optimizer turns each product of broadcasts into a scalar multiply and a broadcast:
//! 955 / 1333 / 1675 ns); four rows of the one-row four-token kernel: 2780 ns.

use std::arch::x86_64::*;
use std::hint::black_box;

use crate::arch::x86_64::avx2::{common_blocks, f16x4, hsum_f32x8, load256, prefetch_rows};
use crate::quant::BlockQ8_0;

/// Four weight rows times `T` tokens: `out[r][t]` has the bits of the single-row kernel on
/// `(xs[r], ys[t])`. Blocks past the shortest row or activation are ignored, as there.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q8_0_r4xt<const T: usize>(
    xs: [&[BlockQ8_0]; 4],
    ys: [&[BlockQ8_0]; T],
) -> [[f32; T]; 4] {
    let nb = common_blocks(&xs, &ys);
    let mut acc = [[_mm256_setzero_ps(); T]; 4];
    let offset = _mm256_set1_epi8(0x80u8 as i8);
    // `vpermps` indices broadcasting lane k. Opaque to the optimizer, which would otherwise
    // turn each product of two broadcasts into a scalar multiply and a broadcast per pair.
    let lane = black_box([0, 1, 2, 3, 4, 5, 6, 7].map(|k| _mm256_set1_epi32(k)));
    for i in 0..nb {
        prefetch_rows(&xs, i);
        // The rows' and the tokens' scales, each converted together (lanes past T stay zero).
        let dx = _mm256_castps128_ps256(f16x4([xs[0][i].d, xs[1][i].d, xs[2][i].d, xs[3][i].d]));
        let mut d = [half::f16::ZERO; 4];
        for t in 0..T {
            d[t] = ys[t][i].d;
        }
        let dyv = _mm256_castps128_ps256(f16x4(d));
        let mut dy = [_mm256_setzero_ps(); T];
        let mut b = [_mm256_setzero_si256(); T];
        for t in 0..T {
            dy[t] = _mm256_permutevar8x32_ps(dyv, lane[t]);
            // SAFETY: qs are 32 readable bytes.
            let y = unsafe { load256(ys[t][i].qs.as_ptr() as *const u8) };
            b[t] = _mm256_xor_si256(y, offset);
        }
        for r in 0..4 {
            // SAFETY: qs are 32 readable bytes.
            let a = unsafe { load256(xs[r][i].qs.as_ptr() as *const u8) };
            // Per lane, -128 times the sum of the lane's four weights.
            let base = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, a),
            );
            let dxr = _mm256_permutevar8x32_ps(dx, lane[r]);
            for t in 0..T {
                let dd = _mm256_mul_ps(dxr, dy[t]);
                let s = _mm256_dpbusd_epi32(base, b[t], a);
                acc[r][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[r][t]);
            }
        }
    }
    let mut out = [[0f32; T]; 4];
    for r in 0..4 {
        for t in 0..T {
            out[r][t] = hsum_f32x8(acc[r][t]);
        }
    }
    out
}
