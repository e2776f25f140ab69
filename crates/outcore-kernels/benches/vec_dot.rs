//! Weight bytes per second of one dot product per type and kernel level, of a matmul of a
//! demo-model-sized weight (576 x 1536) for 1 and 64 tokens, and (block, token) products per
//! second of the four-row kernels for 1..4 tokens on rows that stay in L1 (their compute speed).
//!
//! `cargo bench -p outcore-kernels --bench vec_dot [-- FILTER]`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use outcore_format::TensorView;
use outcore_kernels::dispatch::{table, CpuLevel};
use outcore_kernels::matmul::matmul_with;
use outcore_kernels::{
    quantize_activation_with, quantize_row, row_bytes, vec_dot_type, vec_dot_with, GgmlType,
};

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn bench_vec_dot(c: &mut Criterion) {
    let n = 4096;
    let mut g = c.benchmark_group("vec_dot");
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ] {
        let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
        quantize_row(ty, &data(n, 1), &mut w).unwrap();
        let vd = vec_dot_type(ty);
        g.throughput(Throughput::Bytes(w.len() as u64));
        for level in CpuLevel::ALL {
            let Some(k) = table(level) else { continue };
            let mut a = vec![0u8; row_bytes(vd, n).unwrap()];
            quantize_activation_with(k, vd, &data(n, 7), &mut a).unwrap();
            g.bench_with_input(BenchmarkId::new(ty.name(), level.name()), &(), |b, _| {
                b.iter(|| vec_dot_with(k, ty, n, black_box(&w), black_box(&a)).unwrap())
            });
        }
    }
    g.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let (n_k, n_rows) = (576usize, 1536usize);
    let mut g = c.benchmark_group("matmul_576x1536");
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K] {
        let mut w = vec![0u8; row_bytes(ty, n_k).unwrap_or(0) * n_rows];
        if w.is_empty() {
            continue; // 576 is not a multiple of 256
        }
        quantize_row(ty, &data(n_k * n_rows, 3), &mut w).unwrap();
        let shape = [n_k as u64, n_rows as u64];
        let view = TensorView {
            name: "w",
            ty,
            shape: &shape,
            bytes: &w,
        };
        for n_tokens in [1usize, 64] {
            let x = data(n_k * n_tokens, 5);
            let mut out = vec![0f32; n_tokens * n_rows];
            g.throughput(Throughput::Bytes((w.len() * n_tokens) as u64));
            for level in CpuLevel::ALL {
                let Some(k) = table(level) else { continue };
                g.bench_with_input(
                    BenchmarkId::new(format!("{}/{n_tokens}tok", ty.name()), level.name()),
                    &(),
                    |b, _| {
                        b.iter(|| matmul_with(k, &view, black_box(&x), n_tokens, &mut out).unwrap())
                    },
                );
            }
        }
    }
    g.finish();
}

/// Four demo-model-length rows (576) times 1..4 tokens through the four-row kernels of this
/// CPU's table (`r4` for one token), in L1: elements are (block, row, token) products.
fn bench_r4xt(c: &mut Criterion) {
    use outcore_kernels::kernels;
    use outcore_kernels::quant::{BlockQ4_1, BlockQ8_0, BlockQ8_1};
    let n = 576;
    let nb = n / 32;
    let k = kernels();
    let mut g = c.benchmark_group("r4xt_576");
    let rows = |ty: GgmlType, seed: u32| -> Vec<Vec<u8>> {
        (0..4)
            .map(|r| {
                let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
                quantize_row(ty, &data(n, seed + r), &mut w).unwrap();
                w
            })
            .collect()
    };
    let acts = |ty: GgmlType| -> Vec<Vec<u8>> {
        (0..4)
            .map(|t| {
                let mut a = vec![0u8; row_bytes(ty, n).unwrap()];
                quantize_activation_with(k, ty, &data(n, 11 + t), &mut a).unwrap();
                a
            })
            .collect()
    };
    macro_rules! run {
        ($name:literal, $W:ty, $A:ty, $wty:expr, $aty:expr, $r4:expr, $r4xt:expr) => {{
            let w = rows($wty, 1);
            let a = acts($aty);
            let w: Vec<&[$W]> = w.iter().map(|w| bytemuck::cast_slice(w)).collect();
            let a: Vec<&[$A]> = a.iter().map(|a| bytemuck::cast_slice(a)).collect();
            let ws = [w[0], w[1], w[2], w[3]];
            for t in 1..=4usize {
                g.throughput(Throughput::Elements((4 * t * nb) as u64));
                let id = BenchmarkId::new($name, format!("{t}tok"));
                let r4xt = $r4xt;
                match t {
                    1 => {
                        if let Some(f) = $r4 {
                            g.bench_function(id, |b| b.iter(|| f(black_box(ws), black_box(a[0]))));
                        }
                    }
                    2 => {
                        if let Some(f) = r4xt.t2 {
                            g.bench_function(id, |b| {
                                b.iter(|| f(black_box(ws), black_box([a[0], a[1]])))
                            });
                        }
                    }
                    3 => {
                        if let Some(f) = r4xt.t3 {
                            g.bench_function(id, |b| {
                                b.iter(|| f(black_box(ws), black_box([a[0], a[1], a[2]])))
                            });
                        }
                    }
                    _ => {
                        if let Some(f) = r4xt.t4 {
                            g.bench_function(id, |b| {
                                b.iter(|| f(black_box(ws), black_box([a[0], a[1], a[2], a[3]])))
                            });
                        }
                    }
                }
            }
        }};
    }
    run!(
        "q4_1",
        BlockQ4_1,
        BlockQ8_1,
        GgmlType::Q4_1,
        GgmlType::Q8_1,
        k.q4_1_q8_1_r4,
        k.q4_1_q8_1_r4xt
    );
    run!(
        "q8_0",
        BlockQ8_0,
        BlockQ8_0,
        GgmlType::Q8_0,
        GgmlType::Q8_0,
        k.q8_0_q8_0_r4,
        k.q8_0_q8_0_r4xt
    );
    g.finish();
}

