//! llama2.c's `runq.c` forward pass for v2 int8 checkpoints, bit for bit (`--numerics runq`).
//!
//! runq.c (karpathy/llama2.c, built by its Makefile's `runq` target: `gcc -O3`, plain sequential
//! IEEE f32, no FMA contraction, glibc's expf/powf/sinf/cosf) computes a token as below; this
//! file repeats every operation in the same order, so the logits are the same bits (Rust's
//! `f32::{exp, powf, sin, cos}` call glibc's `expf`/`powf`/`sinf`/`cosf`, `sqrt` is exact and
//! `f32::round` is `roundf`):
//! - activations are quantized per group of `gs` values: `scale = max|x| / 127`,
//!   `q = (int8) roundf(x / scale)`;
//! - a matmul row sums the int8 products of a group in i32, then adds
//!   `(float) isum * w_scale * x_scale` to an f32 accumulator, group after group;
//! - RMSNorm: `ss = sum x*x` in order, `ss /= n`, `ss += eps`, `ss = 1 / sqrtf(ss)`,
//!   `o = w * (ss * x)`;
//! - RoPE on pairs (i, i+1) of q (and of k while i < kv_dim):
//!   `freq = 1 / powf(theta, (i % head_size) / (float) head_size)`, `angle = pos * freq`;
//! - f32 KV cache; a score is `q.k` summed in order, then divided by `sqrtf(head_size)`; softmax
//!   (max, `expf(x - max)` summed in order, divide); the head output adds `a_t * v_t` in position order;
//! - SwiGLU `h * (1 / (1 + expf(-h))) * u`, residual adds, final RMSNorm, the classifier.
//!
//! Two inputs runq.c hard-codes come from the checkpoint instead: the RoPE base and the RMSNorm
//! epsilon (outcore's header extension; llama2.c's 10000 and 1e-5 without it). Rows of a matmul
//! and heads of the attention are independent, so they run in parallel without changing a bit;
//! the RoPE angles are computed once per token instead of once per layer (the same values).
//!
//! The weights are read from the checkpoint file as it lies (int8 values, f32 group scales),
//! mapped apart from the re-laid-out image that the default numerics use.

use std::ops::Range;
use std::path::Path;

use outcore_format::llama2c::{Kind, Llama2cConfig, Llama2cFile};
use outcore_format::mapping::LoadMode;
use rayon::prelude::*;

use crate::error::{EngineError, Result};
use crate::kv_cache::{KvCache, KvRows};
use crate::model::llama::SeqBatch;

/// Which arithmetic the forward pass uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// llama.cpp's kernels and lane orders (the default; llama2.c checkpoints are re-laid out as Q8_0).
    #[default]
    Llamacpp,
    /// llama2.c runq.c's arithmetic, bit for bit (llama2.c v2 int8 checkpoints only).
    Runq,
    /// llama.cpp's kernels, but weight types with a sixteen-row kernel on this CPU (Q4_1 on
    /// AVX-512) take the fast arithmetic (`outcore_kernels::rows16`): batch-invariant and
    /// faster, not llama.cpp's bits. The server's default.
    Fast,
}

impl std::str::FromStr for Numerics {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "llamacpp" | "llama.cpp" | "ggml" => Ok(Numerics::Llamacpp),
            "runq" => Ok(Numerics::Runq),
            "fast" => Ok(Numerics::Fast),
            other => Err(format!(
                "unknown numerics `{other}` (expected llamacpp, fast or runq)"
            )),
        }
    }
}

/// An int8 matrix as runq.c's `QuantizedTensor`: `rows` rows of `cols` int8 values (byte range
/// `q` of the file), then one f32 scale per `gs` values (byte range `s`).
#[derive(Clone, Debug)]
struct QMat {
    q: Range<usize>,
    s: Range<usize>,
    rows: usize,
    cols: usize,
}

#[derive(Clone, Debug)]
struct Layer {
    wq: QMat,
    wk: QMat,
    wv: QMat,
    wo: QMat,
    /// FFN gate (runq's w1), down (w2), up (w3).
    w1: QMat,
    w2: QMat,
    w3: QMat,
}

