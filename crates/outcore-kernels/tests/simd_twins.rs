//! Every SIMD kernel gives the same bits as its scalar twin (style: "Run every path and assert
//! that they agree"), on random data over odd lengths, for every level this CPU can run.
//! The SIMD kernels do their integer work in any order but their float work in the scalar
//! order, so equality is exact, not within a tolerance.

use outcore_format::TensorView;
use outcore_kernels::dispatch::{table, CpuLevel, KernelTable};
use outcore_kernels::matmul::matmul_with;
use outcore_kernels::quant::{VecDotR4Fn, VecDotR4XtFn};
use outcore_kernels::{
    quantize_activation_with, quantize_row, row_bytes, vec_dot_type, vec_dot_with, GgmlType,
};

struct Rng(u64);
impl Rng {
    fn u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
    fn f32(&mut self) -> f32 {
        (self.u32() as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
    fn row(&mut self, n: usize) -> Vec<f32> {
        let scale = [0.01f32, 0.3, 1.0, 40.0][(self.u32() % 4) as usize];
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

fn simd_levels() -> Vec<&'static KernelTable> {
    CpuLevel::ALL
        .iter()
        .filter(|l| **l != CpuLevel::Scalar)
        .filter_map(|&l| table(l))
        .collect()
}

fn scalar() -> &'static KernelTable {
    table(CpuLevel::Scalar).unwrap()
}

#[test]
fn simd_levels_exist_on_this_machine() {
    eprintln!(
        "kernel levels here: {:?}",
        simd_levels().iter().map(|k| k.level).collect::<Vec<_>>()
    );
}

#[test]
fn vec_dot_simd_equals_scalar_bit_for_bit() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for ty in GgmlType::ALL {
        if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
            continue;
        }
        let bs = ty.block_size();
        let lens: Vec<usize> = if bs == 1 {
            vec![
                1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 1023,
            ]
        } else {
            [1, 2, 3, 4, 5, 7, 9, 13].map(|b| b * bs).to_vec()
        };
        for n in lens {
            for trial in 0..4 {
                let wf = rng.row(n);
                let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
                quantize_row(ty, &wf, &mut w).unwrap();
                if trial == 3 && !ty.is_float() {
                    // raw random bytes (scales included) as a worst case for the integer paths;
                    // keep the f16 scale fields finite by clearing their exponent's top bit.
                    for b in w.iter_mut() {
                        *b = (rng.u32() & 0xFF) as u8;
                    }
                    sanitize_scales(ty, &mut w);
                }
                let x = rng.row(n);
                let vd = vec_dot_type(ty);
                let mut act = vec![0u8; row_bytes(vd, n).unwrap()];
                quantize_activation_with(scalar(), vd, &x, &mut act).unwrap();
                let want = vec_dot_with(scalar(), ty, n, &w, &act).unwrap();
                for k in simd_levels() {
                    let got = vec_dot_with(k, ty, n, &w, &act).unwrap();
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{ty} n={n} trial {trial} [{:?}]: {got} vs scalar {want}",
                        k.level
                    );
                }
            }
        }
    }
}

/// Clears bit 14 of every f16 scale so it is finite (exponent < 31).
fn sanitize_scales(ty: GgmlType, w: &mut [u8]) {
    let offs: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            &[0, 2]
        }
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    for blk in w.chunks_exact_mut(ty.type_size()) {
        for &o in offs {
            blk[o + 1] &= 0xBF;
        }
    }
    if ty == GgmlType::Q8_0 {
        // ggml's Q8_0 never holds -128 (the i8 trick needs |w| <= 127 with |a| = 127).
        for blk in w.chunks_exact_mut(34) {
            for q in &mut blk[2..] {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
        }
    }
}

#[test]
fn activation_quantizers_simd_equal_scalar() {
    let mut rng = Rng(12345);
    for vd in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q8_K,
        GgmlType::F16,
        GgmlType::F32,
        GgmlType::BF16,
    ] {
        for nb in [1usize, 2, 3, 5, 8, 17] {
            let n = nb * vd.block_size() * if vd.block_size() == 1 { 37 } else { 1 };
            for trial in 0..6 {
                let mut x = rng.row(n);
                match trial {
                    1 => x.iter_mut().step_by(3).for_each(|v| *v = 0.0),
                    2 => x.iter_mut().for_each(|v| *v = 0.0),
                    3 => x
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = (i % 7) as f32 * 0.5 - 1.5), // exact ties
                    4 => x.iter_mut().for_each(|v| *v = -v.abs()),
                    _ => {}
                }
                let mut want = vec![0u8; row_bytes(vd, n).unwrap()];
                quantize_activation_with(scalar(), vd, &x, &mut want).unwrap();
                for k in simd_levels() {
                    let mut got = vec![0u8; want.len()];
                    quantize_activation_with(k, vd, &x, &mut got).unwrap();
                    assert!(got == want, "{vd} n={n} trial {trial} [{:?}]", k.level);
                }
            }
        }
    }
}

