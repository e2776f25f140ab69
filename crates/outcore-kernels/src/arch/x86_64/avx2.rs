//! AVX2 + FMA + F16C twins of the scalar kernels, modelled on ggml `ggml-cpu/arch/x86/quants.c`.
//!
//! Every kernel here returns the *same bits* as its scalar twin in `crate::quant`: integer parts
//! are computed with SIMD in any order (integer sums are exact), and every float operation is
//! done elementwise in the scalar twin's order (never fused: no FMA where the twin has a
//! separate multiply and add). That keeps all CPU levels token-for-token identical.
//!
//! Soundness: every `unsafe fn` here requires the CPU features in its `#[target_feature]`. The
//! safe wrappers at the bottom are only reachable through [`table`], which `crate::dispatch`
//! hands out only after [`is_available`] returned true.

use std::arch::x86_64::*;

use half::{bf16, f16};

use crate::dispatch::{CpuLevel, KernelTable};
use crate::quant::{
    q3_k, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, R4Tokens, QK_K,
};

/// Whether this CPU has every feature these kernels use.
pub fn is_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

// ---------------------------------------------------------------------------------------------
// Helpers (all inline into the target_feature kernels).

/// 32 unaligned bytes.
///
/// # Safety
/// Requires AVX; `p` must be valid for reading 32 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// 16 unaligned bytes.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load128(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// 32 nibbles -> 32 bytes: low nibbles of `qs[0..16]` then high nibbles (ggml `bytes_from_nibbles_32`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn nibbles_32(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes.
    let tmp = unsafe { load128(qs.as_ptr()) };
    let bytes = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
    _mm256_and_si256(bytes, _mm256_set1_epi8(0x0F))
}

/// 32 bits -> 32 bytes, 0xFF where the bit is set (ggml `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn bits_32(qh: &[u8; 4]) -> __m256i {
    let x32 = u32::from_le_bytes(*qh) as i32;
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Signed x signed bytes -> 8 i32 lanes of pair sums (exact while no i16 pair sum exceeds
/// i16: true for |x| <= 128, |y| <= 127).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Unsigned x signed bytes -> 8 i32 lanes (exact for x <= 127 or small products).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// Horizontal sums of four 8-lane i32 vectors -> [sum(v0), sum(v1), sum(v2), sum(v3)].
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum4_v(v0: __m256i, v1: __m256i, v2: __m256i, v3: __m256i) -> __m128i {
    let a = _mm256_hadd_epi32(v0, v1);
    let b = _mm256_hadd_epi32(v2, v3);
    let c = _mm256_hadd_epi32(a, b);
    _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1))
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum4(v0: __m256i, v1: __m256i, v2: __m256i, v3: __m256i) -> [i32; 4] {
    let mut out = [0i32; 4];
    // SAFETY: `out` is 16 writable bytes; storeu has no alignment requirement.
    unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, hsum4_v(v0, v1, v2, v3)) };
    out
}

/// ggml's x86 `hsum_float_8` (same order as `quant::hsum8_x86`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_f32x8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// `[f(k[0]), f(k[1]), f(k[2]), f(k[3])]` written out, so the body is compiled in the caller's
/// target-feature context (`array::map` with a closure is not inlined into SIMD kernels).
macro_rules! g4 {
    ($k:expr, |$i:ident| $e:expr) => {{
        let k = $k;
        [
            {
                let $i = k[0];
                $e
            },
            {
                let $i = k[1];
                $e
            },
            {
                let $i = k[2];
                $e
            },
            {
                let $i = k[3];
                $e
            },
        ]
    }};
}
pub(super) use g4;

/// Four f16 -> four f32 with F16C (exact, like `f16::to_f32`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16x4(h: [f16; 4]) -> __m128 {
    let bits = h[0].to_bits() as u64
        | (h[1].to_bits() as u64) << 16
        | (h[2].to_bits() as u64) << 32
        | (h[3].to_bits() as u64) << 48;
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// Software prefetch of the weight stream `bytes_ahead` past `p`. Single-token products are
/// bound by how fast weight rows arrive; the hardware prefetcher alone left llama.cpp's 1B Q8_0
/// decode about 30% ahead of ours.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn prefetch<T>(p: *const T, bytes_ahead: usize) {
    // A prefetch is only a hint: it never faults, whatever the address (formed with wrapping
    // arithmetic, never dereferenced).
    _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(bytes_ahead))
}

/// Bytes ahead of the current weight block that single-token kernels prefetch. Far ahead works
/// best here (1B Q8_0 decode, 2 threads: 1 KB 18-19 t/s, 4 KB 19-20, 16 KB 22, 32 KB 22.5-25):
/// the lines arrive long before use and the hardware prefetcher covers the near ones.
pub(crate) const PREFETCH_AHEAD: usize = 32768;

/// [`prefetch`] of every cache line of a k-quant block, [`PREFETCH_AHEAD`] bytes ahead.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn prefetch_block<T>(x: &T) {
    let mut off = 0;
    while off < size_of::<T>() {
        prefetch(x, PREFETCH_AHEAD + off);
        off += 64;
    }
}

/// Bytes past the end of a group of rows at which [`prefetch_rows`] runs.
pub(crate) const PREFETCH_ROWS_AHEAD: usize = 16384;

/// Software prefetch for kernels that walk `rows.len()` adjacent weight rows of blocks `B` in
/// step (block `i` of every row, then block `i + 1`): at step `i` it prefetches the next
/// `rows.len()` blocks' worth of a linear sweep over the bytes that start
/// [`PREFETCH_ROWS_AHEAD`] past the end of this group of rows, i.e. the following rows in address
/// order. Rows that are not adjacent only make the hints useless, never wrong.
///
/// Two choices come from measurement (`decode_weights` bench: one thread, CPU time, Zen 4):
/// per-row prefetches (`prefetch_block` of each row) left the four interleaved streams of the
/// 1B Q4_K_M-like model slower than one row at a time (10.4 vs 15 GB/s); one linear sweep gave
/// 15.9; prefetching into L2 only (T1) rather than L1 gave 18.5-19 (Q6_K 13.6 -> 21 GB/s),
/// about flat for 4-64 KB ahead. The four-row Q8_0 kernel on the 1B Q8_0 model: per-row T0
/// 32 KB ahead 15.3 GB/s, this 24.9. (Single-row kernels keep [`prefetch`]: T1 changed nothing
/// there.)
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn prefetch_rows<B>(rows: &[&[B]], i: usize) {
    let Some(first) = rows.first() else { return };
    let step = rows.len() * size_of::<B>();
    let ahead = step * first.len() + PREFETCH_ROWS_AHEAD + i * step;
    // Only hints: formed with wrapping arithmetic and never dereferenced.
    let p = (first.as_ptr() as *const i8).wrapping_add(ahead);
    let mut off = 0;
    while off < step {
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off));
        off += 64;
    }
}

