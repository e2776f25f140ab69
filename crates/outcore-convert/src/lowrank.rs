//! Low-rank factorization of weight matrices: W (out x in) ~ A (out x k) . B (k x in).
//!
//! Randomized SVD (Halko, Martinsson, Tropp 2011): a Gaussian sketch of the range, `iters`
//! power iterations re-orthonormalised by modified Gram-Schmidt each time, then the exact SVD
//! of the small projected matrix (eigen-decomposition of its l x l Gram matrix by cyclic
//! Jacobi). The activation-aware variant (SVD-LLM) factors W.S, where S S^T = X^T X is the
//! Cholesky factor of the layer's input covariance, and folds S^-1 into B.
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
    // Four accumulators let the compiler vectorise.
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((acc, xv), yv) in s.iter_mut().zip(x).zip(y) {
            *acc += xv * yv;
        }
    }
    let mut t = s[0] + s[1] + s[2] + s[3];
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// A . B (A: m x k, B: k x n), blocked over k so a block of B rows stays in cache.
pub fn mul(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.rows, "mul: inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut c = Mat::zeros(m, n);
    const KB: usize = 64;
    c.data
        .par_chunks_mut(n.max(1))
        .enumerate()
        .for_each(|(i, out)| {
            let ar = &a.data[i * k..(i + 1) * k];
            for k0 in (0..k).step_by(KB) {
                let k1 = (k0 + KB).min(k);
                for (kk, &s) in ar.iter().enumerate().take(k1).skip(k0) {
                    if s != 0.0 {
                        for (o, &bv) in out.iter_mut().zip(&b.data[kk * n..(kk + 1) * n]) {
                            *o += s * bv;
                        }
                    }
                }
            }
        });
    c
}

/// A . B^T (A: m x k, B: n x k): dot products of rows.
pub fn mul_bt(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.cols, "mul_bt: inner dimensions");
    let (m, n) = (a.rows, b.rows);
    let mut c = Mat::zeros(m, n);
    c.data
        .par_chunks_mut(n.max(1))
        .enumerate()
        .for_each(|(i, out)| {
            let ar = a.row(i);
            for (j, o) in out.iter_mut().enumerate() {
                *o = dot(ar, b.row(j));
            }
        });
    c
}