#[test]
fn matmul_at_every_level_equals_scalar_single_dots() {
    // Covers the four-token kernels (used by matmul for batches) against scalar vec_dot.
    let mut rng = Rng(777);
    for ty in GgmlType::ALL {
        if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
            continue;
        }
        let n_k = match ty.block_size() {
            256 => 768,
            32 => 800, // 25 blocks: exercises the four-block tail
            _ => 801,
        };
        let n_rows = 19;
        let wf = rng.row(n_k * n_rows);
        let mut w = vec![0u8; row_bytes(ty, n_k).unwrap() * n_rows];
        quantize_row(ty, &wf, &mut w).unwrap();
        let shape = [n_k as u64, n_rows as u64];
        let view = TensorView {
            name: "w",
            ty,
            shape: &shape,
            bytes: &w,
        };
        let rb = row_bytes(ty, n_k).unwrap();
        for n_tokens in [1usize, 2, 3, 4, 5, 6, 7, 9, 21] {
            let x = rng.row(n_k * n_tokens);
            let vd = vec_dot_type(ty);
            let mut want = vec![0f32; n_tokens * n_rows];
            for t in 0..n_tokens {
                let mut a = vec![0u8; row_bytes(vd, n_k).unwrap()];
                quantize_activation_with(scalar(), vd, &x[t * n_k..(t + 1) * n_k], &mut a).unwrap();
                for r in 0..n_rows {
                    want[t * n_rows + r] =
                        vec_dot_with(scalar(), ty, n_k, &w[r * rb..(r + 1) * rb], &a).unwrap();
                }
            }
            for k in CpuLevel::ALL.iter().filter_map(|&l| table(l)) {
                let mut got = vec![0f32; n_tokens * n_rows];
                matmul_with(k, &view, &x, n_tokens, &mut got).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{ty} tokens={n_tokens} [{:?}] out[{i}]: {g} vs {w}",
                        k.level
                    );
                }
            }
        }
    }
}

/// The float ops in llama.cpp's order (`outcore_kernels::ops`): every level gives the scalar
/// definition's bits, including the exp's overflow/underflow branches and odd tails.
#[test]
fn float_ops_simd_equal_scalar_bit_for_bit() {
    use half::f16;
    use outcore_kernels::ops::DotOrder;
    let mut rng = Rng(0xD1B54A32D192ED03);
    let s = scalar();
    for k in simd_levels() {
        for n in [1usize, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 257, 1000] {
            for order in [DotOrder::VecDotF16, DotOrder::TinyBlas] {
                let q = rng.row(64);
                let kv: Vec<f16> = rng.row(n * 70).into_iter().map(f16::from_f32).collect();
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                (s.attn_scores)(order, &q, &kv, 70, 0.125, &mut a);
                (k.attn_scores)(order, &q, &kv, 70, 0.125, &mut b);
                assert_eq!(a, b, "{:?} attn_scores n={n} {order:?}", k.level);
                let w = rng.row(n);
                let (mut a, mut b) = (vec![0f32; 5], vec![0f32; 5]);
                (s.attn_values)(order, &w, &kv, n + 3, &mut a);
                (k.attn_values)(order, &w, &kv, n + 3, &mut b);
                assert_eq!(a, b, "{:?} attn_values n={n} {order:?}", k.level);
            }
            // softmax over scores spanning the exp's ranges (incl. the > 126 and > 192 branches)
            let mut x: Vec<f32> = rng.row(n).iter().map(|v| v * 300.0).collect();
            if n > 2 {
                x[1] = f32::NEG_INFINITY;
            }
            let mut y = x.clone();
            (s.softmax)(&mut x);
            (k.softmax)(&mut y);
            assert_eq!(x, y, "{:?} softmax n={n}", k.level);
            let g: Vec<f32> = rng.row(n).iter().map(|v| v * 200.0).collect();
            let u = rng.row(n);
            let (mut a, mut b) = (g.clone(), g);
            (s.swiglu)(&mut a, &u);
            (k.swiglu)(&mut b, &u);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{:?} swiglu n={n}",
                k.level
            );
            let mut a: Vec<f32> = rng.row(n).iter().map(|v| v * 70000.0).collect();
            a[0] = 1e-6;
            let mut b = a.clone();
            (s.round_f16)(&mut a);
            (k.round_f16)(&mut b);
            assert_eq!(a, b, "{:?} round_f16 n={n}", k.level);
        }
        let mut cache = Vec::new();
        for (pos, neox) in [(0usize, false), (17, false), (4000, true)] {
            outcore_kernels::ops::rope_cache(pos, 64, 10000.0, 1.0, &mut cache);
            let mut a = rng.row(64);
            let mut b = a.clone();
            (s.rope_apply)(&mut a, &cache, neox);
            (k.rope_apply)(&mut b, &cache, neox);
            assert_eq!(a, b, "{:?} rope pos={pos}", k.level);
        }
    }
    // the exp itself on a dense sweep, incl. both overflow branches
    for k in simd_levels() {
        let xs: Vec<f32> = (-2400..2400).map(|i| i as f32 * 0.0931).collect();
        let up = vec![1f32; xs.len()];
        let (mut a, mut b) = (xs.clone(), xs);
        (s.swiglu)(&mut a, &up);
        (k.swiglu)(&mut b, &up);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{:?} silu sweep",
            k.level
        );
    }
}

