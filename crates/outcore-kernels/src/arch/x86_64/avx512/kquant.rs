//! AVX-512 (F, BW, VL, VNNI, VBMI) Q4_K and Q6_K dot products for `R` weight rows at once:
//! `R = 1` is the single-row kernel, `R = 4` the four-row kernel of single-token products (the
//! activation block is loaded and permuted once for the four rows, and the rows run four
//! independent float chains).
//!
//! The scalar twins keep ggml's generic order: integer lane `l` sums the scaled products of the
//! elements whose index is `l` mod 8, then `sums[l] += d * lane` in f32. Here one `vpermb` moves
//! the elements `(l, l+8, l+16, l+24)` of every 32-element run into dword `l`, in the weights and
//! in the activations alike, so the lanes come out of plain multiply-adds:
//! - Q4_K (one scale per 32 elements): `vpdpbusd` sums the dword's four products (at most
//!   4 * 15 * 128, so it fits an i16) and `vpmaddwd` against `[scale, 0]` gives `scale * sum`;
//! - Q6_K (one scale per 16 elements): `vpmaddubsw` gives the pair `(l, l+8)` of the first group
//!   and `(l+16, l+24)` of the second, and `vpmaddwd` against `[scale_a, scale_b]` adds both.
//!
//! A zmm holds two runs (lanes 0..8 and 8..16), folded once per block. Integer sums are exact, so
//! every lane equals the scalar one; the float steps are the scalar twin's, elementwise, in its
//! order (separate multiply and add), so results are bit-identical to `crate::quant`.

use std::arch::x86_64::*;

use crate::arch::x86_64::avx2::{add_lanes, f16_pairs4, finish_sums, h2f, prefetch_rows};
use crate::quant::{BlockQ4K, BlockQ6K, BlockQ8K};

/// `vpermb` indices: byte `4l + k` of each 32-byte half takes byte `8k + l` of the half given by
/// `src_half` (`None`: the same half; `Some(h)`: half `h` for both output halves).
const fn perm_idx(src_half: Option<usize>) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut p = 0;
    while p < 64 {
        let within = 8 * (p % 4) + (p % 32) / 4;
        let half = match src_half {
            Some(h) => h,
            None => p / 32,
        };
        idx[p] = (32 * half + within) as u8;
        p += 1;
    }
    idx
}

#[repr(C, align(64))]
struct Idx([u8; 64]);

/// Each half permuted within itself.
static PERM_HALVES: Idx = Idx(perm_idx(None));
/// The low 32 bytes, permuted, into both halves.
static PERM_LOW: Idx = Idx(perm_idx(Some(0)));
/// The high 32 bytes, permuted, into both halves.
static PERM_HIGH: Idx = Idx(perm_idx(Some(1)));

/// Q4_K weights: from the 64 raw bytes of chunks `2k` and `2k + 1`, zmm `h` holds in dword
/// `8 * half + l` the bytes `[q[j], q[j + 8], q[j], q[j + 8]]`, `j = 32 * half + 16 * h + l`:
/// after the nibble split the low word pairs elements (l, l+8) or (l+16, l+24) of run `2c` (low
/// nibbles) and the high word the same elements of run `2c + 1` (high nibbles), `c = 2k + half`.
const fn q4_k_w_idx(h: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let (p, b) = (i / 4, i % 4);
        idx[i] = (32 * (p / 8) + 16 * h + p % 8 + 8 * (b & 1)) as u8;
        i += 1;
    }
    idx
}

/// The activations matching [`q4_k_w_idx`], from the 128 bytes of runs `4k..4k + 4`
/// (`vpermt2b` of two zmm).
const fn q4_k_a_idx(h: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let (p, b) = (i / 4, i % 4);
        idx[i] = (64 * (p / 8) + 32 * (b >> 1) + 16 * h + p % 8 + 8 * (b & 1)) as u8;
        i += 1;
    }
    idx
}

static Q4_K_W: [Idx; 2] = [Idx(q4_k_w_idx(0)), Idx(q4_k_w_idx(1))];
static Q4_K_A: [Idx; 2] = [Idx(q4_k_a_idx(0)), Idx(q4_k_a_idx(1))];

#[inline]
#[target_feature(enable = "avx512f")]
fn load_idx(i: &'static Idx) -> __m512i {
    // SAFETY: `Idx` is 64 readable, 64-byte-aligned bytes.
    unsafe { _mm512_load_si512(i.0.as_ptr() as *const __m512i) }
}