/// A llama2.c checkpoint bound for the runq forward pass.
pub struct RunqModel {
    file: Llama2cFile,
    header: Llama2cConfig,
    gs: usize,
    /// RMSNorm weights: attention norms of every layer, FFN norms of every layer, final (f32).
    att_norm: Vec<Vec<f32>>,
    ffn_norm: Vec<Vec<f32>>,
    final_norm: Vec<f32>,
    embd: QMat,
    layers: Vec<Layer>,
    cls: QMat,
}

fn bad(path: &Path, what: String) -> EngineError {
    EngineError::Unsupported {
        what: format!("llama2.c checkpoint {}: {what}", path.display()),
    }
}

fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

impl RunqModel {
    /// Maps the llama2.c v2 checkpoint at `path` (`mode`: mmap, read or mlock).
    pub fn open(path: &Path, mode: LoadMode) -> Result<RunqModel> {
        if !super::llama2c::is_llama2c(path) {
            return Err(EngineError::Unsupported {
                what: format!(
                    "--numerics runq needs a llama2.c v2 int8 checkpoint (outcore export --format \
                     llama2c); {} is not one",
                    path.display()
                ),
            });
        }
        let file = Llama2cFile::open(path, mode).map_err(|e| bad(path, e.to_string()))?;
        let header = file.config().clone();
        let gs = header.group_size as usize;
        let (dim, hidden) = (header.dim as usize, header.hidden_dim as usize);
        if gs == 0 || dim % gs != 0 || hidden % gs != 0 || header.n_heads == 0 {
            return Err(bad(
                path,
                format!("group size {gs} must divide {dim} and {hidden}"),
            ));
        }
        if header.dim % header.n_heads != 0
            || header.n_kv_heads == 0
            || header.n_heads % header.n_kv_heads != 0
            || header.head_dim() % 2 != 0
        {
            return Err(bad(
                path,
                format!(
                    "dim {} with {} heads / {} kv heads is not a runq.c shape",
                    header.dim, header.n_heads, header.n_kv_heads
                ),
            ));
        }
        let find = |name: &str| {
            file.tensor(name)
                .ok_or_else(|| bad(path, format!("tensor `{name}` is missing")))
        };
        let vector = |name: &str| -> Result<Vec<f32>> {
            let t = find(name)?;
            let (data, _) = file.raw(t);
            Ok((0..data.len() / 4).map(|i| f32_at(data, i)).collect())
        };
        let qmat = |name: &str| -> Result<QMat> {
            let t = find(name)?;
            if t.kind != Kind::Q8 {
                return Err(bad(path, format!("tensor `{name}` is not int8")));
            }
            Ok(QMat {
                q: t.offset as usize..t.scales_offset as usize,
                s: t.scales_offset as usize..t.end as usize,
                rows: t.shape[1] as usize,
                cols: t.shape[0] as usize,
            })
        };
        let nl = header.n_layers as usize;
        let mut layers = Vec::with_capacity(nl);
        let (mut att_norm, mut ffn_norm) = (Vec::with_capacity(nl), Vec::with_capacity(nl));
        for l in 0..nl {
            let w = |role: &str| qmat(&format!("blk.{l}.{role}.weight"));
            att_norm.push(vector(&format!("blk.{l}.attn_norm.weight"))?);
            ffn_norm.push(vector(&format!("blk.{l}.ffn_norm.weight"))?);
            layers.push(Layer {
                wq: w("attn_q")?,
                wk: w("attn_k")?,
                wv: w("attn_v")?,
                wo: w("attn_output")?,
                w1: w("ffn_gate")?,
                w2: w("ffn_down")?,
                w3: w("ffn_up")?,
            });
        }
        let embd = qmat("token_embd.weight")?;
        let cls = if header.shared_classifier {
            embd.clone()
        } else {
            qmat("output.weight")?
        };
        let final_norm = vector("output_norm.weight")?;
        Ok(RunqModel {
            gs,
            att_norm,
            ffn_norm,
            final_norm,
            embd,
            layers,
            cls,
            header,
            file,
        })
    }

