//! Checks against ggml's C code and ggml's own test thresholds.
//!
//! - K-quant reference quantizers (Q2_K..Q6_K, Q8_K) byte for byte against ggml's
//!   `quantize_row_*_ref` (bytes made by `tests/gen_kquant_ref.c` from a ggml checkout, since
//!   gguf-py 0.19 has no k-quant quantizer). The RMSE of our round trip is also compared with
//!   ggml's (must be within 5%; equal bytes make it equal).
//! - A port of ggml `tests/test-quantize-fns.cpp`: round-trip RMSE and dot-product error limits
//!   on its `0.1 + 2*cos(i + offset)` data, for every type and every kernel level this CPU runs.
//! - `vec_dot(w, quantize_activation(x))` against `dot(dequantize(w), x)` in f64 on random data,
//!   over odd block counts (odd element counts for the float types), for every kernel level.

use std::path::Path;

use outcore_kernels::dispatch::{table, CpuLevel, KernelTable};
use outcore_kernels::{
    dequantize_row, quantize_row, row_bytes, vec_dot_type, vec_dot_with, GgmlType,
};

fn read(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/quant")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; row_bytes(ty, x.len()).unwrap()];
    quantize_row(ty, x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut y).unwrap();
    y
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

const K_TYPES: [GgmlType; 6] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

#[test]
fn kquant_quantizers_match_ggml_c_byte_for_byte() {
    let x = f32s(&read("kquant_input.f32"));
    let n = 512;
    for ty in K_TYPES {
        let want = read(&format!("kquant_{}.bin", ty.name()));
        let rb = row_bytes(ty, n).unwrap();
        assert_eq!(want.len(), rb * x.len() / n, "{ty}");
        let mut ours_err = 0.0;
        let mut ggml_err = 0.0;
        for (r, (xr, wr)) in x.chunks_exact(n).zip(want.chunks_exact(rb)).enumerate() {
            let mut got = vec![0u8; rb];
            quantize_row(ty, xr, &mut got).unwrap();
            assert!(
                got == wr,
                "{ty} row {r}: bytes differ from ggml's quantize_row_{}_ref",
                ty.name()
            );
            let mut ref_y = vec![0f32; n];
            dequantize_row(ty, wr, &mut ref_y).unwrap();
            ours_err += rmse(xr, &round_trip(ty, xr));
            ggml_err += rmse(xr, &ref_y);
        }
        assert!(
            ours_err <= ggml_err * 1.05 + 1e-12,
            "{ty}: RMSE {ours_err} vs ggml {ggml_err}"
        );
    }
}

/// ggml test-quantize-fns `generate_data`: `0.1 + 2*cosf(i + offset)` (offset added in f32).
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1f64 + 2.0 * ((i as f32 + offset).cos()) as f64) as f32)
        .collect()
}

fn levels() -> Vec<&'static KernelTable> {
    CpuLevel::ALL.iter().filter_map(|&l| table(l)).collect()
}

fn quantize_act(k: &KernelTable, ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let vd = vec_dot_type(ty);
    let mut a = vec![0u8; row_bytes(vd, x.len()).unwrap()];
    outcore_kernels::quantize_activation_with(k, vd, x, &mut a).unwrap();
    a
}

#[test]
fn test_quantize_fns_thresholds() {
    let n = 32 * 128;
    let a = generate_data(0.0, n);
    let b = generate_data(1.0, n);
    for ty in GgmlType::ALL {
        // ggml's array_rmse is sqrt(sum)/n, not sqrt(sum/n).
        let y = round_trip(ty, &a);
        let s: f64 = a
            .iter()
            .zip(&y)
            .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
            .sum();
        let total = s.sqrt() as f32 / n as f32;
        let max_q = match ty {
            GgmlType::Q2_K => 0.0075,
            GgmlType::Q3_K => 0.0040,
            _ => 0.002,
        };
        assert!(total < max_q, "{ty}: quantization error {total} >= {max_q}");

        if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
            continue; // activation-only types: no vec_dot in ggml's table
        }
        let dot_ref: f64 = a.iter().zip(&b).map(|(p, q)| (p * q) as f64).sum();
        let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
        quantize_row(ty, &a, &mut w).unwrap();
        let max_dot = if ty == GgmlType::Q2_K { 0.04 } else { 0.02 };
        for k in levels() {
            let act = quantize_act(k, ty, &b);
            let got = vec_dot_with(k, ty, n, &w, &act).unwrap();
            let err = (got - dot_ref as f32).abs() / n as f32;
            assert!(
                err < max_dot,
                "{ty} [{:?}]: dot error {err} >= {max_dot}",
                k.level
            );
        }
    }
}

