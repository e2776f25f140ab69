//! AVX2 + FMA + F16C twins of `crate::ops` (attention dot products, softmax, SwiGLU, f16
//! rounding, RoPE). Unlike the quant kernels these *do* fuse: the scalar definitions use
//! `mul_add` exactly where ggml's AVX2 code uses `fmadd`, and a lane-wise vector FMA gives the
//! same bits as the scalar FMA on each lane. Tails fall back to the scalar expressions, which
//! compile to the same FMA instructions inside these `target_feature` functions.
//! Same soundness contract as the parent module.

use std::arch::x86_64::*;

use half::f16;

use crate::ops::{hsum8, silu, v_expf, DotOrder};

/// 8 f16 -> 8 f32.
///
/// # Safety
/// Requires F16C; `p` must be valid for reading 8 f16 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16x8(p: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// Stores 8 lanes into an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes(v: __m256) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` is 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// tinyBLAS chain: one 8-lane FMA accumulator, then `hsum8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_chain8(a: &[f32], b: &[f16]) -> f32 {
    let b = &b[..b.len().min(a.len() + 8)];
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, so 8 values are readable from both slices.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                load_f16x8(b.as_ptr().add(i)),
            )
        };
        acc = _mm256_fmadd_ps(x, y, acc);
        i += 8;
    }
    if i < n {
        acc = fma_tail(acc, &a[i..n], &b[i..]);
    }
    hsum8_v(acc)
}

/// `acc` with lanes `0..a.len()` (fewer than 8) replaced by `fma(a[l], b[l], acc[l])`, the
/// others untouched (`b` may run past `a`: those values are read but meet masked lanes): what the scalar tail loops of ggml do, in one vector FMA (short attention
/// rows are mostly tail: a row of 25 positions is three vectors and a tail).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fma_tail(acc: __m256, a: &[f32], b: &[f16]) -> __m256 {
    let k = a.len().min(8);
    let live = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(k as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    // SAFETY: the lanes below `k` are inside `a`; a masked load reads no other lane.
    let x = unsafe { _mm256_maskload_ps(a.as_ptr(), live) };
    let y = if b.len() >= 8 {
        // SAFETY: 8 readable values; the ones past `k` only meet masked lanes.
        unsafe { load_f16x8(b.as_ptr()) }
    } else {
        // Packed by shifts (a copy loop here became a memcpy call and a stalled reload).
        let (mut lo, mut hi) = (0u64, 0u64);
        for (j, v) in b.iter().take(k).enumerate() {
            let v = u64::from(v.to_bits());
            if j < 4 {
                lo |= v << (16 * j);
            } else {
                hi |= v << (16 * (j - 4));
            }
        }
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
    };
    _mm256_blendv_ps(acc, _mm256_fmadd_ps(x, y, acc), _mm256_castsi256_ps(live))
}

/// [`hsum8`] on a vector: `r[l] = v[l] + v[l + 4]`, then `(r0 + r2) + (r1 + r3)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8_v(v: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// [`crate::ops::fold_acc4`] on vectors: `(acc0 + acc2) + (acc1 + acc3)` lane-wise, `t[l] = r[l] + r[l + 4]`,
/// then `(t0 + t1) + (t2 + t3)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fold_acc4_v(acc: [__m256; 4]) -> f32 {
    let r = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps::<1>(r));
    let u = _mm_hadd_ps(t, t);
    _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)))
}