    /// The checkpoint's header.
    pub fn header(&self) -> &Llama2cConfig {
        &self.header
    }

    /// Bytes of the mapped checkpoint.
    pub fn file_bytes(&self) -> u64 {
        self.file.mapping().len() as u64
    }

    /// Runs each sequence's tokens one position at a time, as runq.c does; returns per sequence
    /// the logits of its last token, or of every token when `all_logits`. The caches must be F32.
    pub fn forward(&self, seqs: &mut [SeqBatch<'_>]) -> Result<Vec<Vec<f32>>> {
        let mut s = Scratch::new(&self.header);
        let n_vocab = self.header.vocab_size as usize;
        let kv_dim = self.header.kv_dim() as usize;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs.iter_mut() {
            let kv = &mut *seq.kv;
            if kv.kv_dim != kv_dim || kv.k.len() != self.layers.len() {
                return Err(EngineError::BadConfig {
                    what: format!(
                        "runq: KV cache of {} layers x {} does not fit the model ({} x {kv_dim})",
                        kv.k.len(),
                        kv.kv_dim,
                        self.layers.len()
                    ),
                });
            }
            let mut logits = Vec::new();
            for (i, &tok) in seq.tokens.iter().enumerate() {
                let pos = seq.pos + i;
                if pos >= kv.n_ctx {
                    return Err(EngineError::ContextFull { n_ctx: kv.n_ctx });
                }
                if tok as usize >= n_vocab {
                    return Err(EngineError::BadToken { id: tok, n_vocab });
                }
                let want = seq.all_logits || i + 1 == seq.tokens.len();
                self.token(&mut s, kv, tok as usize, pos, want)?;
                if want {
                    logits.extend_from_slice(&s.logits);
                }
            }
            out.push(logits);
        }
        Ok(out)
    }

    /// runq.c's `forward(transformer, token, pos)`; the classifier only when `logits` is wanted.
    fn token(
        &self,
        s: &mut Scratch,
        kv: &mut KvCache,
        token: usize,
        pos: usize,
        logits: bool,
    ) -> Result<()> {
        let h = &self.header;
        let bytes: &[u8] = self.file.mapping();
        let gs = self.gs;
        let dim = h.dim as usize;
        let hs = h.head_dim() as usize;
        let kv_dim = h.kv_dim() as usize;
        let n_ctx = kv.n_ctx;

        // The token's embedding row, dequantized: q * scale of its group.
        let (eq, es) = (&bytes[self.embd.q.clone()], &bytes[self.embd.s.clone()]);
        for (i, x) in s.x.iter_mut().enumerate() {
            let at = token * dim + i;
            *x = (eq[at] as i8) as f32 * f32_at(es, at / gs);
        }

        // RoPE angles of this position (runq.c recomputes them per layer: the same values).
        for (p, cs) in s.rope.iter_mut().enumerate() {
            let head_dim = (2 * p) % hs;
            let freq = 1.0f32 / h.rope_theta().powf(head_dim as f32 / hs as f32);
            let val = pos as f32 * freq;
            *cs = (val.cos(), val.sin());
        }

        for (l, w) in self.layers.iter().enumerate() {
            rmsnorm(&mut s.xb, &s.x, &self.att_norm[l], h.rms_eps());
            s.xq.quantize(&s.xb, gs);
            matmul(&mut s.q, &s.xq, &w.wq, bytes, gs);
            matmul(&mut s.k, &s.xq, &w.wk, bytes, gs);
            matmul(&mut s.v, &s.xq, &w.wv, bytes, gs);

            for (p, &(fcr, fci)) in s.rope.iter().enumerate() {
                let i = 2 * p;
                rotate(&mut s.q[i..i + 2], fcr, fci);
                if i < kv_dim {
                    rotate(&mut s.k[i..i + 2], fcr, fci);
                }
            }

            let (KvRows::F32(kc), KvRows::F32(vc)) = (&mut kv.k[l], &mut kv.v[l]) else {
                return Err(EngineError::BadConfig {
                    what: "runq numerics need an F32 KV cache".into(),
                });
            };
            kc[pos * kv_dim..(pos + 1) * kv_dim].copy_from_slice(&s.k);
            for (i, &v) in s.v.iter().enumerate() {
                vc[i * n_ctx + pos] = v;
            }
            let (kc, vc) = (&kc[..], &vc[..]);

            let kv_mul = (h.n_heads / h.n_kv_heads) as usize;
            let n_heads = h.n_heads as usize;
            if s.att.len() < n_heads * n_ctx {
                s.att.resize(n_heads * n_ctx, 0.0);
            }
            s.xb.par_chunks_mut(hs)
                .zip(s.att[..n_heads * n_ctx].par_chunks_mut(n_ctx))
                .zip(s.q.par_chunks(hs))
                .enumerate()
                .for_each(|(head, ((xb, att), q))| {
                    let kvh = (head / kv_mul) * hs;
                    let att = &mut att[..=pos];
                    scores(att, q, kc, kv_dim, kvh);
                    softmax(att);
                    weighted_sum(xb, att, vc, n_ctx, kvh);
                });

            s.xq.quantize(&s.xb, gs);
            matmul(&mut s.xb2, &s.xq, &w.wo, bytes, gs);
            for (x, d) in s.x.iter_mut().zip(&s.xb2) {
                *x += d;
            }

            rmsnorm(&mut s.xb, &s.x, &self.ffn_norm[l], h.rms_eps());
            s.xq.quantize(&s.xb, gs);
            matmul(&mut s.hb, &s.xq, &w.w1, bytes, gs);
            matmul(&mut s.hb2, &s.xq, &w.w3, bytes, gs);
            for (g, u) in s.hb.iter_mut().zip(&s.hb2) {
                let mut val = *g;
                val *= 1.0f32 / (1.0f32 + (-val).exp());
                val *= u;
                *g = val;
            }
            s.hq.quantize(&s.hb, gs);
            matmul(&mut s.xb, &s.hq, &w.w2, bytes, gs);
            for (x, d) in s.x.iter_mut().zip(&s.xb) {
                *x += d;
            }
        }

        if logits {
            rmsnorm(&mut s.xb, &s.x, &self.final_norm, h.rms_eps());
            s.xq.quantize(&s.xb, gs);
            matmul(&mut s.logits, &s.xq, &self.cls, bytes, gs);
        }
        Ok(())
    }
}

/// runq.c's `RunState`, less the KV cache (the caller's `KvCache`).
struct Scratch {
    x: Vec<f32>,   // [dim] residual stream
    xb: Vec<f32>,  // [dim]
    xb2: Vec<f32>, // [dim]
    hb: Vec<f32>,  // [hidden]
    hb2: Vec<f32>, // [hidden]
    xq: QVec,      // [dim]
    hq: QVec,      // [hidden]
    q: Vec<f32>,   // [dim]
    k: Vec<f32>,   // [kv_dim]
    v: Vec<f32>,   // [kv_dim]
    att: Vec<f32>, // [n_heads, n_ctx] scores
    logits: Vec<f32>,
    rope: Vec<(f32, f32)>, // [dim / 2] (cos, sin) of this position
}

impl Scratch {
    fn new(h: &Llama2cConfig) -> Scratch {
        let (dim, hidden) = (h.dim as usize, h.hidden_dim as usize);
        let kv_dim = h.kv_dim() as usize;
        Scratch {
            x: vec![0.0; dim],
            xb: vec![0.0; dim],
            xb2: vec![0.0; dim],
            hb: vec![0.0; hidden],
            hb2: vec![0.0; hidden],
            xq: QVec::new(dim, h.group_size as usize),
            hq: QVec::new(hidden, h.group_size as usize),
            q: vec![0.0; dim],
            k: vec![0.0; kv_dim],
            v: vec![0.0; kv_dim],
            att: Vec::new(),
            logits: vec![0.0; h.vocab_size as usize],
            rope: vec![(0.0, 0.0); dim / 2],
        }
    }
}

/// A quantized activation vector: int8 values and one f32 scale per group.
struct QVec {
    q: Vec<i8>,
    s: Vec<f32>,
}

impl QVec {
    fn new(n: usize, gs: usize) -> QVec {
        QVec {
            q: vec![0; n],
            s: vec![0.0; n / gs.max(1)],
        }
    }

