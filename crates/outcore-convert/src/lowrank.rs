//! Low-rank factorization of weight matrices: W (out x in) ~ A (out x k) . B (k x in).
//!
//! Randomized SVD (Halko, Martinsson, Tropp 2011): a Gaussian sketch of the range, `iters`
//! power iterations re-orthonormalised by block Gram-Schmidt each time, then the exact SVD
//! of the small projected matrix (eigen-decomposition of its l x l Gram matrix by Householder
//! tridiagonalisation and implicit QL). The activation-aware variant (SVD-LLM) factors W.S,
//! where S S^T = X^T X is the Cholesky factor of the layer's input covariance, and folds S^-1
//! into B.
//!
//! Everything is dense f64, row-major, written here (no BLAS). Matrices are stored as
//! `Mat { rows, cols, data }`. Orthonormal bases are kept as *rows* (Q^T), so every product is
//! either `A . B` (row-by-row axpy) or `A . B^T` (row-by-row dot products), both cache friendly
//! and parallel over output rows with rayon.

use outcore_format::GgmlType;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// A dense row-major f64 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_f32(rows: usize, cols: usize, v: &[f32]) -> Mat {
        Mat {
            rows,
            cols,
            data: v.iter().map(|&x| x as f64).collect(),
        }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn transpose(&self) -> Mat {
        let mut t = Mat::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        t
    }

    pub fn frob2(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum()
    }

    /// Gaussian entries (Box-Muller), seeded.
    pub fn gaussian(rows: usize, cols: usize, seed: u64) -> Mat {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut m = Mat::zeros(rows, cols);
        for v in m.data.iter_mut() {
            let u1: f64 = rng.gen::<f64>().max(1e-300);
            let u2: f64 = rng.gen();
            *v = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        }
        m
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Eight independent accumulators let the compiler vectorise and hide the add latency.
    let mut s = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((acc, xv), yv) in s.iter_mut().zip(x).zip(y) {
            *acc += xv * yv;
        }
    }
    let mut t = (s[0] + s[4]) + (s[1] + s[5]) + (s[2] + s[6]) + (s[3] + s[7]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// Rows of C per parallel task in [`mul`] / [`mul_bt`]: small enough that a thin left factor
/// (the range finder's l ~ 70 rows) still splits over every core, large enough that each pass
/// over the big right factor is shared by many rows (that pass, not arithmetic, is the cost:
/// the right factor is a whole weight matrix, 100+ MB in f64).
fn row_block(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    m.div_ceil(2 * threads).clamp(1, 32)
}

/// A . B (A: m x k, B: k x n). Tiled: a task owns a block of C's rows and walks B in tiles of
/// KB rows x NB columns, each tile used by every row of the block while it is in cache.
pub fn mul(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.rows, "mul: inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut c = Mat::zeros(m, n);
    if m == 0 || n == 0 {
        return c;
    }
    const KB: usize = 128;
    const NB: usize = 512;
    let mb = row_block(m);
    c.data
        .par_chunks_mut(mb * n)
        .enumerate()
        .for_each(|(blk, cblk)| {
            let i0 = blk * mb;
            let rows = cblk.len() / n;
            for j0 in (0..n).step_by(NB) {
                let j1 = (j0 + NB).min(n);
                for k0 in (0..k).step_by(KB) {
                    let k1 = (k0 + KB).min(k);
                    for r in 0..rows {
                        let ar = &a.data[(i0 + r) * k..(i0 + r + 1) * k];
                        let out = &mut cblk[r * n + j0..r * n + j1];
                        for (kk, &s) in ar.iter().enumerate().take(k1).skip(k0) {
                            if s != 0.0 {
                                let brow = &b.data[kk * n + j0..kk * n + j1];
                                for (o, &bv) in out.iter_mut().zip(brow) {
                                    *o += s * bv;
                                }
                            }
                        }
                    }
                }
            }
        });
    c
}

/// A . B^T (A: m x k, B: n x k): dot products of rows. A task owns a block of A's rows and
/// walks B's rows in groups, so each B row is read from memory once per block, not per row.
pub fn mul_bt(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.cols, "mul_bt: inner dimensions");
    let (m, n) = (a.rows, b.rows);
    let mut c = Mat::zeros(m, n);
    if m == 0 || n == 0 {
        return c;
    }
    const JB: usize = 8;
    let mb = row_block(m);
    c.data
        .par_chunks_mut(mb * n)
        .enumerate()
        .for_each(|(blk, cblk)| {
            let i0 = blk * mb;
            let rows = cblk.len() / n;
            for j0 in (0..n).step_by(JB) {
                let j1 = (j0 + JB).min(n);
                for r in 0..rows {
                    let ar = a.row(i0 + r);
                    for j in j0..j1 {
                        cblk[r * n + j] = dot(ar, b.row(j));
                    }
                }
            }
        });
    c
}

/// Orthonormalises the rows of `q` in place: block Gram-Schmidt, applied twice for stability.
/// Each block of rows is first projected off every finished row (dot products then axpys,
/// parallel over the block's rows), then orthonormalised within itself by modified
/// Gram-Schmidt. Rows that vanish (rank deficiency) become zero.
pub fn orthonormalize_rows(q: &mut Mat) {
    const BLOCK: usize = 16;
    let n = q.cols;
    if n == 0 {
        return;
    }
    for _pass in 0..2 {
        for b0 in (0..q.rows).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(q.rows);
            let (done, rest) = q.data.split_at_mut(b0 * n);
            let blk = &mut rest[..(b1 - b0) * n];
            if b0 > 0 {
                let done: &[f64] = done;
                blk.par_chunks_mut(n).for_each(|r| {
                    let coef: Vec<f64> = done.chunks_exact(n).map(|d| dot(d, r)).collect();
                    for (c, d) in coef.iter().zip(done.chunks_exact(n)) {
                        for (x, y) in r.iter_mut().zip(d) {
                            *x -= c * y;
                        }
                    }
                });
            }
            for i in 0..b1 - b0 {
                let (prev, cur) = blk.split_at_mut(i * n);
                let r = &mut cur[..n];
                for qj in prev.chunks_exact(n) {
                    let p = dot(qj, r);
                    for (x, y) in r.iter_mut().zip(qj) {
                        *x -= p * y;
                    }
                }
                let norm = dot(r, r).sqrt();
                if norm > 1e-300 {
                    r.iter_mut().for_each(|x| *x /= norm);
                } else {
                    r.iter_mut().for_each(|x| *x = 0.0);
                }
            }
        }
    }
}