/// Blocks a four-row kernel computes: the shortest of the rows and the activations (as the
/// single-row kernels, which ignore blocks past the shorter slice).
#[inline]
pub(crate) fn common_blocks<A, B>(xs: &[&[A]], ys: &[&[B]]) -> usize {
    let rows = xs.iter().map(|x| x.len()).min().unwrap_or(0);
    ys.iter().map(|y| y.len()).fold(rows, usize::min)
}

/// One f16 -> f32 with F16C (`half`'s `to_f32` checks the CPU at run time on every call and
/// is not inlined, which costs more than the integer work of a block).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn h2f(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// Runs a 32-element-block dot product four blocks at a time. `sums(i)` gives block i's 8-lane
/// integer partial sums; `contrib(idx, sumi)` turns the exact block totals of the four blocks
/// `idx` into their f32 contributions with the scalar twin's elementwise float ops; those are
/// added to `sumf` in block order, as the scalar loop does. Tail blocks repeat the last index
/// and only the valid lanes are added.
#[inline(always)]
pub(super) fn blocks_by_4(
    nb: usize,
    sums: impl Fn(usize) -> __m256i,
    contrib: impl Fn([usize; 4], __m128i) -> __m128,
    hsum: impl Fn([__m256i; 4]) -> __m128i,
    store: impl Fn(__m128) -> [f32; 4],
) -> f32 {
    let mut sumf = 0.0f32;
    let mut i = 0;
    while i < nb {
        let r = (nb - i).min(4);
        let idx = [i, i + 1.min(r - 1), i + 2.min(r - 1), i + 3.min(r - 1)];
        let s = hsum([sums(idx[0]), sums(idx[1]), sums(idx[2]), sums(idx[3])]);
        let c = store(contrib(idx, s));
        for v in &c[..r] {
            sumf += v;
        }
        i += r;
    }
    sumf
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn store4(v: __m128) -> [f32; 4] {
    let mut out = [0f32; 4];
    // SAFETY: `out` is 16 writable bytes; storeu has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// (dx*dy)*sumi + mx*sy for four blocks, elementwise as the scalar twin.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn contrib_dm(xdm: [(f16, f16); 4], yds: [(f16, f16); 4], s: __m128i) -> __m128 {
    let (dx, mx) = f16_pairs4(xdm);
    let (dy, sy) = f16_pairs4(yds);
    let a = _mm_mul_ps(_mm_mul_ps(dx, dy), _mm_cvtepi32_ps(s));
    _mm_add_ps(a, _mm_mul_ps(mx, sy))
}

/// Four adjacent f16 pairs (one 32-bit load each) -> ([first; 4], [second; 4]) as f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn f16_pairs4(p: [(f16, f16); 4]) -> (__m128, __m128) {
    let w = g4!(
        [0, 1, 2, 3],
        |i| (p[i].0.to_bits() as u32 | (p[i].1.to_bits() as u32) << 16) as i32
    );
    let v = _mm256_cvtph_ps(_mm_setr_epi32(w[0], w[1], w[2], w[3])); // [a0 b0 a1 b1 a2 b2 a3 b3]
    let v = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    (_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))
}

// ---------------------------------------------------------------------------------------------
// 32-element block types.

/// A dot product of one weight row with four activation rows: the weight blocks are unpacked
/// once for all four. Each output is bit-identical to the single-row kernel (same integer sums,
/// same elementwise float steps, same block order).
macro_rules! x4_kernel {
    ($name:ident, $feat:literal, $W:ty, $A:ty, $dot:path,
     |$b:ident| $unpack:expr,
     |$k:ident, $s:ident, $x:ident, $y:ident| $contrib:expr) => {
        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn $name(x: &[$W], ys: [&[$A]; 4]) -> [f32; 4] {
            let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
            let mut out = [0f32; 4];
            let mut i = 0;
            while i < nb {
                let r = (nb - i).min(4);
                let idx = [i, i + 1.min(r - 1), i + 2.min(r - 1), i + 3.min(r - 1)];
                let w = $crate::arch::x86_64::avx2::g4!(idx, |i| {
                    let $b = &x[i];
                    $unpack
                });
                for (o, y) in out.iter_mut().zip(ys) {
                    let d = |j: usize| {
                        // SAFETY: activation quants are 32 readable bytes.
                        let a = unsafe { super::avx2::load256(y[idx[j]].qs.as_ptr() as *const u8) };
                        $dot(w[j], a)
                    };
                    let $s = super::avx2::hsum4_v(d(0), d(1), d(2), d(3));
                    let ($k, $x, $y) = (idx, x, y);
                    let c = super::avx2::store4($contrib);
                    for v in &c[..r] {
                        *o += v;
                    }
                }
                i += r;
            }
            out
        }
    };
}
pub(super) use x4_kernel;

