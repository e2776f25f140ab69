//! `out = x · Wᵀ` for a ggml weight tensor, the way llama.cpp's CPU `mul_mat` does it: every
//! activation row is quantized once to the weight type's `vec_dot_type`, then each
//! (token, weight row) pair is one `vec_dot`.
//!
//! Work is split over weight rows with rayon. Within a chunk of rows the tokens are walked in
//! tiles so the chunk's weight blocks stay in cache while a tile of activations streams past.

use rayon::prelude::*;

use outcore_format::TensorView;

use crate::dispatch::{kernels, KernelTable};
use crate::quant::{GgmlBlock, R4Tokens};
use crate::rows16::{Arith, FastRows, R16};
use crate::{cast_blocks, n_blocks, with_block, KernelError};

/// Weight rows per parallel task (each task writes `ROWS_PER_TASK * n_tokens` results).
const ROWS_PER_TASK: usize = 16;
/// Tokens per tile inside a task.
const TOKEN_TILE: usize = 16;

/// `out[t][r] = dot(w.row(r), x[t])` for `t < n_tokens`, `r < n_rows`.
///
/// `w` has ggml shape `[k, n_rows]` (any trailing dims are folded into rows), `x` is
/// `n_tokens x k` row-major, `out` is `n_tokens x n_rows` row-major.
pub fn matmul(
    w: &TensorView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul_with(kernels(), w, x, n_tokens, out)
}

/// [`matmul`] in the arithmetic `arith` (`crate::rows16`): `Arith::Fast` takes a type's
/// sixteen-row kernel where this CPU has one, else the exact kernels.
pub fn matmul_arith(
    w: &TensorView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    arith: Arith,
) -> Result<(), KernelError> {
    matmul_with_arith(kernels(), w, x, n_tokens, out, arith)
}

/// [`matmul`] with one token: `out[r] = dot(w.row(r), x)`.
pub fn matvec(w: &TensorView, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
    matmul(w, x, 1, out)
}

/// [`matmul`] with an explicit kernel table (for tests and benches comparing levels).
pub fn matmul_with(
    k: &KernelTable,
    w: &TensorView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    matmul_with_arith(k, w, x, n_tokens, out, Arith::Exact)
}

/// [`matmul_with`] in the arithmetic `arith`.
pub fn matmul_with_arith(
    k: &KernelTable,
    w: &TensorView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    arith: Arith,
) -> Result<(), KernelError> {
    let shape_err = |reason| KernelError::TensorShape {
        tensor: w.name.to_string(),
        ty: w.ty,
        shape: w.shape.to_vec(),
        reason,
    };
    if w.shape.is_empty() {
        return Err(shape_err("empty shape"));
    }
    let n_k = usize::try_from(w.shape[0]).map_err(|_| shape_err("row length overflows usize"))?;
    let n_rows = w.shape[1..]
        .iter()
        .try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
        .ok_or_else(|| shape_err("row count overflows usize"))?;
    let nb = n_blocks(w.ty, n_k)?;
    crate::check_len(
        "activations (n_tokens * k)",
        n_tokens.saturating_mul(n_k),
        x.len(),
    )?;
    crate::check_len(
        "output (n_tokens * n_rows)",
        n_tokens.saturating_mul(n_rows),
        out.len(),
    )?;
    let expected_bytes = n_rows
        .checked_mul(nb * w.ty.type_size())
        .ok_or_else(|| shape_err("byte size overflows"))?;
    if w.bytes.len() != expected_bytes {
        return Err(shape_err("byte length does not match the shape"));
    }
    if n_tokens == 0 || n_rows == 0 {
        return Ok(());
    }
    with_block!(w.ty, B => {
        let blocks = cast_blocks::<B>("weights", n_k * n_rows, nb * n_rows, w.bytes)?;
        match (arith, B::fast_rows(k)) {
            (Arith::Fast, Some(f)) => matmul_rows16::<B>(k, f, &blocks, nb, x, n_tokens, out),
            _ => matmul_typed::<B>(k, &blocks, nb, x, n_tokens, out),
        }
        Ok(())
    })
}

