//! Float ops of the llama forward pass in the exact operation order llama.cpp's CPU backend runs
//! on x86-64 with AVX2 + FMA + F16C (`ggml-cpu/vec.{h,cpp}`, `ops.cpp`, llamafile's tinyBLAS):
//! FMAs where the C code uses `fmadd`, reductions in the SIMD code's lane order. The demo model
//! amplifies 1-ulp differences (activations are re-quantized to 8 bits before every product), so a
//! mathematically equal order is not enough to reproduce llama.cpp's tokens.
//!
//! The functions named `*_scalar` are the definitions (scalar twins); the public entry points
//! dispatch through [`crate::kernels`] to SIMD versions that return the same bits
//! (`arch::x86_64::avx2::ops`, tested in `tests/simd_twins.rs`).

use half::f16;

use crate::kernels;

/// Which lane order a dot product of f16 data follows (ggml picks the kernel by batch size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotOrder {
    /// `ggml_vec_dot_f16` (one token): four 8-lane FMA accumulators fed 32 elements per step.
    VecDotF16,
    /// llamafile tinyBLAS (several tokens): one 8-lane FMA chain over the whole row.
    TinyBlas,
}

/// ggml's x86 `hsum_float_8` (also tinyBLAS's `hsum(__m256)` and the AVX2 softmax chunk sum):
/// upper 4 lanes + lower 4, then lanes (0+2) and (1+3), then their sum.
#[inline(always)]
pub fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml_v_expf (AVX2 + FMA variant): exp via a polynomial in the reduced argument and an
/// exponent built with integer adds; inputs below about -103.97 give 0, above 88.38 infinity.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits().wrapping_shl(23);
    let k = c(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7f00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml_v_silu: `x / (1 + v_expf(0 - x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// `ggml_vec_dot_f16` on AVX2 (`a` already widened from f16): four 8-lane accumulators fed 32
/// elements per step with FMAs, folded (0+2)+(1+3), then halves, then pairs. Elements past the
/// end count as zeros (ggml's KV view is padded to 256 cells whose weights are zero), which
/// leave every accumulator unchanged.
pub fn dot_f16_acc4_scalar(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = [[0f32; 8]; 4];
    for (i, (&x, y)) in a.iter().zip(b).enumerate() {
        let s = &mut acc[(i / 8) % 4][i % 8];
        *s = x.mul_add(y.to_f32(), *s);
    }
    fold_acc4(&acc)
}

/// The final reduction of [`dot_f16_acc4_scalar`] (shared with the SIMD twin).
#[inline(always)]
pub fn fold_acc4(acc: &[[f32; 8]; 4]) -> f32 {
    let mut r = [0f32; 8];
    for (l, r) in r.iter_mut().enumerate() {
        *r = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let t0 = [r[0] + r[4], r[1] + r[5], r[2] + r[6], r[3] + r[7]];
    (t0[0] + t0[1]) + (t0[2] + t0[3])
}

/// llamafile tinyBLAS (AVX2, f16 x f16 -> f32): one 8-lane FMA chain per output over the whole
/// row, then [`hsum8`]. Missing elements past the end are zeros, as above.
pub fn dot_f16_chain8_scalar(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = [0f32; 8];
    for (i, (&x, y)) in a.iter().zip(b).enumerate() {
        acc[i % 8] = x.mul_add(y.to_f32(), acc[i % 8]);
    }
    hsum8(&acc)
}

/// Attention scores: `out[j] = dot(q16, k[j*stride..][..q16.len()]) * scale` for `j < out.len()`.
pub fn attn_scores_scalar(
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
            DotOrder::VecDotF16 => dot_f16_acc4_scalar(q16, row),
            DotOrder::TinyBlas => dot_f16_chain8_scalar(q16, row),
        } * scale;
    }
}

/// Attention output from transposed V: `out[i] = dot(w16, vt[i*stride..][..w16.len()])`.
pub fn attn_values_scalar(
    order: DotOrder,
    w16: &[f32],
    vt: &[f16],
    stride: usize,
    out: &mut [f32],
) {
    let n = w16.len();
    for (i, o) in out.iter_mut().enumerate() {
        let row = &vt[i * stride..][..n];
        *o = match order {
            DotOrder::VecDotF16 => dot_f16_acc4_scalar(w16, row),
            DotOrder::TinyBlas => dot_f16_chain8_scalar(w16, row),
        };
    }
}

/// Softmax in place as `ggml_soft_max_f32` runs on AVX2: max-subtracted [`v_expf`], each 8-wide
/// chunk reduced with [`hsum8`] into an f64 sum, then scaled by `(float)(1/sum)`. Entries past
/// the end (masked in ggml) contribute exp = 0.
pub fn softmax_scalar(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for chunk in s.chunks_mut(8) {
        let mut lanes = [0f32; 8];
        for (l, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = v_expf(*v - max);
            *l = *v;
        }
        sum += hsum8(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// SwiGLU of the llama FFN in place: `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu_scalar(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// Rounds every value through f16 (ggml converts q and the attention weights to f16 for the f16
/// products), round-to-nearest-even.
pub fn round_f16_scalar(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// RoPE angles for one position the way ggml's rope cache computes them: `theta` starts at `pos`
/// and is multiplied by `base^(-2/n_dims)` per pair, scaled by `freq_scale`; glibc `sinf`/`cosf`.
/// `cache` gets `n_dims/2` (cos, sin) pairs.
pub fn rope_cache(
    pos: usize,
    n_dims: usize,
    base: f32,
    freq_scale: f32,
    cache: &mut Vec<(f32, f32)>,
) {
    cache.clear();
    let theta_scale = base.powf(-2.0 / n_dims as f32);
    let mut theta = pos as f32;
    for _ in (0..n_dims).step_by(2) {
        let t = freq_scale * theta;
        cache.push((t.cos(), t.sin()));
        theta *= theta_scale;
    }
}

/// Rotates one head in place with a [`rope_cache`]: pairs `(2i, 2i+1)` (`neox` false) or
/// `(i, i + n_dims/2)`; GCC contracts ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos` into FMAs.
pub fn rope_apply_scalar(x: &mut [f32], cache: &[(f32, f32)], neox: bool) {
    rope_apply_body(x, cache, neox)
}

/// The body of [`rope_apply_scalar`], inlined into the SIMD level's FMA-enabled twin.
#[inline(always)]
pub(crate) fn rope_apply_body(x: &mut [f32], cache: &[(f32, f32)], neox: bool) {
    let half = cache.len();
    for (i, &(cos, sin)) in cache.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0.mul_add(cos, -(x1 * sin));
        x[b] = x0.mul_add(sin, x1 * cos);
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatching entry points.

/// [`attn_scores_scalar`] with this CPU's kernel. Panics if `k` is shorter than
/// `(out.len() - 1) * stride + q16.len()` (a caller bug, not input data).
pub fn attn_scores(
    order: DotOrder,
    q16: &[f32],
    k: &[f16],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    if let Some(last) = out.len().checked_sub(1) {
        assert!(
            k.len() >= last * stride + q16.len(),
            "attn_scores: K too short"
        );
    }
    (kernels().attn_scores)(order, q16, k, stride, scale, out)
}

/// [`attn_values_scalar`] with this CPU's kernel (same length contract as [`attn_scores`]).
pub fn attn_values(order: DotOrder, w16: &[f32], vt: &[f16], stride: usize, out: &mut [f32]) {
    if let Some(last) = out.len().checked_sub(1) {
        assert!(
            vt.len() >= last * stride + w16.len(),
            "attn_values: V too short"
        );
    }
    (kernels().attn_values)(order, w16, vt, stride, out)
}

/// [`softmax_scalar`] with this CPU's kernel.
pub fn softmax(s: &mut [f32]) {
    (kernels().softmax)(s)
}

/// [`swiglu_scalar`] with this CPU's kernel (over the shorter of the two).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    (kernels().swiglu)(gate, up)
}

/// [`round_f16_scalar`] with this CPU's kernel.
pub fn round_f16(x: &mut [f32]) {
    (kernels().round_f16)(x)
}

/// [`rope_apply_scalar`] with this CPU's kernel.
pub fn rope_apply(x: &mut [f32], cache: &[(f32, f32)], neox: bool) {
    assert!(
        x.len() >= 2 * cache.len(),
        "rope_apply: head shorter than n_dims"
    );
    (kernels().rope_apply)(x, cache, neox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp() {
        for i in -200..200 {
            let x = i as f32 * 0.37;
            let (got, want) = (v_expf(x), x.exp());
            if x < -103.0 {
                assert!(got < 1e-38);
            } else if x < 88.0 {
                assert!((got - want).abs() <= want * 4e-7, "{x}: {got} vs {want}");
            }
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(0.0), 1.0);
    }

    #[test]
    fn dots_match_plain_sums_on_integers() {
        let a: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        let b: Vec<f16> = (0..100)
            .map(|i| f16::from_f32((i % 5) as f32 - 2.0))
            .collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y.to_f32()).sum();
        assert_eq!(dot_f16_acc4_scalar(&a, &b), want);
        assert_eq!(dot_f16_chain8_scalar(&a, &b), want);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut s = [1.0f32, 2.0, 3.0, -1.0, 0.5, 7.0, 2.0, 1.0, 0.0, -3.0];
        softmax(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[5] > s[2] && s[2] > s[1]);
        let mut t = [1.0f32, 2.0, 3.0, -1.0, 0.5, 7.0, 2.0, 1.0, 0.0, -3.0];
        softmax_scalar(&mut t);
        assert_eq!(s, t);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!(silu(-100.0).abs() < 1e-30);
    }

    #[test]
    fn rope_neox_and_interleaved_rotate_the_same_pairs_differently() {
        let mut cache = Vec::new();
        rope_cache(3, 4, 10000.0, 1.0, &mut cache);
        assert_eq!(cache.len(), 2);
        let mut a = [1.0f32, 0.0, 0.0, 0.0];
        rope_apply(&mut a, &cache, false);
        assert!((a[0] - 3f32.cos()).abs() < 1e-6 && (a[1] - 3f32.sin()).abs() < 1e-6);
        let mut b = [1.0f32, 0.0, 0.0, 0.0];
        rope_apply(&mut b, &cache, true);
        assert!((b[0] - 3f32.cos()).abs() < 1e-6 && (b[2] - 3f32.sin()).abs() < 1e-6);
        // position 0 is the identity
        rope_cache(0, 4, 10000.0, 1.0, &mut cache);
        let mut c = [0.3f32, -0.2, 0.1, 0.9];
        rope_apply(&mut c, &cache, false);
        assert_eq!(c, [0.3, -0.2, 0.1, 0.9]);
    }
}