/// The five 32-element-block dot products, instantiated per level with that level's integer
/// dot helpers (`maddubs`+`madd` here, `vpdpbusd` in the AVX-512 file).
macro_rules! block32_kernels {
    ($feat:literal, $dot_i8:path, $dot_u8_i8:path) => {
        /// # Safety
        /// Requires the features in `$feat` and FMA. Same order as the scalar twin (llama.cpp's
        /// AVX2 `ggml_vec_dot_q8_0_q8_0`).
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q8_0_q8_0_impl(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (x, y) in x.iter().zip(y) {
                super::avx2::prefetch(x, super::avx2::PREFETCH_AHEAD);
                // SAFETY: qs are 32 readable bytes each.
                let (a, b) = unsafe {
                    (
                        super::avx2::load256(x.qs.as_ptr() as *const u8),
                        super::avx2::load256(y.qs.as_ptr() as *const u8),
                    )
                };
                let dd = _mm256_set1_ps(super::avx2::h2f(x.d) * super::avx2::h2f(y.d));
                acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps($dot_i8(a, b)), acc);
            }
            super::avx2::hsum_f32x8(acc)
        }

        /// # Safety
        /// As [`vec_dot_q8_0_q8_0_impl`]; four activation rows share each weight block load.
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q8_0_q8_0_x4_impl(x: &[BlockQ8_0], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in 0..nb {
                super::avx2::prefetch(&x[i], super::avx2::PREFETCH_AHEAD);
                // SAFETY: qs are 32 readable bytes.
                let a = unsafe { super::avx2::load256(x[i].qs.as_ptr() as *const u8) };
                let dx = _mm_set1_ps(super::avx2::h2f(x[i].d));
                let dy = super::avx2::f16x4([ys[0][i].d, ys[1][i].d, ys[2][i].d, ys[3][i].d]);
                let dd = _mm256_castps128_ps256(_mm_mul_ps(dx, dy));
                for (t, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: qs are 32 readable bytes.
                    let b = unsafe { super::avx2::load256(ys[t][i].qs.as_ptr() as *const u8) };
                    let ddt = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(t as i32));
                    *acc = _mm256_fmadd_ps(ddt, _mm256_cvtepi32_ps($dot_i8(a, b)), *acc);
                }
            }
            [
                super::avx2::hsum_f32x8(acc[0]),
                super::avx2::hsum_f32x8(acc[1]),
                super::avx2::hsum_f32x8(acc[2]),
                super::avx2::hsum_f32x8(acc[3]),
            ]
        }

        /// # Safety
        /// As [`vec_dot_q8_0_q8_0_impl`]; four weight rows share each activation block and run
        /// four independent accumulation chains (each in the single-row order).
        // The AVX-512 table has its own (`avx512/q8_0_rows.rs`, `avx512/q4_1_rows.rs`).
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q8_0_q8_0_r4_impl(xs: [&[BlockQ8_0]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
            let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in 0..nb {
                // SAFETY: qs are 32 readable bytes.
                let b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                let dy = super::avx2::h2f(y[i].d);
                super::avx2::prefetch_rows(&xs, i);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = &xs[r][i];
                    // SAFETY: qs are 32 readable bytes.
                    let a = unsafe { super::avx2::load256(x.qs.as_ptr() as *const u8) };
                    let dd = _mm256_set1_ps(super::avx2::h2f(x.d) * dy);
                    *acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps($dot_i8(a, b)), *acc);
                }
            }
            [
                super::avx2::hsum_f32x8(acc[0]),
                super::avx2::hsum_f32x8(acc[1]),
                super::avx2::hsum_f32x8(acc[2]),
                super::avx2::hsum_f32x8(acc[3]),
            ]
        }

        /// # Safety
        /// As [`vec_dot_q4_1_q8_1_impl`]; four weight rows share each activation block.
        // The AVX-512 table has its own (`avx512/q8_0_rows.rs`, `avx512/q4_1_rows.rs`).
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q4_1_q8_1_r4_impl(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
            let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut summs = [0.0f32; 4];
            for i in 0..nb {
                // SAFETY: qs are 32 readable bytes.
                let b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                let (dy, sy) = (super::avx2::h2f(y[i].d), super::avx2::h2f(y[i].s));
                super::avx2::prefetch_rows(&xs, i);
                for r in 0..4 {
                    let x = &xs[r][i];
                    summs[r] = super::avx2::h2f(x.m).mul_add(sy, summs[r]);
                    let q = super::avx2::nibbles_32(&x.qs);
                    let dd = _mm256_set1_ps(super::avx2::h2f(x.d) * dy);
                    acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps($dot_u8_i8(q, b)), acc[r]);
                }
            }
            [
                super::avx2::hsum_f32x8(acc[0]) + summs[0],
                super::avx2::hsum_f32x8(acc[1]) + summs[1],
                super::avx2::hsum_f32x8(acc[2]) + summs[2],
                super::avx2::hsum_f32x8(acc[3]) + summs[3],
            ]
        }

        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn vec_dot_q4_0_q8_0_impl(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
            let nb = x.len().min(y.len());
            let sums = |i: usize| {
                let q = _mm256_sub_epi8(super::avx2::nibbles_32(&x[i].qs), _mm256_set1_epi8(8));
                // SAFETY: 32 readable bytes.
                let b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                $dot_i8(q, b)
            };
            // (sumi * dx) * dy
            let contrib = |k: [usize; 4], s: __m128i| {
                let dx = super::avx2::f16x4(super::avx2::g4!(k, |i| x[i].d));
                let dy = super::avx2::f16x4(super::avx2::g4!(k, |i| y[i].d));
                _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(s), dx), dy)
            };
            super::avx2::blocks_by_4(
                nb,
                sums,
                contrib,
                |v| super::avx2::hsum4_v(v[0], v[1], v[2], v[3]),
                |v| super::avx2::store4(v),
            )
        }

        /// # Safety
        /// Requires the features in `$feat` and FMA. Same order as the scalar twin (llama.cpp's
        /// AVX2 `ggml_vec_dot_q4_1_q8_1`).
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q4_1_q8_1_impl(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0.0f32;
            for (x, y) in x.iter().zip(y) {
                super::avx2::prefetch(x, super::avx2::PREFETCH_AHEAD);
                summs = super::avx2::h2f(x.m).mul_add(super::avx2::h2f(y.s), summs);
                let q = super::avx2::nibbles_32(&x.qs);
                // SAFETY: 32 readable bytes.
                let b = unsafe { super::avx2::load256(y.qs.as_ptr() as *const u8) };
                let dd = _mm256_set1_ps(super::avx2::h2f(x.d) * super::avx2::h2f(y.d));
                acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps($dot_u8_i8(q, b)), acc);
            }
            super::avx2::hsum_f32x8(acc) + summs
        }

        /// # Safety
        /// As [`vec_dot_q4_1_q8_1_impl`]; four activation rows share each unpacked weight block.
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q4_1_q8_1_x4_impl(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; 4]) -> [f32; 4] {
            let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
            let mut acc = [_mm256_setzero_ps(); 4];
            // Lane 2t+1 holds token t's running `m * s` sum; even lanes are unused.
            let mut summs = _mm256_setzero_ps();
            let pair = |a: half::f16, b: half::f16| {
                (a.to_bits() as u32 | (b.to_bits() as u32) << 16) as i32
            };
            for i in 0..nb {
                super::avx2::prefetch(&x[i], super::avx2::PREFETCH_AHEAD);
                let q = super::avx2::nibbles_32(&x[i].qs);
                // [dx, mx] and the four tokens' [d, s] pairs, converted together.
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(pair(x[i].d, x[i].m)));
                let dx = _mm256_broadcastss_ps(dm);
                let mx = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
                let ds = _mm256_cvtph_ps(_mm_setr_epi32(
                    pair(ys[0][i].d, ys[0][i].s),
                    pair(ys[1][i].d, ys[1][i].s),
                    pair(ys[2][i].d, ys[2][i].s),
                    pair(ys[3][i].d, ys[3][i].s),
                ));
                summs = _mm256_fmadd_ps(mx, ds, summs);
                let dd = _mm256_mul_ps(dx, ds);
                for (t, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: 32 readable bytes.
                    let b = unsafe { super::avx2::load256(ys[t][i].qs.as_ptr() as *const u8) };
                    let ddt = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(2 * t as i32));
                    *acc = _mm256_fmadd_ps(ddt, _mm256_cvtepi32_ps($dot_u8_i8(q, b)), *acc);
                }
            }
            let mut sm = [0f32; 8];
            // SAFETY: `sm` is 32 writable bytes.
            unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs) };
            [
                super::avx2::hsum_f32x8(acc[0]) + sm[1],
                super::avx2::hsum_f32x8(acc[1]) + sm[3],
                super::avx2::hsum_f32x8(acc[2]) + sm[5],
                super::avx2::hsum_f32x8(acc[3]) + sm[7],
            ]
        }

        /// # Safety
        /// As [`vec_dot_q8_0_q8_0_impl`] for four weight rows and `T` (1..=4) tokens at once:
        /// each (row, token) runs the single-row kernel's steps (`dx * dy` rounded once, one FMA
        /// per block into eight lanes, `hsum_f32x8`), so `out[r][t]` has its bits; each weight
        /// and activation block is loaded once. The AVX2 table uses it for 2 and 3 tokens (four
        /// rows of 4608, thread CPU time: 1095 ns for 2 tokens vs 1410 for two `r4` calls,
        /// 1600 vs 1800 for 3 tokens); 4 tokens would need 16 accumulators, all of AVX2's
        /// registers. The AVX-512 table has its own (`avx512/q8_0_rows.rs`).
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[target_feature(enable = "fma")]
        unsafe fn vec_dot_q8_0_q8_0_r4xt_impl<const T: usize>(
            xs: [&[BlockQ8_0]; 4],
            ys: [&[BlockQ8_0]; T],
        ) -> [[f32; T]; 4] {
            let nb = super::avx2::common_blocks(&xs, &ys);
            let mut acc = [[_mm256_setzero_ps(); T]; 4];
            for i in 0..nb {
                super::avx2::prefetch_rows(&xs, i);
                // The tokens' scales, converted together (lanes past T stay zero).
                let mut d = [half::f16::ZERO; 4];
                for t in 0..T {
                    d[t] = ys[t][i].d;
                }
                let dy = super::avx2::f16x4(d);
                let mut b = [_mm256_setzero_si256(); T];
                for (b, y) in b.iter_mut().zip(ys) {
                    // SAFETY: qs are 32 readable bytes.
                    *b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                }
                for r in 0..4 {
                    let x = &xs[r][i];
                    // SAFETY: qs are 32 readable bytes.
                    let a = unsafe { super::avx2::load256(x.qs.as_ptr() as *const u8) };
                    let dd = _mm_mul_ps(_mm_set1_ps(super::avx2::h2f(x.d)), dy);
                    let dd = _mm256_castps128_ps256(dd);
                    for t in 0..T {
                        let ddt = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(t as i32));
                        acc[r][t] =
                            _mm256_fmadd_ps(ddt, _mm256_cvtepi32_ps($dot_i8(a, b[t])), acc[r][t]);
                    }
                }
            }
            let mut out = [[0f32; T]; 4];
            for r in 0..4 {
                for t in 0..T {
                    out[r][t] = super::avx2::hsum_f32x8(acc[r][t]);
                }
            }
            out
        }

        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn vec_dot_q5_0_q8_0_impl(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
            let nb = x.len().min(y.len());
            let sums = |i: usize| {
                let q = super::avx2::nibbles_32(&x[i].qs);
                let hi = _mm256_andnot_si256(
                    super::avx2::bits_32(&x[i].qh),
                    _mm256_set1_epi8(0xF0u8 as i8),
                );
                let q = _mm256_or_si256(q, hi); // q + 16*bit - 16 as i8
                                                // SAFETY: 32 readable bytes.
                let b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                $dot_i8(q, b)
            };
            // (dx * dy) * sumi
            let contrib = |k: [usize; 4], s: __m128i| {
                let dx = super::avx2::f16x4(super::avx2::g4!(k, |i| x[i].d));
                let dy = super::avx2::f16x4(super::avx2::g4!(k, |i| y[i].d));
                _mm_mul_ps(_mm_mul_ps(dx, dy), _mm_cvtepi32_ps(s))
            };
            super::avx2::blocks_by_4(
                nb,
                sums,
                contrib,
                |v| super::avx2::hsum4_v(v[0], v[1], v[2], v[3]),
                |v| super::avx2::store4(v),
            )
        }

        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn vec_dot_q5_1_q8_1_impl(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
            let nb = x.len().min(y.len());
            let sums = |i: usize| {
                let q = super::avx2::nibbles_32(&x[i].qs);
                let hi = _mm256_and_si256(super::avx2::bits_32(&x[i].qh), _mm256_set1_epi8(0x10));
                let q = _mm256_or_si256(q, hi);
                // SAFETY: 32 readable bytes.
                let b = unsafe { super::avx2::load256(y[i].qs.as_ptr() as *const u8) };
                $dot_u8_i8(q, b)
            };
            let contrib = |k: [usize; 4], s: __m128i| {
                super::avx2::contrib_dm(
                    super::avx2::g4!(k, |i| (x[i].d, x[i].m)),
                    super::avx2::g4!(k, |i| (y[i].d, y[i].s)),
                    s,
                )
            };
            super::avx2::blocks_by_4(
                nb,
                sums,
                contrib,
                |v| super::avx2::hsum4_v(v[0], v[1], v[2], v[3]),
                |v| super::avx2::store4(v),
            )
        }

        super::avx2::x4_kernel!(
            vec_dot_q4_0_q8_0_x4_impl,
            $feat,
            BlockQ4_0,
            BlockQ8_0,
            $dot_i8,
            |b| _mm256_sub_epi8(super::avx2::nibbles_32(&b.qs), _mm256_set1_epi8(8)),
            |k, s, x, y| _mm_mul_ps(
                _mm_mul_ps(
                    _mm_cvtepi32_ps(s),
                    super::avx2::f16x4(super::avx2::g4!(k, |i| x[i].d))
                ),
                super::avx2::f16x4(super::avx2::g4!(k, |i| y[i].d))
            )
        );
        super::avx2::x4_kernel!(
            vec_dot_q5_0_q8_0_x4_impl,
            $feat,
            BlockQ5_0,
            BlockQ8_0,
            $dot_i8,
            |b| _mm256_or_si256(
                super::avx2::nibbles_32(&b.qs),
                _mm256_andnot_si256(super::avx2::bits_32(&b.qh), _mm256_set1_epi8(0xF0u8 as i8))
            ),
            |k, s, x, y| _mm_mul_ps(
                _mm_mul_ps(
                    super::avx2::f16x4(super::avx2::g4!(k, |i| x[i].d)),
                    super::avx2::f16x4(super::avx2::g4!(k, |i| y[i].d))
                ),
                _mm_cvtepi32_ps(s)
            )
        );
        super::avx2::x4_kernel!(
            vec_dot_q5_1_q8_1_x4_impl,
            $feat,
            BlockQ5_1,
            BlockQ8_1,
            $dot_u8_i8,
            |b| _mm256_or_si256(
                super::avx2::nibbles_32(&b.qs),
                _mm256_and_si256(super::avx2::bits_32(&b.qh), _mm256_set1_epi8(0x10))
            ),
            |k, s, x, y| super::avx2::contrib_dm(
                super::avx2::g4!(k, |i| (x[i].d, x[i].m)),
                super::avx2::g4!(k, |i| (y[i].d, y[i].s)),
                s
            )
        );
    };
}
pub(super) use block32_kernels;