/// Dword indices `[2k; 8] ++ [2k + 1; 8]`: spread a pair of per-run scales over the two runs of
/// zmm `k`.
#[inline]
#[target_feature(enable = "avx512f")]
fn scale_idx(k: i32) -> __m512i {
    _mm512_inserti64x4(_mm512_set1_epi32(2 * k), _mm256_set1_epi32(2 * k + 1), 1)
}

/// 16 words: `lo` in the low half, `hi` in the high half (per-half shift counts).
#[inline]
#[target_feature(enable = "avx512f")]
fn halves_epi16(lo: i16, hi: i16) -> __m512i {
    _mm512_inserti64x4(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi), 1)
}

/// Sum of the 4 i32 lanes (exact, any order).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32x4(s: __m128i) -> i32 {
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The 256 activation quants as four zmm, each 32-byte half permuted with `perm`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn load_act(perm: __m512i, y: &BlockQ8K) -> [__m512i; 4] {
    let q = y.qs.as_ptr() as *const __m512i;
    let mut a = [_mm512_setzero_si512(); 4];
    for (k, a) in a.iter_mut().enumerate() {
        // SAFETY: qs[64k..64k + 64] is in bounds (k < 4).
        *a = _mm512_permutexvar_epi8(perm, unsafe { _mm512_loadu_si512(q.add(k)) });
    }
    a
}

/// The 16 i16 group sums of an activation block.
#[inline]
#[target_feature(enable = "avx2")]
fn load_bsums(y: &BlockQ8K) -> __m256i {
    // SAFETY: bsums is 32 readable bytes.
    unsafe { _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i) }
}

/// The 12 packed scale bytes of a Q4_K block -> 16 words: the 8 scales, then the 8 mins
/// (ggml's `utmp` unpacking done on the four 32-bit words at once). As dwords, `j < 4` is the
/// scale pair of runs `2j, 2j + 1`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn q4_k_scales_mins(x: &BlockQ4K) -> __m256i {
    // SAFETY: 16 bytes from `scales` stay inside the block (`qs` follows the 12 scale bytes);
    // the last 4 are never used.
    let v = unsafe { _mm_loadu_si128(x.scales.as_ptr() as *const __m128i) };
    let a = _mm_shuffle_epi32(v, 0b10_01_10_00); // [u0, u2, u1, u2]
    let b = _mm_shuffle_epi32(v, 0b01_01_00_00); // [u0, u0, u1, u1]
    let k1 = 0x3f3f3f3f;
    let k2 = 0x0f0f0f0f;
    // lanes 0, 2: u & 0x3f..; lanes 1, 3: (u2 >> {0, 4}) & 0x0f.. | ((u >> 6) & 3) << 4.
    let c = _mm_and_si128(
        _mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
        _mm_setr_epi32(k1, k2, k1, k2),
    );
    let hi = _mm_setr_epi32(0, 0x30303030, 0, 0x30303030);
    // c | ((b >> 2) & hi): bits 6..8 of each byte of b land on bits 4..6.
    let r = _mm_ternarylogic_epi32(c, _mm_srli_epi32(b, 2), hi, 0xF8);
    _mm256_cvtepu8_epi16(r)
}

