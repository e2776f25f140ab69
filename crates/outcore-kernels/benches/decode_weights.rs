//! Single-token weight stream of a real model: one `matvec` per 2-D quantized weight tensor of a
//! GGUF file (the token embedding only when the output matrix is tied to it), as one decode step
//! reads them, per kernel variant. Variants run in turn within each pass, so a busy machine
//! disturbs them alike.
//!
//! Reports the fastest of `REPS` passes (the least disturbed one on a shared machine) and the
//! median, in ms per pass and weight GB/s, per weight type too. With one thread the times are
//! that thread's CPU time, which time slices taken by other processes do not inflate (memory
//! stalls still count); with more, wall time. `--hot` runs the smallest tensor of each type 50
//! times instead, so it stays in cache: the kernels' compute speed rather than memory speed.
//!
//! ```text
//! cargo bench -p outcore-kernels --bench decode_weights -- MODEL.gguf [threads] [reps] [--hot]
//!     [--tokens=N]
//! ```
//! `--tokens=N`: N activation rows per product (batched decode of N sequences) instead of one.
//! Variants: this CPU's table, the same in the fast arithmetic (`rows16`), the same without
//! four-row kernels, and the AVX2 table.

use std::time::Instant;

use outcore_format::{GgufFile, LoadMode, TensorView};
use outcore_kernels::dispatch::{table, CpuLevel, KernelTable};
use outcore_kernels::matmul::matmul_with_arith;
use outcore_kernels::quant::R4Tokens;
use outcore_kernels::rows16::Arith;
use outcore_kernels::{kernels, GgmlType};

fn without_r4(k: &KernelTable) -> KernelTable {
    KernelTable {
        q8_0_q8_0_r4: None,
        q4_1_q8_1_r4: None,
        q4_k_q8_k_r4: None,
        q6_k_q8_k_r4: None,
        q4_1_q8_1_r4xt: R4Tokens::NONE,
        q8_0_q8_0_r4xt: R4Tokens::NONE,
        ..*k
    }
}

/// This thread's CPU time in seconds, or 0 if the clock is not there.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: decode_weights MODEL.gguf [threads] [reps]");
        return;
    };
    let hot = std::env::args().any(|a| a == "--hot");
    let n_tokens: usize = std::env::args()
        .find_map(|a| a.strip_prefix("--tokens=")?.parse().ok())
        .unwrap_or(1);
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let file = GgufFile::open(path, LoadMode::Mmap).expect("open model");
    // The token embedding is only read a row at a time, unless the output matrix is tied to it.
    let tied = file.tensor("output.weight").is_none();
    let weights: Vec<TensorView> = file
        .tensors()
        .filter(|t| t.shape.len() == 2 && !t.ty.is_float())
        .filter(|t| tied || t.name != "token_embd.weight")
        .collect();
    let weights = if hot {
        let mut small: Vec<TensorView> = Vec::new();
        for w in &weights {
            match small.iter_mut().find(|s| s.ty == w.ty) {
                Some(s) if s.bytes.len() > w.bytes.len() => *s = *w,
                Some(_) => {}
                None => small.push(*w),
            }
        }
        small
            .iter()
            .flat_map(|w| std::iter::repeat_n(*w, 50))
            .collect()
    } else {
        weights
    };
    let n_k_max = weights
        .iter()
        .map(|t| t.shape[0] as usize)
        .max()
        .unwrap_or(0);
    let n_rows_max = weights
        .iter()
        .map(|t| t.shape[1] as usize)
        .max()
        .unwrap_or(0);
    let x: Vec<f32> = (0..n_k_max * n_tokens)
        .map(|i| ((i as f32) * 0.618).sin())
        .collect();
    let mut out = vec![0f32; n_rows_max * n_tokens];
    let bytes: usize = weights.iter().map(|t| t.bytes.len()).sum();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");

    let best = kernels();
    let mut variants: Vec<(String, KernelTable, Arith)> = vec![
        (
            format!("{:?}", best.level),
            KernelTable { ..*best },
            Arith::Exact,
        ),
        (
            format!("{:?} fast", best.level),
            KernelTable { ..*best },
            Arith::Fast,
        ),
        (
            format!("{:?} no-r4", best.level),
            without_r4(best),
            Arith::Exact,
        ),
    ];
    if let Some(avx2) = table(CpuLevel::Avx2).filter(|t| t.level != best.level) {
        variants.push(("Avx2".into(), KernelTable { ..*avx2 }, Arith::Exact));
    }
    let types: Vec<GgmlType> = {
        let mut t: Vec<GgmlType> = weights.iter().map(|w| w.ty).collect();
        t.sort_by_key(|t| t.name());
        t.dedup();
        t
    };
    println!(
        "{path}: {} tensors, {:.1} MB, {n_tokens} token(s), {threads} threads, best of {reps}",
        weights.len(),
        bytes as f64 / 1e6
    );
    let mut total = vec![Vec::with_capacity(reps); variants.len()];
    let mut per_ty = vec![vec![Vec::with_capacity(reps); types.len()]; variants.len()];
    for _ in 0..reps {
        for (v, (_, k, arith)) in variants.iter().enumerate() {
            let mut t_ty = vec![0f64; types.len()];
            let t0 = Instant::now();
            let cpu = pool.install(|| {
                let c0 = thread_cpu_s();
                for w in &weights {
                    let (n_k, n_rows) = (w.shape[0] as usize, w.shape[1] as usize);
                    let (t, c) = (Instant::now(), thread_cpu_s());
                    let (x, out) = (&x[..n_k * n_tokens], &mut out[..n_rows * n_tokens]);
                    matmul_with_arith(k, w, x, n_tokens, out, *arith).expect("matmul");
                    let j = types.iter().position(|ty| *ty == w.ty).unwrap_or(0);
                    t_ty[j] += if threads == 1 {
                        thread_cpu_s() - c
                    } else {
                        t.elapsed().as_secs_f64()
                    };
                }
                thread_cpu_s() - c0
            });
            // One thread: its CPU time, which time slices taken by other processes do not inflate.
            total[v].push(if threads == 1 && cpu > 0.0 {
                cpu
            } else {
                t0.elapsed().as_secs_f64()
            });
            for (p, t) in per_ty[v].iter_mut().zip(t_ty) {
                p.push(t);
            }
        }
    }
    for (v, (name, _, _)) in variants.iter().enumerate() {
        let (total, per_ty) = (&mut total[v], &mut per_ty[v]);
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            (v[0], v[v.len() / 2])
        };
        let (min, med) = stats(total);
        print!(
            "{name:>12}: min {:.2} ms ({:.2} GB/s), median {:.2} ms |",
            min * 1e3,
            bytes as f64 / min / 1e9,
            med * 1e3
        );
        for (ty, v) in types.iter().zip(per_ty.iter_mut()) {
            let b: usize = weights
                .iter()
                .filter(|w| w.ty == *ty)
                .map(|w| w.bytes.len())
                .sum();
            let (m, _) = stats(v);
            print!(" {ty} {:.2} ms {:.1} GB/s", m * 1e3, b as f64 / m / 1e9);
        }
        println!();
    }
}
