//! Weight bytes per second of one dot product per type and kernel level, and of a matmul of a
//! demo-model-sized weight (576 x 1536) for 1 and 64 tokens.
//!
//! `cargo bench -p outcore-kernels --bench vec_dot`

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

criterion_group!(benches, bench_vec_dot, bench_matmul);
criterion_main!(benches);