/// Eigen-decomposition of a symmetric matrix: Householder reduction to tridiagonal form, then
/// the implicit QL algorithm (the EISPACK `tred2` / `tql2` pair, as in JAMA), about 6 n^3
/// flops where cyclic Jacobi needed several times that. Returns eigenvalues in descending order
/// and the eigenvectors as the *columns* of the returned matrix.
pub fn sym_eigen(a: &Mat) -> (Vec<f64>, Mat) {
    let n = a.rows;
    if n == 0 {
        return (Vec::new(), Mat::zeros(0, 0));
    }
    let mut v = a.clone();
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    tred2(&mut v, &mut d, &mut e);
    // tql2 rotates pairs of eigenvector columns: keep them as rows so those are contiguous.
    let mut vt = v.transpose();
    tql2(&mut vt, &mut d, &mut e);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let vals = order.iter().map(|&i| d[i]).collect();
    let mut vs = Mat::zeros(n, n);
    for (c, &src) in order.iter().enumerate() {
        for (r, &x) in vt.row(src).iter().enumerate() {
            vs.data[r * n + c] = x;
        }
    }
    (vals, vs)
}

/// Householder tridiagonalisation of the symmetric `v` (n x n, overwritten by the accumulated
/// orthogonal transform): diagonal in `d`, sub-diagonal in `e[1..]`.
// Index loops over d, e and v together read like the reference algorithm; iterators would not.
#[allow(clippy::needless_range_loop)]
fn tred2(v: &mut Mat, d: &mut [f64], e: &mut [f64]) {
    let n = v.rows;
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v.data[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v.data[at(i - 1, j)];
                v.data[at(i, j)] = 0.0;
                v.data[at(j, i)] = 0.0;
            }
        } else {
            for x in d[..i].iter_mut() {
                *x /= scale;
                h += *x * *x;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                f = d[j];
                v.data[at(j, i)] = f;
                g = e[j] + v.data[at(j, j)] * f;
                for k in j + 1..i {
                    g += v.data[at(k, j)] * d[k];
                    e[k] += v.data[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                for k in j..i {
                    v.data[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v.data[at(i - 1, j)];
                v.data[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v.data[at(n - 1, i)] = v.data[at(i, i)];
        v.data[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v.data[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v.data[at(k, i + 1)] * v.data[at(k, j)];
                }
                for k in 0..=i {
                    v.data[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v.data[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v.data[at(n - 1, j)];
        v.data[at(n - 1, j)] = 0.0;
    }
    v.data[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL on the tridiagonal (`d`, `e` from [`tred2`]); `vt` holds the eigenvectors as
/// rows and receives the rotations. Eigenvalues end in `d` (unsorted).
fn tql2(vt: &mut Mat, d: &mut [f64], e: &mut [f64]) {
    let n = vt.rows;
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0f64;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            for _iter in 0..100 {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for x in d[l + 2..].iter_mut() {
                    *x -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0f64, 1.0f64, 1.0f64);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    let (lo, hi) = vt.data.split_at_mut((i + 1) * n);
                    let (vi, vi1) = (&mut lo[i * n..], &mut hi[..n]);
                    for (a, b) in vi.iter_mut().zip(vi1.iter_mut()) {
                        let t = *b;
                        *b = s * *a + c * t;
                        *a = c * *a - s * t;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

/// Lower-triangular Cholesky factor L of a symmetric positive-definite matrix (C = L L^T).
/// A diagonal `damp` (relative to the mean diagonal) is added first; it is raised tenfold until
/// the factorisation succeeds.
pub fn cholesky(c: &Mat, damp: f64) -> Mat {
    let n = c.rows;
    let mean_diag = (0..n).map(|i| c.data[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mut lambda = damp * mean_diag.max(1e-300);
    loop {
        if let Some(l) = cholesky_damped(c, lambda) {
            return l;
        }
        lambda = if lambda == 0.0 {
            1e-8 * mean_diag.max(1e-300)
        } else {
            lambda * 10.0
        };
    }
}

/// Right-looking blocked Cholesky of C + lambda I (`None` when not positive definite). Per
/// block of 64 columns: factor the diagonal block, solve the panel below it (parallel over
/// rows), then subtract the panel's outer product from the trailing lower triangle in 32 x 32
/// tiles (parallel over row tiles), which is where the n^3 / 6 multiply-adds go.
fn cholesky_damped(c: &Mat, lambda: f64) -> Option<Mat> {
    const NB: usize = 64;
    const TILE: usize = 32;
    let n = c.rows;
    let mut a = c.clone();
    for i in 0..n {
        a.data[i * n + i] += lambda;
    }
    for k0 in (0..n).step_by(NB) {
        let k1 = (k0 + NB).min(n);
        let nb = k1 - k0;
        let (top, bottom) = a.data.split_at_mut(k1 * n);
        // Diagonal block (earlier blocks' updates already applied).
        for j in k0..k1 {
            let rj = j * n;
            let s = top[rj + j] - dot(&top[rj + k0..rj + j], &top[rj + k0..rj + j]);
            if s <= 0.0 || !s.is_finite() {
                return None;
            }
            let d = s.sqrt();
            top[rj + j] = d;
            for i in j + 1..k1 {
                let ri = i * n;
                let v = top[ri + j] - dot(&top[ri + k0..ri + j], &top[rj + k0..rj + j]);
                top[ri + j] = v / d;
            }
        }
        if k1 == n {
            break;
        }
        // Panel: L[i][K] L[K][K]^T = A[i][K] for every row below the block.
        let diag: &[f64] = top;
        bottom.par_chunks_mut(n).for_each(|row| {
            for j in k0..k1 {
                let rj = j * n;
                let v = row[j] - dot(&row[k0..j], &diag[rj + k0..rj + j]);
                row[j] = v / diag[rj + j];
            }
        });
        // Trailing update A[i][j] -= L[i][K] . L[j][K] for k1 <= j <= i, from a packed copy.
        let mut panel = vec![0f64; (n - k1) * nb];
        for (p, row) in panel.chunks_exact_mut(nb).zip(bottom.chunks_exact(n)) {
            p.copy_from_slice(&row[k0..k1]);
        }
        let panel = &panel;
        bottom
            .par_chunks_mut(n * TILE)
            .enumerate()
            .for_each(|(bi, block)| {
                let i0 = bi * TILE;
                for j0 in (0..=i0).step_by(TILE) {
                    for (ii, row) in block.chunks_exact_mut(n).enumerate() {
                        let i = i0 + ii;
                        let pi = &panel[i * nb..(i + 1) * nb];
                        for j in j0..(j0 + TILE).min(i + 1) {
                            row[k1 + j] -= dot(pi, &panel[j * nb..(j + 1) * nb]);
                        }
                    }
                }
            });
    }
    for i in 0..n {
        a.data[i * n + i + 1..(i + 1) * n].fill(0.0);
    }
    Some(a)
}

/// X = B . L^-1 for lower-triangular L (solves X L = B: x_i = s_i / L[i][i] from i = n-1 down,
/// then s_j -= x_i L[i][j] for j < i). Walks L by rows, each row once per block of B's rows
/// (reading L by columns, 64 KB apart for n = 8192, was 85% of a calibrated compression).
pub fn solve_right_lower(b: &Mat, l: &Mat) -> Mat {
    let n = l.rows;
    assert_eq!(b.cols, n);
    let mut x = b.clone();
    if n == 0 || b.rows == 0 {
        return x;
    }
    let mb = row_block(b.rows);
    x.data.par_chunks_mut(mb * n).for_each(|blk| {
        for i in (0..n).rev() {
            let lrow = &l.data[i * n..i * n + i];
            let d = l.data[i * n + i];
            for row in blk.chunks_exact_mut(n) {
                let xi = row[i] / d;
                row[i] = xi;
                if xi != 0.0 {
                    for (s, &lv) in row[..i].iter_mut().zip(lrow) {
                        *s -= xi * lv;
                    }
                }
            }
        }
    });
    x
}

/// How the rank is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankSpec {
    /// A fixed rank.
    Rank(usize),
    /// A fraction of full rank min(out, in).
    Fraction(f64),
    /// The smallest rank keeping this fraction of the squared Frobenius norm (energy).
    Energy(f64),
    /// Parameter reduction: the largest rank whose factors hold at most `1 - p` of the matrix's
    /// parameters, k (out + in) <= (1 - p) out in (rounded down to the block size).
    Reduction(f64),
}

impl RankSpec {
    /// `64`, `0.25` (a fraction of full rank).
    pub fn parse(s: &str) -> Option<RankSpec> {
        if let Ok(r) = s.parse::<usize>() {
            return (r > 0).then_some(RankSpec::Rank(r));
        }
        let f: f64 = s.parse().ok()?;
        (f > 0.0 && f <= 1.0).then_some(RankSpec::Fraction(f))
    }
}

/// Settings of one factorization.
#[derive(Clone, Copy, Debug)]
pub struct SvdOptions {
    pub rank: RankSpec,
    pub iters: usize,
    pub oversample: usize,
    /// Round the rank up to a multiple of this (the block size of the factor type).
    pub rank_multiple: usize,
    pub seed: u64,
}

impl Default for SvdOptions {
    fn default() -> Self {
        SvdOptions {
            rank: RankSpec::Rank(64),
            iters: 10,
            oversample: 8,
            rank_multiple: 1,
            seed: 0x5eed,
        }
    }
}

/// W ~ A . B with A: out x k and B: k x in (balanced: each carries sqrt of the singular values).
#[derive(Clone, Debug)]
pub struct Factors {
    pub a: Mat,
    pub b: Mat,
    pub rank: usize,
    /// Singular values of the (whitened) matrix found by the sketch, descending.
    pub sigma: Vec<f64>,
}

impl Factors {
    pub fn reconstruct(&self) -> Mat {
        mul(&self.a, &self.b)
    }
}

/// ||W - A B||_F / ||W||_F.
pub fn relative_error(w: &Mat, f: &Factors) -> f64 {
    let r = f.reconstruct();
    let num: f64 = w
        .data
        .iter()
        .zip(&r.data)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    (num / w.frob2().max(1e-300)).sqrt()
}

fn pick_rank(
    spec: RankSpec,
    (m, n): (usize, usize),
    sigma2: &[f64],
    total2: f64,
    multiple: usize,
) -> usize {
    let full = m.min(n);
    let mult = multiple.max(1);
    let k = match spec {
        RankSpec::Reduction(p) => {
            let k = ((1.0 - p) * (m * n) as f64 / (m + n).max(1) as f64).floor() as usize;
            return ((k / mult).max(1) * mult).min(full);
        }
        RankSpec::Rank(r) => r,
        RankSpec::Fraction(f) => (f * full as f64).round() as usize,
        RankSpec::Energy(e) => {
            let mut acc = 0.0;
            let mut k = sigma2.len();
            for (i, s) in sigma2.iter().enumerate() {
                acc += s.max(0.0);
                if acc >= e * total2 {
                    k = i + 1;
                    break;
                }
            }
            k
        }
    };
    let m = multiple.max(1);
    (k.max(1).div_ceil(m) * m).min(full)
}

/// Truncated randomized SVD of `w` (out x in). With `whiten = Some(S)` (lower-triangular,
/// in x in) it factors W.S and folds S^-1 into B, so that A.B ~ W in the metric of the inputs.
pub fn factorize(w: &Mat, whiten: Option<&Mat>, opts: &SvdOptions) -> Factors {
    let (m, n) = (w.rows, w.cols);
    let full = m.min(n);
    let want = match opts.rank {
        RankSpec::Energy(_) => full,
        spec => pick_rank(spec, (m, n), &[], 0.0, opts.rank_multiple),
    };
    let l = (want + opts.oversample).min(full);
    // The target T is W, or W.S. Forming W.S costs m n^2 multiply-adds once; leaving it
    // implicit costs l n^2 more per product with T (there are 2 + 2 iters of them). Form it
    // when that is cheaper (and for the energy rule, which needs ||W.S||).
    let products = 2 + 2 * opts.iters;
    let formed = match whiten {
        Some(s) if m <= products * l || matches!(opts.rank, RankSpec::Energy(_)) => Some(mul(w, s)),
        _ => None,
    };
    let (target, lazy_s) = match (&formed, whiten) {
        (Some(t), _) => (t, None),
        (None, s) => (w, s),
    };
    // x (r x n) -> x T^T (r x m), and q (r x m) -> q T (r x n).
    let t_rows = |x: &Mat| match lazy_s {
        Some(s) => mul_bt(&mul_bt(x, s), target),
        None => mul_bt(x, target),
    };
    let t_left = |q: &Mat| match lazy_s {
        Some(s) => mul(&mul(q, target), s),
        None => mul(q, target),
    };
    // Range finder on the rows of Q^T (l x m).
    let omega = Mat::gaussian(l, n, opts.seed);
    let mut qt = t_rows(&omega); // (T Omega)^T = Omega^T T^T: l x m
    orthonormalize_rows(&mut qt);
    for _ in 0..opts.iters {
        let mut zt = t_left(&qt); // Q^T T: l x n
        orthonormalize_rows(&mut zt);
        qt = t_rows(&zt); // (T Z)^T: l x m
        orthonormalize_rows(&mut qt);
    }
    let small = t_left(&qt); // Q^T T: l x n
    let gram = mul_bt(&small, &small); // l x l
    let (vals, u) = sym_eigen(&gram);
    let sigma2: Vec<f64> = vals.iter().map(|v| v.max(0.0)).collect();
    let k = match opts.rank {
        RankSpec::Energy(_) => pick_rank(
            opts.rank,
            (m, n),
            &sigma2,
            target.frob2(),
            opts.rank_multiple,
        ),
        _ => want,
    }
    .min(l);
    let smax = sigma2.first().copied().unwrap_or(0.0).sqrt();
    // A^T rows: sqrt(s_c) * (U_c^T Q^T); B rows: (U_c^T small) / sqrt(s_c).
    let mut at = Mat::zeros(k, m);
    let mut b = Mat::zeros(k, n);
    at.data
        .par_chunks_mut(m.max(1))
        .zip(b.data.par_chunks_mut(n.max(1)))
        .enumerate()
        .for_each(|(c, (arow, brow))| {
            let s = sigma2[c].sqrt();
            if s <= smax * 1e-13 || s == 0.0 {
                return;
            }
            let (ra, rb) = (s.sqrt(), 1.0 / s.sqrt());
            for j in 0..l {
                let ujc = u.data[j * l + c];
                for (x, y) in arow.iter_mut().zip(qt.row(j)) {
                    *x += ra * ujc * y;
                }
                for (x, y) in brow.iter_mut().zip(small.row(j)) {
                    *x += rb * ujc * y;
                }
            }
        });
    let b = match whiten {
        Some(s) => solve_right_lower(&b, s),
        None => b,
    };
    Factors {
        a: at.transpose(),
        b,
        rank: k,
        sigma: sigma2.iter().map(|x| x.sqrt()).collect(),
    }
}

/// X^T X accumulated in f64 over input rows of length `n` (only the lower triangle is summed,
/// then mirrored by [`Covariance::matrix`]).
#[derive(Clone, Debug)]
pub struct Covariance {
    pub n: usize,
    pub rows: u64,
    pub sum: Vec<f64>,
}

impl Covariance {
    pub fn new(n: usize) -> Covariance {
        Covariance {
            n,
            rows: 0,
            sum: vec![0.0; n * n],
        }
    }

    /// Adds rows (`x.len()` a multiple of n): a rank-`rows` update of the lower triangle, done
    /// like a matrix product (X^T X from a feature-major f64 copy, in 32 x 32 tiles of dot
    /// products, parallel over row tiles).
    pub fn add(&mut self, x: &[f32]) {
        const TILE: usize = 32;
        let n = self.n;
        let r = x.len() / n.max(1);
        if r == 0 {
            return;
        }
        let mut xt = vec![0f64; n * r];
        for (t, row) in x.chunks_exact(n).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                xt[i * r + t] = v as f64;
            }
        }
        self.rows += r as u64;
        let xt = &xt;
        self.sum
            .par_chunks_mut(n * TILE)
            .enumerate()
            .for_each(|(bi, block)| {
                let i0 = bi * TILE;
                for j0 in (0..=i0).step_by(TILE) {
                    for (ii, out) in block.chunks_exact_mut(n).enumerate() {
                        let i = i0 + ii;
                        let xi = &xt[i * r..(i + 1) * r];
                        for (j, o) in out
                            .iter_mut()
                            .enumerate()
                            .take((j0 + TILE).min(i + 1))
                            .skip(j0)
                        {
                            *o += dot(xi, &xt[j * r..(j + 1) * r]);
                        }
                    }
                }
            });
    }

    pub fn matrix(&self) -> Mat {
        let n = self.n;
        let mut m = Mat::zeros(n, n);
        for i in 0..n {
            for j in 0..=i {
                let v = self.sum[i * n + j];
                m.data[i * n + j] = v;
                m.data[j * n + i] = v;
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF -> GGUF compression: chosen 2-D weights become `NAME.lr_a` [rank, out] + `NAME.lr_b`
// [in, rank] (ggml order, written next to each other), everything else is copied as stored.

/// Metadata keys written beside the factors.
pub mod keys {
    pub const VERSION: &str = "outcore.lowrank.version";
    pub const METHOD: &str = "outcore.lowrank.method";
    pub const RANK: &str = "outcore.lowrank.rank";
    pub const ITERS: &str = "outcore.lowrank.iters";
    pub const TENSORS: &str = "outcore.lowrank.tensors";
}

/// Suffixes of the two factor tensors.
pub const SUFFIX_A: &str = ".lr_a";
pub const SUFFIX_B: &str = ".lr_b";

/// Options of `outcore compress`.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    pub input: std::path::PathBuf,
    pub output: std::path::PathBuf,
    pub force: bool,
    pub svd: SvdOptions,
    /// Which tensors: `*` wildcards, comma-separated (default: every 2-D `blk.*` weight).
    pub pattern: Option<String>,
    /// Type of the factors (rank rounded up to its block size).
    pub ty: GgmlType,
    /// Parallel over layers (`None`: decide from available memory).
    pub parallel: Option<bool>,
}

/// What happened to one tensor.
#[derive(Clone, Debug)]
pub struct TensorReport {
    pub name: String,
    /// ggml order [in, out].
    pub shape: [u64; 2],
    /// `None`: kept as stored (no saving at that rank).
    pub rank: Option<usize>,
    /// ||W - A B||_F / ||W||_F before the factors are quantized.
    pub rel_error: f64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Clone, Debug, Default)]
pub struct CompressReport {
    pub tensors: Vec<TensorReport>,
    pub parallel: bool,
    pub memory_note: String,
    pub calibrated: bool,
    pub calibration_tokens: usize,
    pub elapsed: std::time::Duration,
}

/// `*`-wildcard match.
pub fn glob_match(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob_match(rest, &tail[i..]))
        }
    }
}

fn selected(pattern: Option<&str>, name: &str, shape: &[u64]) -> bool {
    if shape.len() != 2 || shape[1] == 1 || name.contains("norm") || name == "token_embd.weight" {
        return false;
    }
    match pattern {
        Some(p) => p.split(',').any(|p| glob_match(p.trim(), name)),
        None => name.starts_with("blk.") && name.ends_with(".weight"),
    }
}

/// One tensor's outcome: its report and, when factored, the encoded pair.
type Outcome = (String, (TensorReport, Option<Encoded>));

struct Encoded {
    a: Vec<u8>,
    b: Vec<u8>,
    a_ty: GgmlType,
    b_ty: GgmlType,
    rank: usize,
}

fn encode(ty: GgmlType, m: &Mat, name: &str) -> crate::error::Result<(Vec<u8>, GgmlType)> {
    let ty = if m.cols.is_multiple_of(ty.block_size()) {
        ty
    } else {
        GgmlType::F16
    };
    let rb = ty.row_bytes(m.cols as u64).unwrap_or(0) as usize;
    let mut out = vec![0u8; rb * m.rows];
    out.par_chunks_mut(rb.max(1))
        .enumerate()
        .try_for_each(|(r, dst)| {
            let row: Vec<f32> = m.row(r).iter().map(|&x| x as f32).collect();
            crate::codec::encode_row(ty, &row, dst, name)
        })?;
    Ok((out, ty))
}

/// Factors one tensor (whitened by `s` when given).
fn compress_tensor(
    src: &outcore_format::GgufFile,
    name: &str,
    s: Option<&Mat>,
    opts: &CompressOptions,
) -> crate::error::Result<(TensorReport, Option<Encoded>)> {
    let view = src
        .tensor(name)
        .ok_or_else(|| crate::error::ConvertError::BadTensor {
            tensor: name.into(),
            problem: "missing".into(),
        })?;
    let (n, m) = (view.shape[0] as usize, view.shape[1] as usize);
    let mut w32 = vec![0f32; n * m];
    let rb = view.ty.row_bytes(n as u64).unwrap_or(0) as usize;
    w32.par_chunks_mut(n).enumerate().try_for_each(|(r, dst)| {
        crate::codec::decode_row(view.ty, &view.bytes[r * rb..(r + 1) * rb], dst, name)
    })?;
    let w = Mat::from_f32(m, n, &w32);
    drop(w32);
    let mut svd = opts.svd;
    svd.rank_multiple = opts.ty.block_size();
    let f = factorize(&w, s, &svd);
    let mut report = TensorReport {
        name: name.into(),
        shape: [n as u64, m as u64],
        rank: None,
        rel_error: 0.0,
        bytes_before: view.bytes.len() as u64,
        bytes_after: view.bytes.len() as u64,
    };
    if f.rank * (m + n) >= m * n {
        return Ok((report, None));
    }
    report.rel_error = relative_error(&w, &f);
    let (a, a_ty) = encode(opts.ty, &f.a, name)?;
    let (b, b_ty) = encode(opts.ty, &f.b, name)?;
    report.rank = Some(f.rank);
    report.bytes_after = (a.len() + b.len()) as u64;
    Ok((
        report,
        Some(Encoded {
            a,
            b,
            a_ty,
            b_ty,
            rank: f.rank,
        }),
    ))
}

/// Progress of a compression: called once per finished tensor.
pub trait CompressProgress: Sync {
    fn start(&self, _n_tensors: usize) {}
    fn done(&self, _r: &TensorReport) {}
}

impl CompressProgress for crate::pipeline::Quiet {}

/// Compresses a GGUF model. With a calibrator, each weight is whitened by the Cholesky factor of
/// its input covariance (SVD-LLM); covariances are collected a group of layers at a time.
pub fn compress(
    opts: &CompressOptions,
    calib: Option<&crate::calibrate::Calibrator>,
    progress: &dyn CompressProgress,
) -> crate::error::Result<CompressReport> {
    use std::collections::{BTreeMap, HashMap};
    let t0 = std::time::Instant::now();
    let src = outcore_format::GgufFile::open(&opts.input, outcore_format::LoadMode::Mmap)?;
    let chosen: Vec<(String, Vec<u64>)> = src
        .tensor_infos()
        .iter()
        .filter(|t| selected(opts.pattern.as_deref(), &t.name, &t.shape))
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    progress.start(chosen.len());
    // Group by layer (non-layer tensors such as output.weight form their own group).
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (name, _) in &chosen {
        let l = crate::mix::layer_of(name).unwrap_or(usize::MAX);
        groups.entry(l).or_default().push(name.clone());
    }
    // Working memory of one tensor: W, W.S, sketches and factors in f64 (about 4 copies).
    let per_tensor = |shape: &[u64]| 8 * 4 * shape[0] * shape[1];
    let layer_mem: u64 = groups
        .values()
        .map(|g| {
            g.iter()
                .filter_map(|n| chosen.iter().find(|c| &c.0 == n))
                .map(|c| per_tensor(&c.1))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let cov_mem = calib.map_or(0, |c| c.layer_bytes() * 2);
    let avail = outcore_engine::memory::probe::MemLimits::probe()
        .map(|l| l.effective().bytes)
        .unwrap_or(4 << 30);
    let threads = rayon::current_num_threads().max(1) as u64;
    let parallel = opts
        .parallel
        .unwrap_or((layer_mem + cov_mem) * threads <= avail / 2);
    let group_layers = if parallel { threads as usize } else { 1 };
    let keys: Vec<usize> = groups.keys().copied().collect();
    // Calibration: one forward pass over the text collects the covariances of as many layers as
    // a quarter of the available memory holds (each layer's inputs and then their Cholesky
    // factors), so a small model needs a single pass and a large one a few, never one per layer.
    let pass_layers = match calib {
        Some(c) => {
            let per_layer = 2 * c.layer_bytes().max(1);
            (((avail / 4) / per_layer) as usize).max(group_layers)
        }
        None => keys.len().max(1),
    };
    let n_passes = keys
        .iter()
        .filter(|&&l| l != usize::MAX)
        .count()
        .div_ceil(pass_layers);
    let memory_note = format!(
        "{} (about {} MiB per layer, {} MiB available, {} threads){}",
        if parallel {
            "parallel over layers"
        } else {
            "one layer at a time"
        },
        (layer_mem + cov_mem) >> 20,
        avail >> 20,
        threads,
        match calib {
            Some(_) => format!(
                "; calibration: {n_passes} forward pass(es) of up to {pass_layers} layers' covariances"
            ),
            None => String::new(),
        }
    );
    let mut results: HashMap<String, (TensorReport, Option<Encoded>)> = HashMap::new();
    for pass in keys.chunks(pass_layers) {
        let layers: Vec<usize> = pass.iter().copied().filter(|&l| l != usize::MAX).collect();
        // Whitening factors for this pass's layers: one Cholesky per layer input.
        let whiten: HashMap<(usize, crate::calibrate::LinearInput), Mat> = match calib {
            Some(c) if !layers.is_empty() => {
                let covs: Vec<_> = c.covariances(&layers)?.into_iter().collect();
                let chol = |(k, cov): (_, Covariance)| {
                    let m = cov.matrix();
                    drop(cov);
                    (k, cholesky(&m, 1e-4))
                };
                if parallel {
                    covs.into_par_iter().map(chol).collect()
                } else {
                    covs.into_iter().map(chol).collect()
                }
            }
            _ => HashMap::new(),
        };
        for batch in pass.chunks(group_layers) {
            let work = |l: &usize| -> crate::error::Result<Vec<Outcome>> {
                let mut out = Vec::new();
                for name in &groups[l] {
                    let s = crate::calibrate::input_of(name).and_then(|i| whiten.get(&(*l, i)));
                    let r = compress_tensor(&src, name, s, opts)?;
                    progress.done(&r.0);
                    out.push((name.clone(), r));
                }
                Ok(out)
            };
            let done: Vec<_> = if parallel {
                batch
                    .par_iter()
                    .map(work)
                    .collect::<crate::error::Result<Vec<_>>>()?
            } else {
                batch
                    .iter()
                    .map(work)
                    .collect::<crate::error::Result<Vec<_>>>()?
            };
            results.extend(done.into_iter().flatten());
        }
    }
    // Write: metadata + every tensor in the input's order, pairs in place of compressed ones.
    let mut md = src.metadata().clone();
    let names: Vec<String> = src
        .tensor_infos()
        .iter()
        .filter(|t| matches!(results.get(&t.name), Some((_, Some(_)))))
        .map(|t| t.name.clone())
        .collect();
    md.insert(keys::VERSION, outcore_format::Value::U32(1));
    md.insert(
        keys::METHOD,
        outcore_format::Value::String(
            if calib.is_some() {
                "calibrated"
            } else {
                "plain"
            }
            .into(),
        ),
    );
    md.insert(
        keys::RANK,
        outcore_format::Value::String(format!("{:?}", opts.svd.rank)),
    );
    md.insert(
        keys::ITERS,
        outcore_format::Value::U32(opts.svd.iters as u32),
    );
    md.insert(
        keys::TENSORS,
        outcore_format::Value::Array(outcore_format::Array::String(names)),
    );
    let mut plan = Vec::new();
    for t in src.tensor_infos() {
        match results.get(&t.name) {
            Some((_, Some(e))) => {
                let (n, m) = (t.shape[0], t.shape[1]);
                plan.push((
                    format!("{}{SUFFIX_A}", t.name),
                    e.a_ty,
                    vec![e.rank as u64, m],
                ));
                plan.push((
                    format!("{}{SUFFIX_B}", t.name),
                    e.b_ty,
                    vec![n, e.rank as u64],
                ));
            }
            _ => plan.push((t.name.clone(), t.ty, t.shape.clone())),
        }
    }
    let mut w =
        outcore_format::GgufWriter::create(&opts.output, opts.force, &md, plan, src.alignment())?;
    for t in src.tensor_infos() {
        match results.get(&t.name) {
            Some((_, Some(e))) => {
                w.write_tensor_data(&format!("{}{SUFFIX_A}", t.name), &e.a)?;
                w.write_tensor_data(&format!("{}{SUFFIX_B}", t.name), &e.b)?;
            }
            _ => {
                let v =
                    src.tensor(&t.name)
                        .ok_or_else(|| crate::error::ConvertError::BadTensor {
                            tensor: t.name.clone(),
                            problem: "missing".into(),
                        })?;
                w.write_tensor_data(&t.name, v.bytes)?;
            }
        }
    }
    w.finish()?;
    let mut tensors: Vec<TensorReport> = results.into_values().map(|(r, _)| r).collect();
    tensors.sort_by(|a, b| {
        (crate::mix::layer_of(&a.name), &a.name).cmp(&(crate::mix::layer_of(&b.name), &b.name))
    });
    Ok(CompressReport {
        tensors,
        parallel,
        memory_note,
        calibrated: calib.is_some(),
        calibration_tokens: calib.map_or(0, |c| c.n_tokens()),
        elapsed: t0.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn low_rank(m: usize, n: usize, r: usize, seed: u64) -> Mat {
        mul(&Mat::gaussian(m, r, seed), &Mat::gaussian(r, n, seed + 1))
    }

    #[test]
    fn products_match_naive() {
        let a = Mat::gaussian(5, 7, 1);
        let b = Mat::gaussian(7, 3, 2);
        let c = mul(&a, &b);
        let bt = b.transpose();
        let c2 = mul_bt(&a, &bt);
        for i in 0..5 {
            for j in 0..3 {
                let s: f64 = (0..7).map(|k| a.data[i * 7 + k] * b.data[k * 3 + j]).sum();
                assert!((c.data[i * 3 + j] - s).abs() < 1e-12);
                assert!((c2.data[i * 3 + j] - s).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gram_schmidt_gives_orthonormal_rows() {
        let mut q = Mat::gaussian(6, 20, 3);
        orthonormalize_rows(&mut q);
        let g = mul_bt(&q, &q);
        for i in 0..6 {
            for j in 0..6 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((g.data[i * 6 + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn eigen_reconstructs_larger_and_rank_deficient() {
        for (n, r) in [(1, 1), (2, 2), (57, 57), (40, 9)] {
            let x = Mat::gaussian(n, r, 50 + n as u64);
            let s = mul_bt(&x, &x);
            let (vals, v) = sym_eigen(&s);
            assert!(vals.windows(2).all(|w| w[0] >= w[1]));
            let vtv = mul(&v.transpose(), &v);
            let mut vd = v.clone();
            for row in vd.data.chunks_exact_mut(n) {
                for (x, v) in row.iter_mut().zip(&vals) {
                    *x *= v;
                }
            }
            let back = mul_bt(&vd, &v);
            let scale = s.frob2().sqrt();
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((vtv.data[i * n + j] - want).abs() < 1e-10, "V^T V ({n})");
                    assert!((back.data[i * n + j] - s.data[i * n + j]).abs() < 1e-10 * scale);
                }
            }
            assert!(vals[r..].iter().all(|v| v.abs() < 1e-9 * scale), "{n} {r}");
        }
    }

    #[test]
    fn eigen_reconstructs() {
        let x = Mat::gaussian(8, 8, 4);
        let s = mul_bt(&x, &x);
        let (vals, v) = sym_eigen(&s);
        assert!(vals.windows(2).all(|w| w[0] >= w[1]));
        // V diag(vals) V^T = S
        let mut vd = v.clone();
        for row in vd.data.chunks_exact_mut(8) {
            for (x, v) in row.iter_mut().zip(&vals) {
                *x *= v;
            }
        }
        let back = mul_bt(&vd, &v);
        for (a, b) in back.data.iter().zip(&s.data) {
            assert!((a - b).abs() < 1e-9 * s.frob2().sqrt());
        }
    }

    #[test]
    fn cholesky_and_triangular_solve() {
        let x = Mat::gaussian(30, 10, 5);
        let c = mul(&x.transpose(), &x);
        let l = cholesky(&c, 0.0);
        let back = mul_bt(&l, &l);
        for (a, b) in back.data.iter().zip(&c.data) {
            assert!((a - b).abs() < 1e-9);
        }
        let b = Mat::gaussian(4, 10, 6);
        let xs = solve_right_lower(&b, &l);
        let again = mul(&xs, &l);
        for (a, b) in again.data.iter().zip(&b.data) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn known_rank_is_reconstructed_to_float_precision() {
        let w = low_rank(60, 40, 7, 7);
        let opts = SvdOptions {
            rank: RankSpec::Rank(7),
            iters: 2,
            ..Default::default()
        };
        let f = factorize(&w, None, &opts);
        assert_eq!(f.rank, 7);
        let e = relative_error(&w, &f);
        assert!(e < 1e-10, "relative error {e}");
    }

    #[test]
    fn error_decreases_with_rank_and_iterations() {
        // A decaying spectrum plus noise.
        let mut w = Mat::zeros(80, 64);
        for r in 1..40 {
            let u = Mat::gaussian(80, 1, 100 + r as u64);
            let v = Mat::gaussian(1, 64, 200 + r as u64);
            let p = mul(&u, &v);
            let s = 1.0 / (r as f64).powf(1.5);
            for (x, y) in w.data.iter_mut().zip(&p.data) {
                *x += s * y;
            }
        }
        let err = |rank, iters| {
            let o = SvdOptions {
                rank: RankSpec::Rank(rank),
                iters,
                oversample: 2,
                ..Default::default()
            };
            relative_error(&w, &factorize(&w, None, &o))
        };
        let (e4, e8, e16) = (err(4, 2), err(8, 2), err(16, 2));
        assert!(e4 > e8 && e8 > e16, "{e4} {e8} {e16}");
        let (i0, i1, i3) = (err(8, 0), err(8, 1), err(8, 3));
        assert!(
            i1 < i0 && i3 <= i1 + 1e-12,
            "iterations: {i0} -> {i1} -> {i3}"
        );
    }

    #[test]
    fn energy_and_fraction_pick_ranks() {
        let w = low_rank(50, 30, 5, 9);
        let f = factorize(
            &w,
            None,
            &SvdOptions {
                rank: RankSpec::Energy(0.999999),
                iters: 2,
                ..Default::default()
            },
        );
        assert!(f.rank <= 5 && f.rank >= 4, "rank {}", f.rank);
        assert_eq!(RankSpec::parse("0.25"), Some(RankSpec::Fraction(0.25)));
        assert_eq!(RankSpec::parse("64"), Some(RankSpec::Rank(64)));
        assert_eq!(
            pick_rank(RankSpec::Fraction(0.25), (30, 50), &[], 0.0, 4),
            8
        );
        // 576 x 1536 at 20% reduction: 0.8 * 884736 / 2112 = 335.1 -> 320 with blocks of 32.
        assert_eq!(
            pick_rank(RankSpec::Reduction(0.2), (576, 1536), &[], 0.0, 32),
            320
        );
    }

    #[test]
    fn implicit_whitening_equals_formed_product() {
        // 200 rows, rank 4 + 4 oversampling, no iterations: 2 * 8 < 200, so W.S stays implicit.
        let w = Mat::gaussian(200, 24, 21);
        let x = Mat::gaussian(100, 24, 22);
        let s = cholesky(&mul(&x.transpose(), &x), 1e-6);
        let o = SvdOptions {
            rank: RankSpec::Rank(4),
            iters: 0,
            oversample: 4,
            ..Default::default()
        };
        let lazy = factorize(&w, Some(&s), &o);
        let formed = factorize(&mul(&w, &s), None, &o);
        let formed_b = solve_right_lower(&formed.b, &s);
        let (r1, r2) = (lazy.reconstruct(), mul(&formed.a, &formed_b));
        let scale = r2.frob2().sqrt();
        for (a, b) in r1.data.iter().zip(&r2.data) {
            assert!((a - b).abs() < 1e-9 * scale, "{a} vs {b}");
        }
    }

    #[test]
    fn covariance_is_x_transpose_x() {
        let x = Mat::gaussian(70, 45, 31);
        let xf: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        let mut cov = Covariance::new(45);
        cov.add(&xf[..30 * 45]);
        cov.add(&xf[30 * 45..]);
        let xr = Mat::from_f32(70, 45, &xf);
        let want = mul(&xr.transpose(), &xr);
        let got = cov.matrix();
        assert_eq!(cov.rows, 70);
        for (a, b) in got.data.iter().zip(&want.data) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn blocked_cholesky_on_a_large_matrix() {
        // 150 > one 64-column block: exercises the panel and trailing updates.
        let x = Mat::gaussian(300, 150, 41);
        let c = mul(&x.transpose(), &x);
        let l = cholesky(&c, 0.0);
        let back = mul_bt(&l, &l);
        for (a, b) in back.data.iter().zip(&c.data) {
            assert!((a - b).abs() < 1e-8 * c.frob2().sqrt());
        }
        for i in 0..150 {
            assert!(l.row(i)[i + 1..].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn whitened_factorization_beats_plain_in_the_input_metric() {
        // Inputs concentrated in a few directions: the activation-aware error must be lower.
        let w = Mat::gaussian(40, 32, 11);
        let mix = Mat::gaussian(32, 32, 12);
        let mut x = mul(&Mat::gaussian(200, 32, 13), &mix);
        for r in 0..200 {
            for c in 0..32 {
                x.data[r * 32 + c] *= if c < 4 { 10.0 } else { 0.1 };
            }
        }
        let mut cov = Covariance::new(32);
        let xf: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        cov.add(&xf);
        let c = cov.matrix();
        let s = cholesky(&c, 1e-6);
        let o = SvdOptions {
            rank: RankSpec::Rank(6),
            iters: 4,
            ..Default::default()
        };
        let out_err = |f: &Factors| {
            let d = Mat {
                rows: 40,
                cols: 32,
                data: w
                    .data
                    .iter()
                    .zip(&f.reconstruct().data)
                    .map(|(a, b)| a - b)
                    .collect(),
            };
            mul_bt(&x, &d).frob2()
        };
        let plain = out_err(&factorize(&w, None, &o));
        let white = out_err(&factorize(&w, Some(&s), &o));
        assert!(white < plain * 0.5, "whitened {white} vs plain {plain}");
    }
}
