//! AVX2 + F16C float dot products (f32 products summed in 8 f64 lanes, as the scalar twins in
//! `crate::quant::float`) and activation quantizers (ggml's AVX `quantize_row_q8_0/q8_1`,
//! `quantize_row_q8_K_ref`, F16C f32 -> f16), byte-identical to their scalar twins.
//! Same soundness contract as the parent module.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{hsum4, load128};
use crate::quant::float::finish_lanes;
use crate::quant::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};

// ---------------------------------------------------------------------------------------------
// Float types: products in f32, summed in 8 f64 lanes (see `crate::quant::float`).

/// Adds 8 f32 products to the two 4-lane f64 accumulators.
#[inline]
#[target_feature(enable = "avx2")]
fn acc_f64(acc: &mut [__m256d; 2], p: __m256) {
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
}

#[inline]
#[target_feature(enable = "avx2")]
fn finish_f64(acc: [__m256d; 2], tail: impl Fn(usize) -> f32, start: usize, n: usize) -> f32 {
    let mut lanes = [0f64; 8];
    // SAFETY: `lanes` is 64 writable bytes; storeu has no alignment requirement.
    unsafe {
        _mm256_storeu_pd(lanes.as_mut_ptr(), acc[0]);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc[1]);
    }
    for i in start..n {
        lanes[i % 8] += tail(i) as f64;
    }
    finish_lanes(&lanes)
}

/// # Safety
/// Requires AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn vec_dot_f32_impl(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [_mm256_setzero_pd(); 2];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, so 8 floats are readable from both.
        let p = unsafe {
            _mm256_mul_ps(
                _mm256_loadu_ps(x.as_ptr().add(i)),
                _mm256_loadu_ps(y.as_ptr().add(i)),
            )
        };
        acc_f64(&mut acc, p);
        i += 8;
    }
    finish_f64(acc, |i| x[i] * y[i], i, n)
}

/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn vec_dot_f16_impl(x: &[f16], y: &[f16]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [_mm256_setzero_pd(); 2];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, so 16 bytes are readable from both.
        let (a, b) = unsafe {
            (
                load128(x.as_ptr().add(i) as *const u8),
                load128(y.as_ptr().add(i) as *const u8),
            )
        };
        let p = _mm256_mul_ps(_mm256_cvtph_ps(a), _mm256_cvtph_ps(b));
        acc_f64(&mut acc, p);
        i += 8;
    }
    finish_f64(acc, |i| x[i].to_f32() * y[i].to_f32(), i, n)
}

/// # Safety
/// Requires AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn vec_dot_bf16_impl(x: &[bf16], y: &[bf16]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [_mm256_setzero_pd(); 2];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, so 16 bytes are readable from both.
        let (a, b) = unsafe {
            (
                load128(x.as_ptr().add(i) as *const u8),
                load128(y.as_ptr().add(i) as *const u8),
            )
        };
        let a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16));
        let b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
        acc_f64(&mut acc, _mm256_mul_ps(a, b));
        i += 8;
    }
    finish_f64(acc, |i| x[i].to_f32() * y[i].to_f32(), i, n)
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers: ggml's AVX `quantize_row_q8_0` / `quantize_row_q8_1`, whose scalar
// twins in `crate::quant::q8_0` are written to give the same bytes.

/// Quantizes 32 floats: returns (d, 8 i32 lanes of quants in element order... as 32 i8).
///
/// # Safety
/// Requires AVX2; `x` must have 32 readable floats.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quantize_32(x: *const f32, qs: *mut i8) -> (f32, __m256i) {
    // SAFETY: the caller guarantees 32 readable floats.
    let v = unsafe {
        [
            _mm256_loadu_ps(x),
            _mm256_loadu_ps(x.add(8)),
            _mm256_loadu_ps(x.add(16)),
            _mm256_loadu_ps(x.add(24)),
        ]
    };
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, v[0]);
    for v in &v[1..] {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *v));
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    let amax = _mm_cvtss_f32(m4);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let r = |v: __m256| {
        _mm256_cvtps_epi32(_mm256_round_ps(
            _mm256_mul_ps(v, id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        ))
    };
    let i = [r(v[0]), r(v[1]), r(v[2]), r(v[3])];
    let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    let p0 = _mm256_packs_epi32(i[0], i[1]);
    let p1 = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(p0, p1);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: the caller guarantees 32 writable bytes at `qs`.
    unsafe { _mm256_storeu_si256(qs as *mut __m256i, p) };
    (d, sum)
}