/// The fast arithmetic's sixteen-row Q4_1 kernel (`rows16`) against four calls of the exact
/// four-row kernels, 16 rows of 576 (in L1), 1 to 8 tokens: (block, token) products per second.
fn bench_rows16(c: &mut Criterion) {
    use outcore_kernels::kernels;
    use outcore_kernels::quant::{BlockQ4_1, BlockQ8_1};
    use outcore_kernels::rows16::q8_1_scales;
    let (n, rows) = (576, 16);
    let nb = n / 32;
    let k = kernels();
    let Some(r16) = k.q4_1_q8_1_r16 else {
        return;
    };
    let mut wb = vec![0u8; row_bytes(GgmlType::Q4_1, n).unwrap() * rows];
    quantize_row(GgmlType::Q4_1, &data(n * rows, 1), &mut wb).unwrap();
    let w: &[BlockQ4_1] = bytemuck::cast_slice(&wb);
    let mut g = c.benchmark_group("rows16_576");
    for t in [1usize, 2, 4, 8, 12, 16] {
        let mut ab = vec![0u8; row_bytes(GgmlType::Q8_1, n).unwrap() * t];
        quantize_activation_with(k, GgmlType::Q8_1, &data(n * t, 11), &mut ab).unwrap();
        let mut a: Vec<BlockQ8_1> = bytemuck::cast_slice(&ab).to_vec();
        let sc = q8_1_scales(&mut a);
        let a = &a[..];
        let mut out = vec![0f32; rows * t];
        g.throughput(Throughput::Elements((rows * t * nb) as u64));
        g.bench_function(BenchmarkId::new("q4_1_r16", format!("{t}tok")), |b| {
            b.iter(|| r16(black_box(w), nb, black_box(a), &sc, t, &mut out))
        });
        if let (Some(r4), Some(r4x4)) = (k.q4_1_q8_1_r4, k.q4_1_q8_1_r4xt.t4) {
            let row = |i: usize| &w[i * nb..(i + 1) * nb];
            let tok = |i: usize| &a[i * nb..(i + 1) * nb];
            g.bench_function(BenchmarkId::new("q4_1_r4xt", format!("{t}tok")), |b| {
                b.iter(|| {
                    let mut s = 0f32;
                    for r in (0..rows).step_by(4) {
                        let ws = [row(r), row(r + 1), row(r + 2), row(r + 3)];
                        if t >= 4 {
                            for t0 in (0..t).step_by(4) {
                                let o = r4x4(
                                    black_box(ws),
                                    [tok(t0), tok(t0 + 1), tok(t0 + 2), tok(t0 + 3)],
                                );
                                s += o[0][0];
                            }
                        } else {
                            for t0 in 0..t {
                                s += r4(black_box(ws), tok(t0))[0];
                            }
                        }
                    }
                    s
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_vec_dot,
    bench_matmul,
    bench_r4xt,
    bench_rows16
);
criterion_main!(benches);