block32_kernels!("avx2,f16c", dot_i8, dot_u8_i8);

// ---------------------------------------------------------------------------------------------
// K-quants. The scalar twins accumulate `aux32[l]` over elements with index % 8 == l and then
// `sums[l] += d * aux32[l]` in f32; here `aux32` is one 8-lane i32 vector, built so each lane
// holds exactly the same integer as the scalar lane.

/// Products of 32 weight bytes (unsigned, or signed if `w_signed`) and 32 activation bytes,
/// summed in pairs (m, m + 8) of each 16-element half: i16 lane m (0..8) holds
/// w[m]a[m] + w[m+8]a[m+8] of elements 0..16, lane 8 + m the same for elements 16..32.
/// Bytes are interleaved first so `maddubs` pairs exactly those. Exact: no pair exceeds i16.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pair_fold(w: __m256i, a: __m256i, w_signed: bool) -> __m256i {
    let (w, a) = if w_signed {
        (_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    } else {
        (w, a)
    };
    let sh = _mm256_setr_epi8(
        0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5,
        13, 6, 14, 7, 15,
    );
    _mm256_maddubs_epi16(_mm256_shuffle_epi8(w, sh), _mm256_shuffle_epi8(a, sh))
}

/// acc += scale * widen(v) for 8 i16 lanes (madd against [scale, 0] i16 pairs).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn acc_scaled(acc: __m256i, v: __m128i, scale: i32) -> __m256i {
    let s = _mm256_set1_epi32(scale & 0xFFFF);
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi16_epi32(v), s))
}