    /// runq.c's `quantize`.
    fn quantize(&mut self, x: &[f32], gs: usize) {
        for ((xg, qg), s) in x
            .chunks_exact(gs)
            .zip(self.q.chunks_exact_mut(gs))
            .zip(&mut self.s)
        {
            let mut wmax = 0.0f32;
            for &v in xg {
                let a = v.abs();
                if a > wmax {
                    wmax = a;
                }
            }
            let scale = wmax / 127.0f32;
            *s = scale;
            for (q, &v) in qg.iter_mut().zip(xg) {
                *q = c_int8((v / scale).round());
            }
        }
    }
}

/// C's `(int8_t)` of a float as x86-64 does it: truncate to i32 (`cvttss2si`, whose
/// out-of-range and NaN result is i32::MIN), keep the low byte. An all-zero group gives 0/0 = NaN -> 0.
fn c_int8(v: f32) -> i8 {
    const LIM: f32 = 2_147_483_648.0;
    if v.is_nan() || !(-LIM..LIM).contains(&v) {
        0
    } else {
        v as i32 as i8
    }
}

/// runq.c's `matmul`: `out[i] = sum over groups g of (float) isum_g * w_scale * x_scale`.
fn matmul(out: &mut [f32], x: &QVec, w: &QMat, bytes: &[u8], gs: usize) {
    let (q, s) = (&bytes[w.q.clone()], &bytes[w.s.clone()]);
    let (n, groups) = (w.cols, w.cols / gs);
    debug_assert_eq!(out.len(), w.rows);
    out.par_iter_mut()
        .with_min_len(16)
        .enumerate()
        .for_each(|(i, o)| {
            let row = &q[i * n..(i + 1) * n];
            let mut val = 0.0f32;
            for (g, (wg, xg)) in row.chunks_exact(gs).zip(x.q.chunks_exact(gs)).enumerate() {
                // |product| <= 2^14, so a group of fewer than 2^17 values cannot overflow i32:
                // wrapping adds are exact and let the loop vectorize with overflow checks on.
                let ival = wg.iter().zip(xg).fold(0i32, |acc, (&w, &x)| {
                    acc.wrapping_add((w as i8 as i32) * (x as i32))
                });
                val += ival as f32 * f32_at(s, i * groups + g) * x.s[g];
            }
            *o = val;
        });
}

/// runq.c's `rmsnorm` (its epsilon 1e-5 is the checkpoint's here).
fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += eps;
    ss = 1.0f32 / ss.sqrt();
    for ((o, &w), &v) in o.iter_mut().zip(weight).zip(x) {
        *o = w * (ss * v);
    }
}