/// Quantizes each activation row once (`n_tokens` rows of `nb` blocks).
fn quantize_activations<B: GgmlBlock>(
    k: &KernelTable,
    x: &[f32],
    n_tokens: usize,
    nb: usize,
) -> Vec<B::Dot> {
    let n_k = x.len() / n_tokens;
    let q = <B::Dot as GgmlBlock>::quantize_activation_fn(k);
    let mut act = vec![<B::Dot as bytemuck::Zeroable>::zeroed(); n_tokens * nb];
    if n_tokens > 1 {
        act.par_chunks_mut(nb)
            .zip(x.par_chunks(n_k))
            .for_each(|(a, x)| q(x, a));
    } else {
        q(x, &mut act);
    }
    act
}

/// The fast arithmetic: one task per sixteen weight rows, all tokens in one kernel call (the
/// kernel passes over the rows once per sixteen tokens). Rows past the last
/// group of sixteen take the scalar twin, which has the kernel's bits.
fn matmul_rows16<B: GgmlBlock>(
    k: &KernelTable,
    f: FastRows<B, B::Dot>,
    w: &[B],
    nb: usize,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let n_rows = w.len() / nb;
    let mut act = quantize_activations::<B>(k, x, n_tokens, nb);
    let scales = (f.prepare)(&mut act);
    let run = |c: usize, o: &mut [f32]| {
        let rows = o.len() / n_tokens;
        let ws = &w[c * R16 * nb..(c * R16 + rows) * nb];
        let kernel = if rows == R16 { f.simd } else { f.scalar };
        kernel(ws, nb, &act, &scales, n_tokens, o);
    };
    if n_tokens == 1 {
        out.par_chunks_mut(R16)
            .enumerate()
            .for_each(|(c, o)| run(c, o));
        return;
    }
    let mut tmp = vec![0f32; n_rows * n_tokens];
    tmp.par_chunks_mut(R16 * n_tokens)
        .enumerate()
        .for_each(|(c, o)| run(c, o));
    transpose_into(&tmp, n_tokens, n_rows, out);
}