/// Accumulates a 32-element sub-block with one scale into `acc` (lane = index % 8).
#[inline]
#[target_feature(enable = "avx2")]
fn sub32_one_scale(acc: __m256i, w: __m256i, a: __m256i, scale: i32, w_signed: bool) -> __m256i {
    let p = pair_fold(w, a, w_signed);
    // Four products per lane: <= 4*128*31, fits i16.
    acc_scaled(
        acc,
        _mm_add_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)),
        scale,
    )
}

/// Accumulates a 32-element run made of two 16-element groups with their own scales.
#[inline]
#[target_feature(enable = "avx2")]
fn sub32_two_scales(acc: __m256i, w: __m256i, a: __m256i, s0: i32, s1: i32) -> __m256i {
    let p = pair_fold(w, a, true);
    acc_scaled(
        acc_scaled(acc, _mm256_castsi256_si128(p), s0),
        _mm256_extracti128_si256(p, 1),
        s1,
    )
}

/// sums[l] += d * aux32[l] (separate multiply and add, as the scalar twin).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn add_lanes(sums: __m256, d: f32, aux32: __m256i) -> __m256 {
    _mm256_add_ps(
        sums,
        _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(aux32)),
    )
}

/// sumf += sums[0] + ... + sums[7] in lane order.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn finish_sums(mut sumf: f32, sums: __m256) -> f32 {
    let mut s = [0f32; 8];
    // SAFETY: `s` is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sums) };
    for v in s {
        sumf += v;
    }
    sumf
}