/// runq.c's attention scores: `att[t] = (q . k_t) / sqrtf(head_size)`, each dot product summed
/// in index order. Four positions run side by side (independent sums: the same bits, four
/// dependency chains in flight instead of one).
fn scores(att: &mut [f32], q: &[f32], kc: &[f32], kv_dim: usize, kvh: usize) {
    let hs = q.len();
    let scale = (hs as f32).sqrt();
    let k = |t: usize| &kc[t * kv_dim + kvh..t * kv_dim + kvh + hs];
    let mut quads = att.chunks_exact_mut(4);
    let mut t = 0;
    for out in &mut quads {
        let (k0, k1, k2, k3) = (k(t), k(t + 1), k(t + 2), k(t + 3));
        let mut sum = [0.0f32; 4];
        for ((((qi, a), b), c), d) in q.iter().zip(k0).zip(k1).zip(k2).zip(k3) {
            sum[0] += qi * a;
            sum[1] += qi * b;
            sum[2] += qi * c;
            sum[3] += qi * d;
        }
        for (o, s) in out.iter_mut().zip(sum) {
            *o = s / scale;
        }
        t += 4;
    }
    for (j, o) in quads.into_remainder().iter_mut().enumerate() {
        let mut sum = 0.0f32;
        for (qi, ki) in q.iter().zip(k(t + j)) {
            sum += qi * ki;
        }
        *o = sum / scale;
    }
}