/// Four k-quant rows of `ty` (quantized random data, or raw random bytes with finite scales when
/// `raw`) with `nb` blocks each.
fn k_rows<B: bytemuck::Pod>(rng: &mut Rng, ty: GgmlType, nb: usize, raw: bool) -> Vec<Vec<B>> {
    let n = nb * 256;
    (0..4)
        .map(|_| {
            let mut b = vec![0u8; row_bytes(ty, n).unwrap()];
            quantize_row(ty, &rng.row(n), &mut b).unwrap();
            if raw {
                for v in b.iter_mut() {
                    *v = (rng.u32() & 0xFF) as u8;
                }
                sanitize_scales(ty, &mut b);
            }
            bytemuck::pod_collect_to_vec(&b)
        })
        .collect()
}

/// The Q4_K and Q6_K four-row kernels equal four single-row calls of their level and the scalar
/// twin, on quantized data and on raw random bytes.
#[test]
fn k_quant_r4_kernels_equal_single_rows_bit_for_bit() {
    use outcore_kernels::quant::{BlockQ4K, BlockQ6K, BlockQ8K};
    let mut rng = Rng(0x5DEECE66D);
    let s = scalar();
    let mut checked = 0;
    for k in simd_levels() {
        for nb in [1usize, 2, 3, 8, 11] {
            for raw in [false, true] {
                let n = nb * 256;
                let mut a = vec![0u8; row_bytes(GgmlType::Q8_K, n).unwrap()];
                quantize_activation_with(s, GgmlType::Q8_K, &rng.row(n), &mut a).unwrap();
                let a: Vec<BlockQ8K> = bytemuck::pod_collect_to_vec(&a);
                let rows = k_rows::<BlockQ4K>(&mut rng, GgmlType::Q4_K, nb, raw);
                if let Some(r4) = k.q4_k_q8_k_r4 {
                    let got = r4([&rows[0], &rows[1], &rows[2], &rows[3]], &a);
                    for r in 0..4 {
                        let want = (s.q4_k_q8_k)(&rows[r], &a);
                        let one = (k.q4_k_q8_k)(&rows[r], &a);
                        let ctx = format!("{:?} q4_k r4 nb={nb} raw={raw} row {r}", k.level);
                        assert_eq!(
                            one.to_bits(),
                            want.to_bits(),
                            "{ctx}: single {one} vs {want}"
                        );
                        assert_eq!(
                            got[r].to_bits(),
                            want.to_bits(),
                            "{ctx}: {} vs {want}",
                            got[r]
                        );
                    }
                    checked += 1;
                }
                let rows = k_rows::<BlockQ6K>(&mut rng, GgmlType::Q6_K, nb, raw);
                if let Some(r4) = k.q6_k_q8_k_r4 {
                    let got = r4([&rows[0], &rows[1], &rows[2], &rows[3]], &a);
                    for r in 0..4 {
                        let want = (s.q6_k_q8_k)(&rows[r], &a);
                        let one = (k.q6_k_q8_k)(&rows[r], &a);
                        let ctx = format!("{:?} q6_k r4 nb={nb} raw={raw} row {r}", k.level);
                        assert_eq!(
                            one.to_bits(),
                            want.to_bits(),
                            "{ctx}: single {one} vs {want}"
                        );
                        assert_eq!(
                            got[r].to_bits(),
                            want.to_bits(),
                            "{ctx}: {} vs {want}",
                            got[r]
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    if simd_levels().is_empty() {
        eprintln!("no SIMD level on this machine: k-quant r4 kernels not checked");
    } else {
        assert!(checked > 0, "no k-quant r4 kernel at any SIMD level");
    }
}

/// `n` rows of `ty` with `nb` blocks each: quantized random floats (activation types with the
/// scalar activation quantizer), or raw random bytes with finite scales when `raw`.
fn block_rows<B: bytemuck::Pod>(
    rng: &mut Rng,
    ty: GgmlType,
    nb: usize,
    n: usize,
    raw: bool,
) -> Vec<Vec<B>> {
    let len = nb * ty.block_size();
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; row_bytes(ty, len).unwrap()];
            if matches!(ty, GgmlType::Q8_1) {
                quantize_activation_with(scalar(), ty, &rng.row(len), &mut b).unwrap();
            } else {
                quantize_row(ty, &rng.row(len), &mut b).unwrap();
            }
            if raw {
                for v in b.iter_mut() {
                    *v = (rng.u32() & 0xFF) as u8;
                }
                sanitize_scales(ty, &mut b);
            }
            bytemuck::pod_collect_to_vec(&b)
        })
        .collect()
}

/// Checks a four-row, one-token kernel (`r4`) against four single calls of its level and of the
/// scalar twin; returns 1 if the kernel is there, 0 if not.
fn check_r4<W, A>(
    kernel: Option<VecDotR4Fn<W, A>>,
    single: fn(&[W], &[A]) -> f32,
    scalar_single: fn(&[W], &[A]) -> f32,
    rows: &[Vec<W>],
    act: &[A],
    ctx: &str,
) -> usize {
    let Some(kernel) = kernel else {
        return 0;
    };
    let got = kernel([&rows[0], &rows[1], &rows[2], &rows[3]], act);
    for r in 0..4 {
        let want = scalar_single(&rows[r], act);
        let one = single(&rows[r], act);
        assert_eq!(
            one.to_bits(),
            want.to_bits(),
            "{ctx} r{r}: single {one} vs {want}"
        );
        assert_eq!(
            got[r].to_bits(),
            want.to_bits(),
            "{ctx} r4 r{r}: {} vs {want}",
            got[r]
        );
    }
    1
}

/// Checks a four-row, `T`-token kernel against `4 * T` single calls of its level and of the
/// scalar twin; returns 1 if the kernel is there, 0 if not.
fn check_r4xt<W, A, const T: usize>(
    kernel: Option<VecDotR4XtFn<W, A, T>>,
    single: fn(&[W], &[A]) -> f32,
    scalar_single: fn(&[W], &[A]) -> f32,
    rows: &[Vec<W>],
    acts: &[Vec<A>],
    ctx: &str,
) -> usize {
    let Some(kernel) = kernel else {
        return 0;
    };
    let got = kernel(
        [&rows[0], &rows[1], &rows[2], &rows[3]],
        std::array::from_fn(|t| &acts[t][..]),
    );
    for r in 0..4 {
        for t in 0..T {
            let want = scalar_single(&rows[r], &acts[t]);
            let one = single(&rows[r], &acts[t]);
            assert_eq!(
                one.to_bits(),
                want.to_bits(),
                "{ctx} r{r} t{t}: single {one} vs {want}"
            );
            assert_eq!(
                got[r][t].to_bits(),
                want.to_bits(),
                "{ctx} r4x{T} r{r} t{t}: {} vs {want}",
                got[r][t]
            );
        }
    }
    1
}

/// The four-row kernels of Q4_1 and Q8_0, for one token (`r4`) and for 2/3/4 tokens (batched
/// decode), equal the single calls of their level and of the scalar twin, on quantized data and
/// on raw random bytes.
#[test]
fn r4xt_kernels_equal_single_dots_bit_for_bit() {
    use outcore_kernels::quant::{BlockQ4_1, BlockQ8_0, BlockQ8_1};
    let mut rng = Rng(0x853C49E6748FEA9B);
    let s = scalar();
    for k in simd_levels() {
        let mut checked = [0usize; 2];
        for nb in [1usize, 2, 5, 18] {
            for raw in [false, true] {
                let ctx = format!("{:?} q4_1 nb={nb} raw={raw}", k.level);
                let rows = block_rows::<BlockQ4_1>(&mut rng, GgmlType::Q4_1, nb, 4, raw);
                let acts = block_rows::<BlockQ8_1>(&mut rng, GgmlType::Q8_1, nb, 4, raw);
                let (f, sf, r4) = (k.q4_1_q8_1, s.q4_1_q8_1, k.q4_1_q8_1_r4xt);
                checked[0] += check_r4(k.q4_1_q8_1_r4, f, sf, &rows, &acts[0], &ctx)
                    + check_r4xt(r4.t2, f, sf, &rows, &acts, &ctx)
                    + check_r4xt(r4.t3, f, sf, &rows, &acts, &ctx)
                    + check_r4xt(r4.t4, f, sf, &rows, &acts, &ctx);

                let ctx = format!("{:?} q8_0 nb={nb} raw={raw}", k.level);
                let rows = block_rows::<BlockQ8_0>(&mut rng, GgmlType::Q8_0, nb, 4, raw);
                let acts = block_rows::<BlockQ8_0>(&mut rng, GgmlType::Q8_0, nb, 4, raw);
                let (f, sf, r4) = (k.q8_0_q8_0, s.q8_0_q8_0, k.q8_0_q8_0_r4xt);
                checked[1] += check_r4(k.q8_0_q8_0_r4, f, sf, &rows, &acts[0], &ctx)
                    + check_r4xt(r4.t2, f, sf, &rows, &acts, &ctx)
                    + check_r4xt(r4.t3, f, sf, &rows, &acts, &ctx)
                    + check_r4xt(r4.t4, f, sf, &rows, &acts, &ctx);
            }
        }
        // 4 lengths x {quantized, raw} x the token counts the level has kernels for.
        match k.level {
            CpuLevel::Avx512 => assert_eq!(checked, [32, 32], "AVX-512 r4/r4xt kernels missing"),
            CpuLevel::Avx2 => assert_eq!(checked, [8, 24], "AVX2 r4, Q8_0 r4x2/r4x3 missing"),
            CpuLevel::Scalar => {}
        }
        eprintln!("{:?}: r4xt kernels checked {checked:?}", k.level);
    }
}

/// Four-weight-row kernels (single-token products) equal four single calls of the same level,
/// which equal the scalar twin.
#[test]
fn r4_kernels_equal_single_rows_bit_for_bit() {
    use outcore_kernels::quant::{BlockQ4_1, BlockQ8_0, BlockQ8_1};
    let mut rng = Rng(0x2545F4914F6CDD1D);
    let s = scalar();
    for k in simd_levels() {
        for nb in [1usize, 2, 5, 18, 64] {
            let n = nb * 32;
            let act_f = rng.row(n);
            // Q8_0 weights, Q8_0 activations
            let rows: Vec<Vec<BlockQ8_0>> = (0..4)
                .map(|_| {
                    let mut b = vec![0u8; row_bytes(GgmlType::Q8_0, n).unwrap()];
                    quantize_row(GgmlType::Q8_0, &rng.row(n), &mut b).unwrap();
                    bytemuck::cast_slice(&b).to_vec()
                })
                .collect();
            let mut a = vec![0u8; row_bytes(GgmlType::Q8_0, n).unwrap()];
            quantize_activation_with(s, GgmlType::Q8_0, &act_f, &mut a).unwrap();
            let a: &[BlockQ8_0] = bytemuck::cast_slice(&a);
            if let Some(r4) = k.q8_0_q8_0_r4 {
                let got = r4([&rows[0], &rows[1], &rows[2], &rows[3]], a);
                for r in 0..4 {
                    assert_eq!(
                        got[r].to_bits(),
                        (s.q8_0_q8_0)(&rows[r], a).to_bits(),
                        "{:?} q8_0 r4 nb={nb}",
                        k.level
                    );
                }
            }
            // Q4_1 weights, Q8_1 activations
            let rows: Vec<Vec<BlockQ4_1>> = (0..4)
                .map(|_| {
                    let mut b = vec![0u8; row_bytes(GgmlType::Q4_1, n).unwrap()];
                    quantize_row(GgmlType::Q4_1, &rng.row(n), &mut b).unwrap();
                    bytemuck::cast_slice(&b).to_vec()
                })
                .collect();
            let mut a = vec![0u8; row_bytes(GgmlType::Q8_1, n).unwrap()];
            quantize_activation_with(s, GgmlType::Q8_1, &act_f, &mut a).unwrap();
            let a: &[BlockQ8_1] = bytemuck::cast_slice(&a);
            if let Some(r4) = k.q4_1_q8_1_r4 {
                let got = r4([&rows[0], &rows[1], &rows[2], &rows[3]], a);
                for r in 0..4 {
                    assert_eq!(
                        got[r].to_bits(),
                        (s.q4_1_q8_1)(&rows[r], a).to_bits(),
                        "{:?} q4_1 r4 nb={nb}",
                        k.level
                    );
                }
            }
        }
    }
}