/// Orthonormalises the rows of `q` in place (modified Gram-Schmidt, applied twice for
/// stability). Rows that vanish (rank deficiency) become zero.
pub fn orthonormalize_rows(q: &mut Mat) {
    let n = q.cols;
    for _pass in 0..2 {
        for i in 0..q.rows {
            let (done, rest) = q.data.split_at_mut(i * n);
            let r = &mut rest[..n];
            for j in 0..i {
                let qj = &done[j * n..(j + 1) * n];
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

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations. Returns eigenvalues in
/// descending order and the eigenvectors as the *columns* of the returned matrix.
pub fn sym_eigen(a: &Mat) -> (Vec<f64>, Mat) {
    let n = a.rows;
    let mut m = a.clone();
    let mut v = Mat::zeros(n, n);
    for i in 0..n {
        v.data[i * n + i] = 1.0;
    }
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m.data[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| m.data[i * n + i].powi(2)).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m.data[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let (app, aqq) = (m.data[p * n + p], m.data[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rotate rows/columns p and q of m.
                for k in 0..n {
                    let (mkp, mkq) = (m.data[k * n + p], m.data[k * n + q]);
                    m.data[k * n + p] = c * mkp - s * mkq;
                    m.data[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m.data[p * n + k], m.data[q * n + k]);
                    m.data[p * n + k] = c * mpk - s * mqk;
                    m.data[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v.data[k * n + p], v.data[k * n + q]);
                    v.data[k * n + p] = c * vkp - s * vkq;
                    v.data[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m.data[j * n + j].total_cmp(&m.data[i * n + i]));
    let vals = order.iter().map(|&i| m.data[i * n + i]).collect();
    let mut vs = Mat::zeros(n, n);
    for (c, &src) in order.iter().enumerate() {
        for r in 0..n {
            vs.data[r * n + c] = v.data[r * n + src];
        }
    }
    (vals, vs)
}

/// Lower-triangular Cholesky factor L of a symmetric positive-definite matrix (C = L L^T).
/// A diagonal `damp` (relative to the mean diagonal) is added first; it is raised tenfold until
/// the factorisation succeeds.
pub fn cholesky(c: &Mat, damp: f64) -> Mat {
    let n = c.rows;
    let mean_diag = (0..n).map(|i| c.data[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mut lambda = damp * mean_diag.max(1e-300);
    loop {
        let mut l = Mat::zeros(n, n);
        let mut ok = true;
        'outer: for j in 0..n {
            let s = c.data[j * n + j] + lambda
                - dot(&l.data[j * n..j * n + j], &l.data[j * n..j * n + j]);
            if s <= 0.0 || !s.is_finite() {
                ok = false;
                break 'outer;
            }
            let d = s.sqrt();
            l.data[j * n + j] = d;
            for i in j + 1..n {
                let v =
                    c.data[i * n + j] - dot(&l.data[i * n..i * n + j], &l.data[j * n..j * n + j]);
                l.data[i * n + j] = v / d;
            }
        }
        if ok {
            return l;
        }
        lambda = if lambda == 0.0 {
            1e-8 * mean_diag.max(1e-300)
        } else {
            lambda * 10.0
        };
    }
}

/// X = B . L^-1 for lower-triangular L (solves X L = B row by row: L^T x^T = b^T).
pub fn solve_right_lower(b: &Mat, l: &Mat) -> Mat {
    let n = l.rows;
    assert_eq!(b.cols, n);
    let mut x = b.clone();
    x.data.par_chunks_mut(n.max(1)).for_each(|row| {
        // x_j = (b_j - sum_{i>j} x_i L[i][j]) / L[j][j], from j = n-1 down.
        for j in (0..n).rev() {
            let mut s = row[j];
            for (i, &x) in row.iter().enumerate().skip(j + 1) {
                s -= x * l.data[i * n + j];
            }
            row[j] = s / l.data[j * n + j];
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

fn pick_rank(spec: RankSpec, full: usize, sigma2: &[f64], total2: f64, multiple: usize) -> usize {
    let k = match spec {
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
    let target = match whiten {
        Some(s) => mul(w, s),
        None => w.clone(),
    };
    let want = match opts.rank {
        RankSpec::Energy(_) => full,
        spec => pick_rank(spec, full, &[], 0.0, opts.rank_multiple),
    };
    let l = (want + opts.oversample).min(full);
    // Range finder on the rows of Q^T (l x m).
    let omega = Mat::gaussian(l, n, opts.seed);
    let mut qt = mul_bt(&omega, &target); // (W Omega)^T = Omega^T W^T: l x m
    orthonormalize_rows(&mut qt);
    for _ in 0..opts.iters {
        let mut zt = mul(&qt, &target); // Q^T W: l x n
        orthonormalize_rows(&mut zt);
        qt = mul_bt(&zt, &target); // (W Z)^T: l x m
        orthonormalize_rows(&mut qt);
    }
    let small = mul(&qt, &target); // Q^T W: l x n
    let gram = mul_bt(&small, &small); // l x l
    let (vals, u) = sym_eigen(&gram);
    let sigma2: Vec<f64> = vals.iter().map(|v| v.max(0.0)).collect();
    let k = match opts.rank {
        RankSpec::Energy(_) => {
            pick_rank(opts.rank, full, &sigma2, target.frob2(), opts.rank_multiple)
        }
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

    /// Adds rows (`x.len()` a multiple of n).
    pub fn add(&mut self, x: &[f32]) {
        let n = self.n;
        let rows: Vec<Vec<f64>> = x
            .chunks_exact(n)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        self.rows += rows.len() as u64;
        self.sum.par_chunks_mut(n).enumerate().for_each(|(i, out)| {
            for r in &rows {
                let ri = r[i];
                if ri != 0.0 {
                    for (o, &rj) in out[..=i].iter_mut().zip(&r[..=i]) {
                        *o += ri * rj;
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
    let memory_note = format!(
        "{} (about {} MiB per layer, {} MiB available, {} threads)",
        if parallel {
            "parallel over layers"
        } else {
            "one layer at a time"
        },
        (layer_mem + cov_mem) >> 20,
        avail >> 20,
        threads
    );
    let mut results: HashMap<String, (TensorReport, Option<Encoded>)> = HashMap::new();
    let keys: Vec<usize> = groups.keys().copied().collect();
    for batch in keys.chunks(group_layers) {
        let layers: Vec<usize> = batch.iter().copied().filter(|&l| l != usize::MAX).collect();
        // Whitening factors for this batch of layers.
        let whiten: HashMap<(usize, crate::calibrate::LinearInput), Mat> = match calib {
            Some(c) => c
                .covariances(&layers)?
                .into_iter()
                .map(|(k, cov)| (k, cholesky(&cov.matrix(), 1e-4)))
                .collect(),
            None => HashMap::new(),
        };
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
    fn jacobi_eigen_reconstructs() {
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
        let (i0, i3) = (err(8, 0), err(8, 3));
        assert!(i3 <= i0 + 1e-12, "iterations: {i0} -> {i3}");
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
        assert_eq!(pick_rank(RankSpec::Fraction(0.25), 30, &[], 0.0, 4), 8);
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