/// Q4_K x Q8_K for `R` rows of `nb` blocks each (the shortest row or activation decides).
/// Loops over rows are innermost so the `R` rows' independent work interleaves.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI/VBMI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
pub(super) unsafe fn q4_k_rows<const R: usize>(xs: [&[BlockQ4K]; R], y: &[BlockQ8K]) -> [f32; R] {
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let widx = [load_idx(&Q4_K_W[0]), load_idx(&Q4_K_W[1])];
    let aidx = [load_idx(&Q4_K_A[0]), load_idx(&Q4_K_A[1])];
    // Word shift counts 0 (low word: low nibbles) and 4 (high word: high nibbles).
    let nib_shift = _mm512_set1_epi32(4 << 16);
    let m4 = _mm512_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut sums = [_mm256_setzero_ps(); R];
    let mut sumf = [0f32; R];
    let mut sumf4 = _mm_setzero_ps(); // `sumf` when R = 4
    for i in 0..nb {
        let yb = &y[i];
        // SAFETY: qs is 256 bytes: four 64-byte loads.
        let yq: [__m512i; 4] = std::array::from_fn(|c| unsafe {
            _mm512_loadu_si512((yb.qs.as_ptr() as *const __m512i).add(c))
        });
        let act = [
            [
                _mm512_permutex2var_epi8(yq[0], aidx[0], yq[1]),
                _mm512_permutex2var_epi8(yq[0], aidx[1], yq[1]),
            ],
            [
                _mm512_permutex2var_epi8(yq[2], aidx[0], yq[3]),
                _mm512_permutex2var_epi8(yq[2], aidx[1], yq[3]),
            ],
        ];
        // Upper 8 words: the group sums of 32 activations (bsums[2j] + bsums[2j + 1]), to meet
        // the mins (words 8..16 of the scale vector) in a `vpmaddwd`.
        let b2 = _mm256_madd_epi16(load_bsums(yb), ones);
        let b2 = _mm256_permute4x64_epi64(_mm256_packs_epi32(b2, b2), 0b10_00_10_00);
        let xb: [&BlockQ4K; R] = std::array::from_fn(|r| &xs[r][i]);
        prefetch_rows(&xs, i);
        let mut sm = [_mm256_setzero_si256(); R];
        for r in 0..R {
            sm[r] = q4_k_scales_mins(xb[r]);
        }
        let mut acc = [_mm512_setzero_si512(); R];
        for (k, act) in act.iter().enumerate() {
            let si = scale_idx(k as i32);
            for r in 0..R {
                // SAFETY: qs[64k..64k + 64] is in bounds (k < 2).
                let q = unsafe { _mm512_loadu_si512((xb[r].qs.as_ptr() as *const __m512i).add(k)) };
                let s = _mm512_permutexvar_epi32(si, _mm512_castsi256_si512(sm[r]));
                for (h, &a) in act.iter().enumerate() {
                    let w = _mm512_permutexvar_epi8(widx[h], q);
                    let w = _mm512_and_si512(_mm512_srlv_epi16(w, nib_shift), m4);
                    // Pairs of at most 2 * 15 * 128: no saturation.
                    let p = _mm512_maddubs_epi16(w, a);
                    acc[r] = _mm512_dpwssd_epi32(acc[r], p, s);
                }
            }
        }
        let b2 = _mm256_castsi256_si128(b2);
        if let (Ok(x4), Ok(sm4), Ok(acc4), Ok(sums4)) = (
            <[&BlockQ4K; 4]>::try_from(&xb[..]),
            <&[__m256i; 4]>::try_from(&sm[..]),
            <&[__m512i; 4]>::try_from(&acc[..]),
            <&mut [__m256; 4]>::try_from(&mut sums[..]),
        ) {
            q4_k_tail4(x4, yb.d, sm4, b2, acc4, sums4, &mut sumf4);
            continue;
        }
        for r in 0..R {
            let m = _mm_madd_epi16(_mm256_extracti128_si256(sm[r], 1), b2);
            let sumi = hsum_i32x4(m);
            sums[r] = add_lanes(sums[r], h2f(xb[r].d) * yb.d, fold(acc[r]));
            let dmin = h2f(xb[r].dmin) * yb.d;
            sumf[r] -= dmin * sumi as f32;
        }
    }
    if R == 4 {
        // SAFETY: `sumf` is R = 4 writable floats.
        unsafe { _mm_storeu_ps(sumf.as_mut_ptr(), sumf4) };
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = finish_sums(sumf[r], sums[r]);
    }
    out
}

/// The 8 lanes of a two-run accumulator (lane l of both halves added).
#[inline]
#[target_feature(enable = "avx512f")]
fn fold(acc: __m512i) -> __m256i {
    _mm256_add_epi32(
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64(acc, 1),
    )
}

/// The float steps of one Q4_K block for four rows at once, each lane the scalar twin's
/// operations: `sums[r] += (d_r * y.d) * aux_r` and `sumf[r] -= (dmin_r * y.d) * sumi_r`, where
/// `sumi_r` is the mins (words 8..16 of `sm[r]`) times the group sums `b2`.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512vl")]
fn q4_k_tail4(
    xb: [&BlockQ4K; 4],
    yd: f32,
    sm: &[__m256i; 4],
    b2: __m128i,
    acc: &[__m512i; 4],
    sums: &mut [__m256; 4],
    sumf: &mut __m128,
) {
    let (d, dmin) = f16_pairs4([
        (xb[0].d, xb[0].dmin),
        (xb[1].d, xb[1].dmin),
        (xb[2].d, xb[2].dmin),
        (xb[3].d, xb[3].dmin),
    ]);
    let yd4 = _mm_set1_ps(yd);
    let (d, dmin) = (
        _mm256_castps128_ps256(_mm_mul_ps(d, yd4)),
        _mm_mul_ps(dmin, yd4),
    );
    let m = |r: usize| _mm_madd_epi16(_mm256_extracti128_si256(sm[r], 1), b2);
    let sumi = _mm_hadd_epi32(_mm_hadd_epi32(m(0), m(1)), _mm_hadd_epi32(m(2), m(3)));
    *sumf = _mm_sub_ps(*sumf, _mm_mul_ps(dmin, _mm_cvtepi32_ps(sumi)));
    for (r, (sums, &acc)) in sums.iter_mut().zip(acc).enumerate() {
        let dr = _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(r as i32));
        *sums = _mm256_add_ps(*sums, _mm256_mul_ps(dr, _mm256_cvtepi32_ps(fold(acc))));
    }
}