fn matmul_typed<B: GgmlBlock>(
    k: &KernelTable,
    w: &[B],
    nb: usize,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let n_rows = w.len() / nb;
    let act = quantize_activations::<B>(k, x, n_tokens, nb);
    let dot = B::vec_dot_fn(k);

    if n_tokens == 1 {
        let dot_r4 = B::vec_dot_r4_fn(k);
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(c, out)| {
                let r0 = c * ROWS_PER_TASK;
                let row = |i: usize| &w[(r0 + i) * nb..(r0 + i + 1) * nb];
                let mut i = 0;
                if let Some(d4) = dot_r4 {
                    while i + 4 <= out.len() {
                        let rows = [row(i), row(i + 1), row(i + 2), row(i + 3)];
                        out[i..i + 4].copy_from_slice(&d4(rows, &act));
                        i += 4;
                    }
                }
                for (j, o) in out.iter_mut().enumerate().skip(i) {
                    *o = dot(row(j), &act);
                }
            });
        return;
    }

    // Results row-major by weight row (disjoint chunks per task), transposed into `out` after.
    // Each group of four weight rows runs the tokens in groups of four and the remainder (1, 2
    // or 3 tokens) through the level's four-row kernel of that many tokens, so the group's
    // weights are unpacked once per kernel call and each activation block is loaded once for
    // the four rows. Where a kernel is missing: pairs of tokens through the two-token kernel
    // (AVX2 Q8_0: two of them beat four rows of the four-token kernel, 2190 vs 2700 ns for four
    // rows of 4608), else four tokens row by row through the four-token kernel, else tokens one
    // at a time through the four-row single-token kernel. Rows past the last group of four go
    // row by row. Every kernel is bit-identical to single dots.
    let dot4 = B::vec_dot_x4_fn(k);
    let dot_r4 = B::vec_dot_r4_fn(k);
    let r4xt = B::vec_dot_r4xt_fns(k);
    let four_rows = dot_r4.is_some() || r4xt.any();
    let mut tmp = vec![0f32; n_rows * n_tokens];
    tmp.par_chunks_mut(ROWS_PER_TASK * n_tokens)
        .enumerate()
        .for_each(|(c, tmp)| {
            let r0 = c * ROWS_PER_TASK;
            let rows = tmp.len() / n_tokens;
            let a = |t: usize| &act[t * nb..(t + 1) * nb];
            let row = |i: usize| &w[(r0 + i) * nb..(r0 + i + 1) * nb];
            for t0 in (0..n_tokens).step_by(TOKEN_TILE) {
                let t1 = (t0 + TOKEN_TILE).min(n_tokens);
                let mut i0 = 0;
                while four_rows && i0 + 4 <= rows {
                    let ws = [row(i0), row(i0 + 1), row(i0 + 2), row(i0 + 3)];
                    let tmp = &mut tmp[i0 * n_tokens..(i0 + 4) * n_tokens];
                    let mut t = t0;
                    while t < t1 {
                        t += match ((t1 - t).min(4), r4xt, dot4) {
                            (4, R4Tokens { t4: Some(f), .. }, _) => put_r4(
                                tmp,
                                n_tokens,
                                t,
                                f(ws, [a(t), a(t + 1), a(t + 2), a(t + 3)]),
                            ),
                            (3, R4Tokens { t3: Some(f), .. }, _) => {
                                put_r4(tmp, n_tokens, t, f(ws, [a(t), a(t + 1), a(t + 2)]))
                            }
                            (2.., R4Tokens { t2: Some(f), .. }, _) => {
                                put_r4(tmp, n_tokens, t, f(ws, [a(t), a(t + 1)]))
                            }
                            (4, _, Some(d4)) => {
                                let o = ws.map(|wr| d4(wr, [a(t), a(t + 1), a(t + 2), a(t + 3)]));
                                put_r4(tmp, n_tokens, t, o)
                            }
                            // The last token twice: one four-token pass beats three single-token
                            // ones (AVX2 Q4_1, demo model, 3 tokens, one thread: 19.1 -> 13.9 ms).
                            (3, _, Some(d4)) => {
                                let o = ws.map(|wr| d4(wr, [a(t), a(t + 1), a(t + 2), a(t + 2)]));
                                put_r4(tmp, n_tokens, t, o.map(|o| [o[0], o[1], o[2]]))
                            }
                            _ => {
                                let o = match dot_r4 {
                                    Some(d4) => d4(ws, a(t)),
                                    None => ws.map(|wr| dot(wr, a(t))),
                                };
                                put_r4(tmp, n_tokens, t, o.map(|o| [o]))
                            }
                        };
                    }
                    i0 += 4;
                }
                for i in i0..rows {
                    let wr = row(i);
                    let out = &mut tmp[i * n_tokens..(i + 1) * n_tokens];
                    let mut t = t0;
                    if let Some(d4) = dot4 {
                        while t + 4 <= t1 {
                            out[t..t + 4]
                                .copy_from_slice(&d4(wr, [a(t), a(t + 1), a(t + 2), a(t + 3)]));
                            t += 4;
                        }
                    }
                    for (t, o) in out.iter_mut().enumerate().take(t1).skip(t) {
                        *o = dot(wr, a(t));
                    }
                }
            }
        });
    transpose_into(&tmp, n_tokens, n_rows, out);
}

/// `out[t][r] = tmp[r][t]`, one task per token (the output matrix's `n_rows x n_tokens` results
/// are a few hundred KB: serial, this was 2% of a batched decode step).
fn transpose_into(tmp: &[f32], n_tokens: usize, n_rows: usize, out: &mut [f32]) {
    out[..n_tokens * n_rows]
        .par_chunks_mut(n_rows)
        .enumerate()
        .for_each(|(t, o)| {
            for (r, o) in o.iter_mut().enumerate() {
                *o = tmp[r * n_tokens + t];
            }
        });
}