/// Q4_K and Q5_K dot products, instantiated per level with that level's "accumulate one
/// 32-element sub-block with its scale into the 8 lanes" helper (`q5:` only the Q5_K one).
macro_rules! k45_kernels {
    ($feat:literal, $sub32:path) => {
        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn vec_dot_q4_k_q8_k_impl(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
            let mut sums = _mm256_setzero_ps();
            let mut sumf = 0.0f32;
            let m4 = _mm256_set1_epi8(0x0F);
            for (x, y) in x.iter().zip(y) {
                $crate::arch::x86_64::avx2::prefetch_block(x);
                let (scales, mins) = $crate::quant::unpack_scales_mins_k4(&x.scales);
                let mut sumi = 0i32;
                for j in 0..QK_K / 16 {
                    sumi += y.bsums[j] as i32 * mins[j / 2] as i32;
                }
                let mut acc = _mm256_setzero_si256();
                for c in 0..4 {
                    // SAFETY: 32 bytes at qs[32c..], y.qs[64c..] and y.qs[64c+32..] are in bounds.
                    let (q, a0, a1) = unsafe {
                        (
                            $crate::arch::x86_64::avx2::load256(x.qs.as_ptr().add(32 * c)),
                            $crate::arch::x86_64::avx2::load256(
                                y.qs.as_ptr().add(64 * c) as *const u8
                            ),
                            $crate::arch::x86_64::avx2::load256(
                                y.qs.as_ptr().add(64 * c + 32) as *const u8
                            ),
                        )
                    };
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    acc = $sub32(acc, lo, a0, scales[2 * c] as i32);
                    acc = $sub32(acc, hi, a1, scales[2 * c + 1] as i32);
                }
                sums = $crate::arch::x86_64::avx2::add_lanes(
                    sums,
                    $crate::arch::x86_64::avx2::h2f(x.d) * y.d,
                    acc,
                );
                let dmin = $crate::arch::x86_64::avx2::h2f(x.dmin) * y.d;
                sumf -= dmin * sumi as f32;
            }
            $crate::arch::x86_64::avx2::finish_sums(sumf, sums)
        }

        $crate::arch::x86_64::avx2::k45_kernels!(q5: $feat, $sub32);
    };
    (q5: $feat:literal, $sub32:path) => {
        /// # Safety
        /// Requires the features in `$feat`.
        #[target_feature(enable = $feat)]
        unsafe fn vec_dot_q5_k_q8_k_impl(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
            let mut sums = _mm256_setzero_ps();
            let mut sumf = 0.0f32;
            let m4 = _mm256_set1_epi8(0x0F);
            let sixteen = _mm256_set1_epi8(16);
            for (x, y) in x.iter().zip(y) {
                $crate::arch::x86_64::avx2::prefetch_block(x);
                let (scales, mins) = $crate::quant::unpack_scales_mins_k4(&x.scales);
                let mut sumi = 0i32;
                for j in 0..QK_K / 16 {
                    sumi += y.bsums[j] as i32 * mins[j / 2] as i32;
                }
                // SAFETY: qh is 32 bytes.
                let qh = unsafe { $crate::arch::x86_64::avx2::load256(x.qh.as_ptr()) };
                let mut acc = _mm256_setzero_si256();
                for c in 0..4 {
                    // SAFETY: 32 bytes at qs[32c..], y.qs[64c..] and y.qs[64c+32..] are in bounds.
                    let (q, a0, a1) = unsafe {
                        (
                            $crate::arch::x86_64::avx2::load256(x.qs.as_ptr().add(32 * c)),
                            $crate::arch::x86_64::avx2::load256(
                                y.qs.as_ptr().add(64 * c) as *const u8
                            ),
                            $crate::arch::x86_64::avx2::load256(
                                y.qs.as_ptr().add(64 * c + 32) as *const u8
                            ),
                        )
                    };
                    let b0 = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
                    let b1 = _mm256_set1_epi8((2u8 << (2 * c)) as i8);
                    let h0 =
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), sixteen);
                    let h1 =
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), sixteen);
                    let lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
                    acc = $sub32(acc, lo, a0, scales[2 * c] as i32);
                    acc = $sub32(acc, hi, a1, scales[2 * c + 1] as i32);
                }
                sums = $crate::arch::x86_64::avx2::add_lanes(
                    sums,
                    $crate::arch::x86_64::avx2::h2f(x.d) * y.d,
                    acc,
                );
                let dmin = $crate::arch::x86_64::avx2::h2f(x.dmin) * y.d;
                sumf -= dmin * sumi as f32;
            }
            $crate::arch::x86_64::avx2::finish_sums(sumf, sums)
        }
    };
}
pub(super) use k45_kernels;

/// AVX2 sub-block step for [`k45_kernels`].
#[inline]
#[target_feature(enable = "avx2")]
fn sub32_unsigned(acc: __m256i, w: __m256i, a: __m256i, scale: i32) -> __m256i {
    sub32_one_scale(acc, w, a, scale, false)
}

k45_kernels!("avx2,f16c", sub32_unsigned);

/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn vec_dot_q6_k_q8_k_impl(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sums = _mm256_setzero_ps();
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    for (x, y) in x.iter().zip(y) {
        prefetch_block(x);
        let mut acc = _mm256_setzero_si256();
        for c in 0..2 {
            // SAFETY: ql[64c..64c+64], qh[32c..32c+32] and y.qs[128c..128c+128] are in bounds.
            let (qa, qb, qh) = unsafe {
                (
                    load256(x.ql.as_ptr().add(64 * c)),
                    load256(x.ql.as_ptr().add(64 * c + 32)),
                    load256(x.qh.as_ptr().add(32 * c)),
                )
            };
            let h = |s: i32| {
                let v = match s {
                    0 => qh,
                    2 => _mm256_srli_epi16(qh, 2),
                    4 => _mm256_srli_epi16(qh, 4),
                    _ => _mm256_srli_epi16(qh, 6),
                };
                _mm256_slli_epi16(_mm256_and_si256(v, m2), 4)
            };
            let w = [
                _mm256_or_si256(_mm256_and_si256(qa, m4), h(0)),
                _mm256_or_si256(_mm256_and_si256(qb, m4), h(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), h(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), h(6)),
            ];
            for (k, w) in w.into_iter().enumerate() {
                let w = _mm256_sub_epi8(w, m32);
                let e = 128 * c + 32 * k;
                // SAFETY: y.qs[e..e+32] is in bounds (e + 32 <= 256).
                let a = unsafe { load256(y.qs.as_ptr().add(e) as *const u8) };
                let g = e / 16;
                acc = sub32_two_scales(acc, w, a, x.scales[g] as i32, x.scales[g + 1] as i32);
            }
        }
        sums = add_lanes(sums, h2f(x.d) * y.d, acc);
    }
    finish_sums(0.0, sums)
}