/// runq.c's head output: `xb[i] = sum over t of att[t] * v_t[i]`, added in position order from
/// 0. V is transposed in the cache (row `kvh + i` holds v[i] of every position); eight rows run
/// side by side (independent sums: the same bits).
fn weighted_sum(xb: &mut [f32], att: &[f32], vc: &[f32], n_ctx: usize, kvh: usize) {
    let n = att.len();
    let row = |i: usize| &vc[(kvh + i) * n_ctx..(kvh + i) * n_ctx + n];
    let mut i0 = 0;
    for out in xb.chunks_mut(8) {
        if out.len() == 8 {
            let rows: [&[f32]; 8] = std::array::from_fn(|j| row(i0 + j));
            let mut acc = [0.0f32; 8];
            for (t, &a) in att.iter().enumerate() {
                for (s, r) in acc.iter_mut().zip(&rows) {
                    *s += a * r[t];
                }
            }
            out.copy_from_slice(&acc);
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (a, v) in att.iter().zip(row(i0 + j)) {
                    acc += a * v;
                }
                *o = acc;
            }
        }
        i0 += 8;
    }
}

/// runq.c's `softmax`.
fn softmax(x: &mut [f32]) {
    let mut max_val = x[0];
    for &v in &x[1..] {
        if v > max_val {
            max_val = v;
        }
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max_val).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// One RoPE pair: (v0 cos - v1 sin, v0 sin + v1 cos).
fn rotate(pair: &mut [f32], fcr: f32, fci: f32) {
    let (v0, v1) = (pair[0], pair[1]);
    pair[0] = v0 * fcr - v1 * fci;
    pair[1] = v0 * fci + v1 * fcr;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_conversion_is_x86_c() {
        assert_eq!(c_int8(127.0), 127);
        assert_eq!(c_int8(-127.0), -127);
        assert_eq!(c_int8(f32::NAN), 0);
        assert_eq!(c_int8(f32::INFINITY), 0);
        assert_eq!(c_int8(f32::NEG_INFINITY), 0);
        // Beyond int8 but inside int32: the low byte, as a C cast on x86-64 gives.
        assert_eq!(c_int8(300.0), 44);
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_zero_groups_stay_zero() {
        let mut q = QVec::new(8, 4);
        // Group 0: max 127 -> scale 1, so x / scale is x: roundf(2.5) = 3, roundf(-2.5) = -3.
        // Group 1: all zero -> scale 0, 0 / 0 = NaN -> 0.
        q.quantize(&[127.0, 2.5, -2.5, 0.49, 0.0, 0.0, 0.0, 0.0], 4);
        assert_eq!(q.s, [1.0, 0.0]);
        assert_eq!(q.q, [127, 3, -3, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn matmul_sums_groups_in_i32_then_scales() {
        // One row of 4 values in 2 groups; weight scales 0.5 and 2.0 (f32 little-endian).
        let mut bytes = vec![1u8, 2, 0xff, 3]; // int8 1, 2, -1, 3
        bytes.extend_from_slice(&0.5f32.to_le_bytes());
        bytes.extend_from_slice(&2.0f32.to_le_bytes());
        let w = QMat {
            q: 0..4,
            s: 4..12,
            rows: 1,
            cols: 4,
        };
        let x = QVec {
            q: vec![10, 20, 30, 40],
            s: vec![0.25, 4.0],
        };
        let mut out = [0.0f32];
        matmul(&mut out, &x, &w, &bytes, 2);
        // (10 + 40) * 0.5 * 0.25 + (-30 + 120) * 2 * 4
        assert_eq!(out[0], 50.0 * 0.5 * 0.25 + 90.0 * 2.0 * 4.0);
    }

    #[test]
    fn numerics_parse() {
        assert_eq!("runq".parse::<Numerics>(), Ok(Numerics::Runq));
        assert_eq!("llamacpp".parse::<Numerics>(), Ok(Numerics::Llamacpp));
        assert_eq!("fast".parse::<Numerics>(), Ok(Numerics::Fast));
        assert!("quick".parse::<Numerics>().is_err());
    }
}