/// `ggml_vec_dot_f16`: four 8-lane accumulators fed 32 elements per step.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_acc4(a: &[f32], b: &[f16]) -> f32 {
    let b = &b[..b.len().min(a.len() + 8)];
    let n = a.len().min(b.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (r, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * r;
            // SAFETY: o + 8 <= i + 32 <= n.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(o)),
                    load_f16x8(b.as_ptr().add(o)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let r = (i / 8) % 4;
        // SAFETY: i + 8 <= n.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                load_f16x8(b.as_ptr().add(i)),
            )
        };
        acc[r] = _mm256_fmadd_ps(x, y, acc[r]);
        i += 8;
    }
    if i < n {
        let r = (i / 8) % 4;
        acc[r] = fma_tail(acc[r], &a[i..n], &b[i..]);
    }
    fold_acc4_v(acc)
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attn_scores_impl(
    order: DotOrder,
    q16: &[f32],
    k: &[f16],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    let hd = q16.len();
    for (j, o) in out.iter_mut().enumerate() {
        let row = &k[j * stride..][..hd];
        *o = match order {
            DotOrder::VecDotF16 => dot_acc4(q16, row),
            DotOrder::TinyBlas => dot_chain8(q16, row),
        } * scale;
    }
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attn_values_impl(
    order: DotOrder,
    w16: &[f32],
    vt: &[f16],
    stride: usize,
    out: &mut [f32],
) {
    let n = w16.len();
    for (i, o) in out.iter_mut().enumerate() {
        // The row with up to 8 more positions (still this row's) for the tail's full load.
        let start = i * stride;
        let row = &vt[start..(start + (n + 8).min(stride)).min(vt.len())];
        *o = match order {
            DotOrder::VecDotF16 => dot_acc4(w16, row),
            DotOrder::TinyBlas => dot_chain8(w16, row),
        };
    }
}

/// ggml_v_expf on 8 lanes (the AVX2 + FMA variant); lane-wise equal to `crate::ops::v_expf`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn v_expf8(x: __m256) -> __m256 {
    let c = |b: u32| _mm256_castsi256_ps(_mm256_set1_epi32(b as i32));
    let r = c(0x4b40_0000);
    let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
    let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f80_0000)));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0), _CMP_GT_OQ);
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm256_mul_ps(c(0x3f7f_fff6), b),
    );
    if _mm256_movemask_ps(big) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ);
    let mid = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let normal = _mm256_fmadd_ps(j, k, k);
    let not_huge = _mm256_blendv_ps(normal, mid, big);
    _mm256_blendv_ps(not_huge, _mm256_mul_ps(s1, s1), huge)
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn softmax_impl(s: &mut [f32]) {
    let n = s.len();
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(s.as_ptr().add(i)) });
        i += 8;
    }
    // max is exact in any order; NaNs are not expected in scores.
    let mut max = lanes(vmax).into_iter().fold(f32::NEG_INFINITY, f32::max);
    for &v in &s[i..] {
        max = max.max(v);
    }
    let vm = _mm256_set1_ps(max);
    let mut sum = 0.0f64;
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n; load and store stay inside `s`.
        unsafe {
            let e = v_expf8(_mm256_sub_ps(_mm256_loadu_ps(s.as_ptr().add(i)), vm));
            _mm256_storeu_ps(s.as_mut_ptr().add(i), e);
            sum += hsum8(&lanes(e)) as f64;
        }
        i += 8;
    }
    if i < n {
        let mut l = [0f32; 8];
        for (l, v) in l.iter_mut().zip(s[i..].iter_mut()) {
            *v = v_expf(*v - max);
            *l = *v;
        }
        sum += hsum8(&l) as f64;
    }
    let inv = _mm256_set1_ps((1.0 / sum) as f32);
    let invs = (1.0 / sum) as f32;
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = s.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
        }
        i += 8;
    }
    for v in &mut s[i..] {
        *v *= invs;
    }
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn swiglu_impl(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let p = gate.as_mut_ptr().add(i);
            let x = _mm256_loadu_ps(p);
            let e = v_expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(p, _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i))));
        }
        i += 8;
    }
    for j in i..n {
        gate[j] = silu(gate[j]) * up[j];
    }
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn round_f16_impl(x: &mut [f32]) {
    let n = x.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            let h = _mm256_cvtps_ph(_mm256_loadu_ps(p), _MM_FROUND_TO_NEAREST_INT);
            _mm256_storeu_ps(p, _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for v in &mut x[i..] {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// # Safety
/// Requires AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn rope_apply_impl(x: &mut [f32], cache: &[(f32, f32)], neox: bool) {
    // The scalar definition compiled with FMA enabled: `mul_add` becomes one vfmadd.
    crate::ops::rope_apply_body(x, cache, neox)
}