/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn vec_dot_q3_k_q8_k_impl(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sums = _mm256_setzero_ps();
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    for (x, y) in x.iter().zip(y) {
        prefetch_block(x);
        let scales = q3_k::unpack_scales(&x.scales);
        // SAFETY: hmask is 32 bytes.
        let hm = unsafe { load256(x.hmask.as_ptr()) };
        let mut acc = _mm256_setzero_si256();
        for c in 0..2 {
            // SAFETY: qs[32c..32c+32] is in bounds.
            let q3 = unsafe { load256(x.qs.as_ptr().add(32 * c)) };
            for k in 0..4 {
                let v = match k {
                    0 => q3,
                    1 => _mm256_srli_epi16(q3, 2),
                    2 => _mm256_srli_epi16(q3, 4),
                    _ => _mm256_srli_epi16(q3, 6),
                };
                let v = _mm256_and_si256(v, m3);
                let bit = _mm256_set1_epi8((1u8 << (4 * c + k)) as i8);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                let w = _mm256_sub_epi8(v, _mm256_andnot_si256(set, four));
                let e = 128 * c + 32 * k;
                // SAFETY: y.qs[e..e+32] is in bounds.
                let a = unsafe { load256(y.qs.as_ptr().add(e) as *const u8) };
                let g = e / 16;
                acc = sub32_two_scales(acc, w, a, scales[g] as i32 - 32, scales[g + 1] as i32 - 32);
            }
        }
        sums = add_lanes(sums, h2f(x.d) * y.d, acc);
    }
    finish_sums(0.0, sums)
}