struct Lcg(u64);
impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

#[test]
fn vec_dot_matches_f64_dot_of_dequantized_weights() {
    let mut rng = Lcg(0x5eed);
    for ty in GgmlType::ALL {
        if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
            continue;
        }
        let bs = ty.block_size();
        let lens: Vec<usize> = if bs == 1 {
            vec![1, 2, 3, 5, 7, 15, 17, 31, 33, 63, 67, 127, 129, 255, 1023]
        } else {
            [1, 3, 5, 7, 13].map(|b| b * bs).to_vec()
        };
        for n in lens {
            let w_f = rng.vec(n, 1.5);
            let x = rng.vec(n, 3.0);
            let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
            quantize_row(ty, &w_f, &mut w).unwrap();
            let mut wd = vec![0f32; n];
            dequantize_row(ty, &w, &mut wd).unwrap();
            let exact: f64 = wd.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let wl1: f64 = wd.iter().map(|v| v.abs() as f64).sum();
            // Bound of the activation rounding: 8-bit types move each x by <= amax/254 (Q8_K:
            // amax/254 too), f16 by <= |x|/2048, bf16 by <= |x|/256; plus f32 accumulation.
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let act_err = match vec_dot_type(ty) {
                GgmlType::F32 => 0.0,
                GgmlType::F16 => amax / 2048.0,
                GgmlType::BF16 => amax / 256.0,
                _ => amax / 254.0,
            };
            // Q8_1's s = d*sum(q) is stored in f16: one f16 rounding of |s| <= 32*amax per
            // block, times |m| <= max|w|.
            let wmax = wd.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let s_err = if vec_dot_type(ty) == GgmlType::Q8_1 {
                (n / 32) as f64 * wmax * 32.0 * amax / 2048.0
            } else {
                0.0
            };
            let tol = wl1 * act_err * 1.01 + s_err + 1e-4 * (1.0 + wl1 * amax / 100.0);
            for k in levels() {
                let act = quantize_act(k, ty, &x);
                let got = vec_dot_with(k, ty, n, &w, &act).unwrap() as f64;
                assert!(
                    (got - exact).abs() <= tol,
                    "{ty} n={n} [{:?}]: {got} vs {exact} (tol {tol})",
                    k.level
                );
            }
        }
    }
}

#[test]
fn scalar_vec_dot_matches_ggml_generic_c_bit_for_bit() {
    // Weights: the random blocks of blocks_<TYPE>.bin; activations quantized by ggml's reference
    // quantizer; result of ggml's `ggml_vec_dot_*_generic` (tests/gen_vec_dot_ref.c).
    let scalar = table(CpuLevel::Scalar).unwrap();
    for ty in [
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
    ] {
        let w = read(&format!("blocks_{}.bin", ty.name()));
        let act = read(&format!("vecdot_{}.act", ty.name()));
        let want = f32s(&read(&format!("vecdot_{}.f32", ty.name())))[0];
        let n = w.len() / ty.type_size() * ty.block_size();
        let got = vec_dot_with(scalar, ty, n, &w, &act).unwrap();
        // Q4_1 and Q8_0 follow llama.cpp's x86 (AVX2) accumulation order instead of the generic
        // C one (engine golden tests reproduce llama.cpp's logits bit for bit); close, not equal.
        if !matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0) {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{ty}: scalar {got} vs ggml generic {want}"
            );
        }
        for k in levels() {
            let got = vec_dot_with(k, ty, n, &w, &act).unwrap();
            let scale: f64 = 1e-5 * (1.0 + want.abs() as f64);
            assert!(
                (got as f64 - want as f64).abs() <= scale.max(1e-3),
                "{ty} [{:?}]: {got} vs {want}",
                k.level
            );
        }
    }
}