/// Q6_K x Q8_K for `R` rows of `nb` blocks each (the shortest row or activation decides).
/// Loops over rows are innermost so the `R` rows' independent work interleaves.
///
/// # Safety
/// Requires AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI/VBMI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
pub(super) unsafe fn q6_k_rows<const R: usize>(xs: [&[BlockQ6K]; R], y: &[BlockQ8K]) -> [f32; R] {
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let perm = load_idx(&PERM_HALVES);
    let perm_qh = [load_idx(&PERM_LOW), load_idx(&PERM_HIGH)];
    // Bits 4..6 of each byte get qh's 2-bit field of run 0/1 (shift left 4/2) and 2/3 (right 0/2).
    let shl01 = halves_epi16(4, 2);
    let shr23 = halves_epi16(0, 2);
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let k32 = _mm512_set1_epi8(32);
    let mut sums = [_mm256_setzero_ps(); R];
    for i in 0..nb {
        let yb = &y[i];
        let act = load_act(perm, yb);
        // 32 * (a[l] + a[l + 8]) per word: the `- 32` of the weights, taken out of the pairs.
        let mut a32 = act;
        for a in &mut a32 {
            *a = _mm512_maddubs_epi16(k32, *a);
        }
        let xb: [&BlockQ6K; R] = std::array::from_fn(|r| &xs[r][i]);
        prefetch_rows(&xs, i);
        let mut qh = [_mm512_setzero_si512(); R];
        let mut sc = [_mm512_setzero_si512(); R];
        for r in 0..R {
            // SAFETY: qh is 64 bytes, scales 16 bytes.
            unsafe {
                qh[r] = _mm512_loadu_si512(xb[r].qh.as_ptr() as *const __m512i);
                // dword g: [scale 2g, scale 2g + 1] as i16
                sc[r] = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                    xb[r].scales.as_ptr() as *const __m128i,
                )));
            }
        }
        let mut acc = [_mm512_setzero_si512(); R];
        for c in 0..2 {
            let (s01, s23) = (scale_idx(2 * c as i32), scale_idx(2 * c as i32 + 1));
            for r in 0..R {
                // SAFETY: ql[64c..64c + 64] is in bounds (c < 2).
                let ql =
                    unsafe { _mm512_loadu_si512(xb[r].ql.as_ptr().add(64 * c) as *const __m512i) };
                let ql = _mm512_permutexvar_epi8(perm, ql);
                let h = _mm512_permutexvar_epi8(perm_qh[c], qh[r]);
                // (A & B) | C = 0xEA
                let w01 = _mm512_ternarylogic_epi32(
                    ql,
                    m4,
                    _mm512_and_si512(_mm512_sllv_epi16(h, shl01), m30),
                    0xEA,
                );
                let w23 = _mm512_ternarylogic_epi32(
                    _mm512_srli_epi16(ql, 4),
                    m4,
                    _mm512_and_si512(_mm512_srlv_epi16(h, shr23), m30),
                    0xEA,
                );
                // (q - 32) * a over pairs: exact in i16 (|q * a| pairs <= 16128).
                let p01 = _mm512_sub_epi16(_mm512_maddubs_epi16(w01, act[2 * c]), a32[2 * c]);
                let p23 =
                    _mm512_sub_epi16(_mm512_maddubs_epi16(w23, act[2 * c + 1]), a32[2 * c + 1]);
                let p01 = _mm512_madd_epi16(p01, _mm512_permutexvar_epi32(s01, sc[r]));
                let p23 = _mm512_madd_epi16(p23, _mm512_permutexvar_epi32(s23, sc[r]));
                acc[r] = _mm512_add_epi32(acc[r], _mm512_add_epi32(p01, p23));
            }
        }
        for r in 0..R {
            let aux = _mm256_add_epi32(
                _mm512_castsi512_si256(acc[r]),
                _mm512_extracti64x4_epi64(acc[r], 1),
            );
            sums[r] = add_lanes(sums[r], h2f(xb[r].d) * yb.d, aux);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = finish_sums(0.0, sums[r]);
    }
    out
}