/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn vec_dot_q2_k_q8_k_impl(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    let m3 = _mm256_set1_epi8(3);
    for (x, y) in x.iter().zip(y) {
        prefetch_block(x);
        let sc = &x.scales;
        let summs: i32 = y
            .bsums
            .iter()
            .zip(sc)
            .map(|(&b, &s)| b as i32 * (s >> 4) as i32)
            .sum();
        let mut acc = _mm256_setzero_si256();
        for c in 0..2 {
            // SAFETY: qs[32c..32c+32] is in bounds.
            let q2 = unsafe { load256(x.qs.as_ptr().add(32 * c)) };
            for k in 0..4 {
                let v = match k {
                    0 => q2,
                    1 => _mm256_srli_epi16(q2, 2),
                    2 => _mm256_srli_epi16(q2, 4),
                    _ => _mm256_srli_epi16(q2, 6),
                };
                let v = _mm256_and_si256(v, m3);
                let e = 128 * c + 32 * k;
                // SAFETY: y.qs[e..e+32] is in bounds.
                let a = unsafe { load256(y.qs.as_ptr().add(e) as *const u8) };
                let p = _mm256_maddubs_epi16(v, a);
                let g = e / 16;
                let s = _mm256_set_m128i(
                    _mm_set1_epi16((sc[g + 1] & 0xF) as i16),
                    _mm_set1_epi16((sc[g] & 0xF) as i16),
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
            }
        }
        let isum = hsum4(acc, acc, acc, acc)[0];
        let dall = y.d * h2f(x.d);
        let dmin = y.d * h2f(x.dmin);
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

mod k_rows;
mod ops;

fn vec_dot_q4_k_q8_k_r4(xs: [&[BlockQ4K]; 4], y: &[BlockQ8K]) -> [f32; 4] {
    // SAFETY: reachable only through the AVX2 and AVX-512 tables, handed out after
    // `is_available` (AVX2, F16C).
    unsafe { k_rows::q4_k_rows::<4>(xs, y) }
}

fn vec_dot_q6_k_q8_k_r4(xs: [&[BlockQ6K]; 4], y: &[BlockQ8K]) -> [f32; 4] {
    // SAFETY: as above.
    unsafe { k_rows::q6_k_rows::<4>(xs, y) }
}

fn vec_dot_q8_0_q8_0_r4(xs: [&[BlockQ8_0]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
    // SAFETY: reachable only through this level's table, handed out after `is_available`.
    unsafe { vec_dot_q8_0_q8_0_r4_impl(xs, y) }
}

fn vec_dot_q8_0_q8_0_r4x3(xs: [&[BlockQ8_0]; 4], ys: [&[BlockQ8_0]; 3]) -> [[f32; 3]; 4] {
    // SAFETY: reachable only through this level's table, handed out after `is_available`.
    unsafe { vec_dot_q8_0_q8_0_r4xt_impl::<3>(xs, ys) }
}

fn vec_dot_q8_0_q8_0_r4x2(xs: [&[BlockQ8_0]; 4], ys: [&[BlockQ8_0]; 2]) -> [[f32; 2]; 4] {
    // SAFETY: reachable only through this level's table, handed out after `is_available`.
    unsafe { vec_dot_q8_0_q8_0_r4xt_impl::<2>(xs, ys) }
}

fn vec_dot_q4_1_q8_1_r4(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
    // SAFETY: as above.
    unsafe { vec_dot_q4_1_q8_1_r4_impl(xs, y) }
}

fn attn_scores(
    order: crate::ops::DotOrder,
    q16: &[f32],
    k: &[f16],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY: reachable only through this level's table, handed out after `is_available`.
    unsafe { ops::attn_scores_impl(order, q16, k, stride, scale, out) }
}

fn attn_values(
    order: crate::ops::DotOrder,
    w16: &[f32],
    vt: &[f16],
    stride: usize,
    out: &mut [f32],
) {
    // SAFETY: as above.
    unsafe { ops::attn_values_impl(order, w16, vt, stride, out) }
}

fn softmax(s: &mut [f32]) {
    // SAFETY: as above.
    unsafe { ops::softmax_impl(s) }
}

fn swiglu(gate: &mut [f32], up: &[f32]) {
    // SAFETY: as above.
    unsafe { ops::swiglu_impl(gate, up) }
}

fn round_f16(x: &mut [f32]) {
    // SAFETY: as above.
    unsafe { ops::round_f16_impl(x) }
}

fn rope_apply(x: &mut [f32], cache: &[(f32, f32)], neox: bool) {
    // SAFETY: as above.
    unsafe { ops::rope_apply_impl(x, cache, neox) }
}

mod float;
use float::{
    quantize_f16_impl, quantize_q8_0_impl, quantize_q8_1_impl, quantize_q8_k_impl,
    vec_dot_bf16_impl, vec_dot_f16_impl, vec_dot_f32_impl,
};

// ---------------------------------------------------------------------------------------------
// Safe entry points and the table.

macro_rules! safe_wrappers_x4 {
    ($($name:ident => $imp:ident ($w:ty, $a:ty);)*) => {
        $(
            fn $name(x: &[$w], ys: [&[$a]; 4]) -> [f32; 4] {
                // SAFETY: only reachable through this level's table, which dispatch hands out
                // after `is_available()` confirmed the features the kernel needs.
                unsafe { $imp(x, ys) }
            }
        )*
    };
}
pub(super) use safe_wrappers_x4;

macro_rules! safe_wrappers {
    ($($name:ident => $imp:ident ($x:ty, $y:ty) -> $ret:ty;)*) => {
        $(
            fn $name(x: $x, y: $y) -> $ret {
                // SAFETY: only reachable through `table()`, which dispatch hands out after
                // `is_available()` confirmed AVX2, FMA and F16C.
                unsafe { $imp(x, y) }
            }
        )*
    };
}

safe_wrappers! {
    vec_dot_q8_0_q8_0 => vec_dot_q8_0_q8_0_impl(&[BlockQ8_0], &[BlockQ8_0]) -> f32;
    vec_dot_q4_0_q8_0 => vec_dot_q4_0_q8_0_impl(&[BlockQ4_0], &[BlockQ8_0]) -> f32;
    vec_dot_q4_1_q8_1 => vec_dot_q4_1_q8_1_impl(&[BlockQ4_1], &[BlockQ8_1]) -> f32;
    vec_dot_q5_0_q8_0 => vec_dot_q5_0_q8_0_impl(&[BlockQ5_0], &[BlockQ8_0]) -> f32;
    vec_dot_q5_1_q8_1 => vec_dot_q5_1_q8_1_impl(&[BlockQ5_1], &[BlockQ8_1]) -> f32;
    vec_dot_q2_k_q8_k => vec_dot_q2_k_q8_k_impl(&[BlockQ2K], &[BlockQ8K]) -> f32;
    vec_dot_q3_k_q8_k => vec_dot_q3_k_q8_k_impl(&[BlockQ3K], &[BlockQ8K]) -> f32;
    vec_dot_q4_k_q8_k => vec_dot_q4_k_q8_k_impl(&[BlockQ4K], &[BlockQ8K]) -> f32;
    vec_dot_q5_k_q8_k => vec_dot_q5_k_q8_k_impl(&[BlockQ5K], &[BlockQ8K]) -> f32;
    vec_dot_q6_k_q8_k => vec_dot_q6_k_q8_k_impl(&[BlockQ6K], &[BlockQ8K]) -> f32;
    vec_dot_f32 => vec_dot_f32_impl(&[f32], &[f32]) -> f32;
    vec_dot_f16 => vec_dot_f16_impl(&[f16], &[f16]) -> f32;
    vec_dot_bf16 => vec_dot_bf16_impl(&[bf16], &[bf16]) -> f32;
    quantize_q8_0 => quantize_q8_0_impl(&[f32], &mut [BlockQ8_0]) -> ();
    quantize_q8_1 => quantize_q8_1_impl(&[f32], &mut [BlockQ8_1]) -> ();
    quantize_q8_k => quantize_q8_k_impl(&[f32], &mut [BlockQ8K]) -> ();
    quantize_f16 => quantize_f16_impl(&[f32], &mut [f16]) -> ();
}

safe_wrappers_x4! {
    vec_dot_q8_0_q8_0_x4 => vec_dot_q8_0_q8_0_x4_impl(BlockQ8_0, BlockQ8_0);
    vec_dot_q4_0_q8_0_x4 => vec_dot_q4_0_q8_0_x4_impl(BlockQ4_0, BlockQ8_0);
    vec_dot_q4_1_q8_1_x4 => vec_dot_q4_1_q8_1_x4_impl(BlockQ4_1, BlockQ8_1);
    vec_dot_q5_0_q8_0_x4 => vec_dot_q5_0_q8_0_x4_impl(BlockQ5_0, BlockQ8_0);
    vec_dot_q5_1_q8_1_x4 => vec_dot_q5_1_q8_1_x4_impl(BlockQ5_1, BlockQ8_1);
}

/// The AVX2 kernels, shared with the AVX-512 table for types it has no kernel of its own for.
pub(crate) const AVX2_TABLE: KernelTable = KernelTable {
    level: CpuLevel::Avx2,
    q8_0_q8_0: vec_dot_q8_0_q8_0,
    q4_0_q8_0: vec_dot_q4_0_q8_0,
    q4_1_q8_1: vec_dot_q4_1_q8_1,
    q5_0_q8_0: vec_dot_q5_0_q8_0,
    q5_1_q8_1: vec_dot_q5_1_q8_1,
    q2_k_q8_k: vec_dot_q2_k_q8_k,
    q3_k_q8_k: vec_dot_q3_k_q8_k,
    q4_k_q8_k: vec_dot_q4_k_q8_k,
    q5_k_q8_k: vec_dot_q5_k_q8_k,
    q6_k_q8_k: vec_dot_q6_k_q8_k,
    f32_f32: vec_dot_f32,
    f16_f16: vec_dot_f16,
    bf16_bf16: vec_dot_bf16,
    quantize_q8_0,
    quantize_q8_1,
    quantize_q8_k,
    quantize_f16,
    q8_0_q8_0_x4: Some(vec_dot_q8_0_q8_0_x4),
    q4_0_q8_0_x4: Some(vec_dot_q4_0_q8_0_x4),
    q4_1_q8_1_x4: Some(vec_dot_q4_1_q8_1_x4),
    q5_0_q8_0_x4: Some(vec_dot_q5_0_q8_0_x4),
    q5_1_q8_1_x4: Some(vec_dot_q5_1_q8_1_x4),
    q8_0_q8_0_r4: Some(vec_dot_q8_0_q8_0_r4),
    q4_1_q8_1_r4: Some(vec_dot_q4_1_q8_1_r4),
    q4_k_q8_k_r4: Some(vec_dot_q4_k_q8_k_r4),
    q6_k_q8_k_r4: Some(vec_dot_q6_k_q8_k_r4),
    q4_1_q8_1_r4xt: R4Tokens::NONE,
    q8_0_q8_0_r4xt: R4Tokens {
        t2: Some(vec_dot_q8_0_q8_0_r4x2),
        t3: Some(vec_dot_q8_0_q8_0_r4x3),
        t4: None,
    },
    q4_1_q8_1_r16: None,
    q8_0_q8_0_r16: None,
    attn_scores,
    attn_values,
    softmax,
    swiglu,
    round_f16,
    rope_apply,
};

static TABLE: KernelTable = AVX2_TABLE;

/// This level's table (callers check [`is_available`] first).
pub(crate) fn table() -> &'static KernelTable {
    &TABLE
}