/// # Safety
/// Requires AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_q8_0_impl(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(32).zip(y.iter_mut()) {
        // SAFETY: x has 32 floats, b.qs 32 bytes.
        let (d, _) = unsafe { quantize_32(x.as_ptr(), b.qs.as_mut_ptr()) };
        b.d = f16::from_f32(d);
    }
}

/// # Safety
/// Requires AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_q8_1_impl(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(32).zip(y.iter_mut()) {
        // SAFETY: x has 32 floats, b.qs 32 bytes.
        let (d, sum) = unsafe { quantize_32(x.as_ptr(), b.qs.as_mut_ptr()) };
        let s = hsum4(sum, sum, sum, sum)[0];
        b.d = f16::from_f32(d);
        b.s = f16::from_f32(d * s as f32);
    }
}

/// ggml `quantize_row_q8_K_ref` (which llama.cpp's x86 backend also uses for activations):
/// the signed value of largest magnitude (first on ties) sets `iscale = -127/max`, quants are
/// `nearest_int(iscale * x)` (round half to even) capped at 127, plus 16-element sums.
///
/// # Safety
/// Requires AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_q8_k_impl(x: &[f32], y: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let xs: &[f32; QK_K] = x.try_into().expect("chunks_exact(QK_K)");
        let mut m = _mm256_setzero_ps();
        for c in 0..QK_K / 8 {
            // SAFETY: 8 floats at 8c are in bounds.
            let v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * c)) };
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        // First element whose magnitude is amax gives the sign, as the scalar `>` scan does.
        let max = *xs.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0f32 / max;
        let vs = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_epi32(127);
        for g in 0..QK_K / 16 {
            let q = |o: usize| {
                // SAFETY: 8 floats at 16g + o (o in {0, 8}) are in bounds.
                let v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(16 * g + o)) };
                let r = _mm256_round_ps(
                    _mm256_mul_ps(vs, v),
                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                );
                _mm256_min_epi32(_mm256_cvtps_epi32(r), cap)
            };
            let (q0, q1) = (q(0), q(8));
            b.bsums[g] = hsum4(_mm256_add_epi32(q0, q1), q0, q0, q0)[0] as i16;
            // i32 -> i16 -> i8 with the lane order fixed as in `quantize_32`.
            let p = _mm256_packs_epi32(q0, q1); // [q0 0..4, q1 0..4 | q0 4..8, q1 4..8]
            let p = _mm256_permute4x64_epi64(p, 0b11_01_10_00); // [q0 0..4, q0 4..8 | q1 0..4, q1 4..8]
            let p8 = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            // SAFETY: 16 writable bytes at qs[16g..].
            unsafe { _mm_storeu_si128(b.qs.as_mut_ptr().add(16 * g) as *mut __m128i, p8) };
        }
        b.d = 1.0 / iscale;
    }
}

/// f32 -> f16 round-to-nearest-even with F16C (same as `f16::from_f32` for non-NaN input).
///
/// # Safety
/// Requires AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn quantize_f16_impl(x: &[f32], y: &mut [f16]) {
    let n = x.len().min(y.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n: 8 floats readable, 16 bytes writable.
        unsafe {
            let h = _mm256_cvtps_ph(
                _mm256_loadu_ps(x.as_ptr().add(i)),
                _MM_FROUND_TO_NEAREST_INT,
            );
            _mm_storeu_si128(y.as_mut_ptr().add(i) as *mut __m128i, h);
        }
        i += 8;
    }
    for j in i..n {
        y[j] = f16::from_f32(x[j]);
    }
}
