//! Property tests (proptest): for arbitrary block bytes (scales kept finite) and arbitrary
//! activations, every kernel level's dot product has the scalar twin's exact bits, and
//! dequantize(quantize(x)) stays within the type's error bound.

use outcore_kernels::dispatch::{table, CpuLevel};
use outcore_kernels::{
    dequantize_row, quantize_activation_with, quantize_row, row_bytes, vec_dot_type, vec_dot_with,
    GgmlType,
};
use proptest::prelude::*;

const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Byte offsets of f16 scale fields per block (cleared to finite values below).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

fn weight_bytes(ty: GgmlType, raw: &[u8], nb: usize) -> Vec<u8> {
    let len = ty.type_size() * nb;
    let mut w: Vec<u8> = raw.iter().cycle().take(len).copied().collect();
    for blk in w.chunks_exact_mut(ty.type_size()) {
        for &o in f16_fields(ty) {
            blk[o + 1] &= 0xBB; // exponent < 31 and small: finite, no overflow in the sums
        }
        if ty == GgmlType::Q8_0 {
            for q in &mut blk[2..] {
                if *q == 0x80 {
                    *q = 0x81; // ggml never writes -128 in Q8_0
                }
            }
        }
    }
    if ty.is_float() {
        // Keep floats finite and moderate: clear the top exponent bit of every element.
        let es = ty.type_size();
        for e in w.chunks_exact_mut(es) {
            e[es - 1] &= 0xBF;
        }
    }
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn simd_levels_match_scalar(ti in 0usize..13, nb in 1usize..6, raw in proptest::collection::vec(any::<u8>(), 64..512),
                                xs in proptest::collection::vec(-50.0f32..50.0, 1..64)) {
        let ty = WEIGHT_TYPES[ti];
        let n = nb * ty.block_size() * if ty.is_float() { 11 } else { 1 };
        let w = weight_bytes(ty, &raw, n / ty.block_size());
        let x: Vec<f32> = xs.iter().cycle().take(n).copied().collect();
        let vd = vec_dot_type(ty);
        let scalar = table(CpuLevel::Scalar).unwrap();
        let mut a = vec![0u8; row_bytes(vd, n).unwrap()];
        quantize_activation_with(scalar, vd, &x, &mut a).unwrap();
        let want = vec_dot_with(scalar, ty, n, &w, &a).unwrap();
        for k in CpuLevel::ALL.iter().filter_map(|&l| table(l)) {
            let mut a2 = vec![0u8; a.len()];
            quantize_activation_with(k, vd, &x, &mut a2).unwrap();
            prop_assert_eq!(&a2, &a, "{} activation quantizer [{:?}]", vd, k.level);
            let got = vec_dot_with(k, ty, n, &w, &a).unwrap();
            prop_assert_eq!(got.to_bits(), want.to_bits(), "{} [{:?}]: {} vs {}", ty, k.level, got, want);
        }
    }

    #[test]
    fn round_trip_error_is_bounded(ti in 3usize..13, nb in 1usize..4, xs in proptest::collection::vec(-4.0f32..4.0, 256..1024)) {
        let ty = WEIGHT_TYPES[ti];
        let n = nb * ty.block_size();
        let x: Vec<f32> = xs.iter().cycle().take(n).copied().collect();
        let mut q = vec![0u8; row_bytes(ty, n).unwrap()];
        quantize_row(ty, &x, &mut q).unwrap();
        let mut y = vec![0f32; n];
        dequantize_row(ty, &q, &mut y).unwrap();
        // Per block the error is at most a couple of quantization steps of the block's range.
        let bits = match ty { GgmlType::Q2_K => 2, GgmlType::Q3_K => 3, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 4,
                              GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 5, GgmlType::Q6_K => 6, _ => 8 };
        let bs = ty.block_size();
        for (g, (xg, yg)) in x.chunks(bs).zip(y.chunks(bs)).enumerate() {
            let range = xg.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
            let step = range / ((1u32 << bits) - 1) as f32;
            for (a, b) in xg.iter().zip(yg) {
                prop_assert!((a - b).abs() <= 2.0 * step + 1e-3 * range + 1e-6, "{} block {}: {} vs {} (step {})", ty, g, a, b, step);
            }
        }
    }
}