/// Writes a four-row kernel's `o[r][j]` (rows `r` of `tmp`, tokens `t + j`) into `tmp`, which
/// holds four rows of `n_tokens` results; returns how many tokens that was.
fn put_r4<const T: usize>(tmp: &mut [f32], n_tokens: usize, t: usize, o: [[f32; T]; 4]) -> usize {
    for (tmp, o) in tmp.chunks_exact_mut(n_tokens).zip(o) {
        tmp[t..t + T].copy_from_slice(&o);
    }
    T
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize_row, quantize_row, GgmlType};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn matmul_matches_per_row_vec_dot_and_f64_reference() {
        let mut seed = 7u64;
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::F16,
            GgmlType::F32,
        ] {
            for n_tokens in [2usize, 3, 4, 5, 6, 7, 8] {
                let n_k = 512;
                let n_rows = 37;
                let wf: Vec<f32> = (0..n_k * n_rows).map(|_| lcg(&mut seed)).collect();
                let mut wb = vec![0u8; crate::row_bytes(ty, n_k).unwrap() * n_rows];
                quantize_row(ty, &wf, &mut wb).unwrap();
                let mut wd = vec![0f32; n_k * n_rows];
                dequantize_row(ty, &wb, &mut wd).unwrap();
                let x: Vec<f32> = (0..n_k * n_tokens).map(|_| lcg(&mut seed)).collect();
                let shape = [n_k as u64, n_rows as u64];
                let view = TensorView {
                    name: "w",
                    ty,
                    shape: &shape,
                    bytes: &wb,
                };
                let mut out = vec![0f32; n_tokens * n_rows];
                matmul(&view, &x, n_tokens, &mut out).unwrap();
                let mut out1 = vec![0f32; n_rows];
                for t in 0..n_tokens {
                    matvec(&view, &x[t * n_k..(t + 1) * n_k], &mut out1).unwrap();
                    assert_eq!(
                        &out[t * n_rows..(t + 1) * n_rows],
                        &out1[..],
                        "{ty} token {t}"
                    );
                    for r in 0..n_rows {
                        let exact: f64 = (0..n_k)
                            .map(|i| wd[r * n_k + i] as f64 * x[t * n_k + i] as f64)
                            .sum();
                        // Activation rounding bound: each x moves by at most amax/254 (8-bit) or
                        // |x|/2048 (f16); the Q8_1 sum term adds an f16 rounding per block.
                        let wl1: f64 = (0..n_k).map(|i| wd[r * n_k + i].abs() as f64).sum();
                        let tol = wl1 / 127.0 + 1e-3 * (1.0 + exact.abs());
                        let got = out[t * n_rows + r] as f64;
                        assert!(
                            (got - exact).abs() < tol,
                            "{ty} t{t} r{r}: {got} vs {exact} (tol {tol})"
                        );
                    }
                }
            }
        }
    }

    /// The fast arithmetic gives every token the bits it gets alone (whatever the batch), stays
    /// close to the exact one, and rows past the last sixteen (scalar twin) agree too.
    #[test]
    fn fast_matmul_is_batch_invariant() {
        let mut seed = 3u64;
        let ty = GgmlType::Q4_1;
        let (n_k, n_rows) = (256usize, 16 * 3 + 5);
        let wf: Vec<f32> = (0..n_k * n_rows).map(|_| lcg(&mut seed)).collect();
        let mut wb = vec![0u8; crate::row_bytes(ty, n_k).unwrap() * n_rows];
        quantize_row(ty, &wf, &mut wb).unwrap();
        let shape = [n_k as u64, n_rows as u64];
        let view = TensorView {
            name: "w",
            ty,
            shape: &shape,
            bytes: &wb,
        };
        for n_tokens in [1usize, 2, 4, 9] {
            let x: Vec<f32> = (0..n_k * n_tokens).map(|_| lcg(&mut seed)).collect();
            let mut out = vec![0f32; n_tokens * n_rows];
            matmul_arith(&view, &x, n_tokens, &mut out, Arith::Fast).unwrap();
            let mut exact = vec![0f32; n_tokens * n_rows];
            matmul(&view, &x, n_tokens, &mut exact).unwrap();
            let mut one = vec![0f32; n_rows];
            for t in 0..n_tokens {
                let xt = &x[t * n_k..(t + 1) * n_k];
                matmul_arith(&view, xt, 1, &mut one, Arith::Fast).unwrap();
                let got = &out[t * n_rows..(t + 1) * n_rows];
                assert_eq!(got, &one[..], "{n_tokens} tokens, token {t}");
                for (g, e) in got.iter().zip(&exact[t * n_rows..]) {
                    assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn matmul_rejects_bad_shapes() {
        let wb = vec![0u8; 20 * 3];
        let shape = [32u64, 3];
        let view = TensorView {
            name: "w",
            ty: GgmlType::Q4_1,
            shape: &shape,
            bytes: &wb,
        };
        let mut out = vec![0f32; 3];
        assert!(matvec(&view, &[0.0; 31], &mut out).is_err());
        assert!(matvec(&view, &[0.0; 32], &mut out[..2]).is_err());
        let short = TensorView {
            bytes: &wb[..59],
            ..view
        };
        assert!(matvec(&short, &[0.0; 32], &mut out).is_err());
        matvec(&view, &[0.0; 32], &mut out).unwrap();
    }
}
