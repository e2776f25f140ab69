//! Scalar emulations of the float arithmetic llama.cpp's CPU backend runs on x86-64 with
//! AVX2 + FMA + F16C (the build that made the golden fixtures), reproduced operation for operation so
//! results are bit-identical: FMAs where the C code uses `fmadd`, reductions in the exact lane
//! order of the SIMD code. The demo model amplifies 1-ulp differences (activations are re-quantized
//! to 8 bits before every product), so a mathematically equal order is not enough.

/// ggml's x86 `hsum_float_8` (also tinyBLAS's `hsum(__m256)` and the AVX2 softmax chunk sum):
/// upper 4 lanes + lower 4, then lanes (0+2) and (1+3), then their sum.
#[inline(always)]
pub(crate) fn hsum8(v: &[f32; 8]) -> f32 {
    let r = [v[4] + v[0], v[5] + v[1], v[6] + v[2], v[7] + v[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml_v_expf (AVX2 + FMA variant): exp via a polynomial in the reduced argument and an
/// exponent built with integer adds; inputs below about -103.97 give 0, above 88.38 infinity.
#[inline(always)]
pub(crate) fn v_expf(x: f32) -> f32 {
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
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// ggml_vec_dot_f16 on AVX2 (inputs already widened from f16): four 8-lane accumulators fed 32
/// elements per step with FMAs, folded 0+2, 1+3, then 0+1, then `hsum8` (the two `hadd`s add
/// in the same pairs). Elements past the end count as zeros (ggml's KV view is padded to 256
/// cells whose weights are zero), which leave every accumulator unchanged.
pub(crate) fn dot_vec_f16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; 8]; 4];
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let s = &mut acc[(i / 8) % 4][i % 8];
        *s = x.mul_add(y, *s);
    }
    let mut r = [0f32; 8];
    for (l, r) in r.iter_mut().enumerate() {
        *r = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let t0 = [r[0] + r[4], r[1] + r[5], r[2] + r[6], r[3] + r[7]];
    (t0[0] + t0[1]) + (t0[2] + t0[3])
}

/// llamafile tinyBLAS (AVX2, f16 x f16 -> f32): one 8-lane FMA chain per output over the whole
/// row, then `hsum8`. Missing elements past the end are zeros, as above.
pub(crate) fn dot_tinyblas8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        acc[i % 8] = x.mul_add(y, acc[i % 8]);
    }
    hsum8(&acc)
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
        let b: Vec<f32> = (0..100).map(|i| (i % 5) as f32 - 2.0).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot_vec_f16(&a, &b), want);
        assert_eq!(dot_tinyblas8(&a, &b), want);
    }
}
