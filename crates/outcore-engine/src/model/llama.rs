//! The llama-family forward pass (llama, mistral, qwen2), with llama.cpp's numerics:
//! activations quantized to the weight's vec-dot type inside `matmul`, F16 KV cache by default
//! (q and the attention weights rounded to f16 exactly where ggml converts them), ggml's RMSNorm,
//! RoPE and softmax arithmetic.

use outcore_format::{GgmlType, TensorView};
use outcore_kernels::ops::{self, DotOrder};
use outcore_kernels::Arith;
use rayon::prelude::*;

use crate::config::{ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::kv_cache::{KvCache, KvRows};
use crate::residency::{self, Filled};
use crate::weights::{WRef, Weights};

/// Per-call activation buffers; reused across calls (sized for the largest batch seen).
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,           // [n, d]   residual stream
    xn: Vec<f32>,          // [n, d]   normed
    q: Vec<f32>,           // [n, q_dim]
    k: Vec<f32>,           // [n, kv_dim]
    v: Vec<f32>,           // [n, kv_dim]
    att: Vec<f32>,         // [n, q_dim] attention output (heads concatenated)
    proj: Vec<f32>,        // [n, d]   attention / ffn output projection
    gate: Vec<f32>,        // [n, ff]
    up: Vec<f32>,          // [n, ff]
    rows: Vec<f32>,        // [rows, d] final normed rows whose logits are wanted
    rope: Vec<(f32, f32)>, // [n, rope_dims/2] (cos, sin) per token, shared by every layer
    rope_one: Vec<(f32, f32)>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// One sequence's part of a batch: its cache, its first position, its tokens.
pub struct SeqBatch<'a> {
    pub kv: &'a mut KvCache,
    pub pos: usize,
    pub tokens: &'a [u32],
    /// Whether logits are wanted for every token of this sequence (else only its last).
    pub all_logits: bool,
}

/// Access to the bytes behind a `WRef`, unit by unit (a layer's attention or feed-forward block,
/// or the output matrix; numbered by `residency::{attention_unit, feed_forward_unit,
/// output_unit}`). A streamed unit comes in pieces (whole tensors, in the order the forward pass
/// uses them): `begin_unit` hands out the first, `next_piece` the following ones.
pub trait WeightBytes: Sync {
    /// The bytes of `w` in the mapping.
    fn bytes(&self, w: &WRef) -> &[u8];
    /// Called before unit `u` is computed; a streamed unit's first piece comes back here.
    fn begin_unit(&self, _u: usize) -> Option<Filled> {
        None
    }
    /// Gives `prev` back and returns the unit's next piece (None after its last).
    fn next_piece(&self, _prev: Filled) -> Option<Filled> {
        None
    }
    /// Called after unit `u` is done with the piece it holds, if any.
    fn end_unit(&self, _u: usize, _f: Option<Filled>) {}
    /// The products' arithmetic.
    fn arith(&self) -> Arith {
        Arith::Exact
    }
}

/// Resolves weight bytes for one unit: from its streamed pieces when it is streamed, else the
/// mapping. Pieces are taken in order as the tensors are asked for; a tensor asked for after its
/// piece was given back (never in this forward pass's order) is read through the mapping.
struct UnitBytes<'a, B: WeightBytes + ?Sized> {
    src: &'a B,
    unit: usize,
    filled: std::cell::RefCell<Option<Filled>>,
}

impl<'a, B: WeightBytes + ?Sized> UnitBytes<'a, B> {
    fn begin(src: &'a B, unit: usize) -> Self {
        UnitBytes {
            src,
            unit,
            filled: std::cell::RefCell::new(src.begin_unit(unit)),
        }
    }

    /// Runs `f` on the bytes of `w`.
    fn with<R>(&self, w: &WRef, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut cur = self.filled.borrow_mut();
        loop {
            match cur.as_ref() {
                Some(p) if p.contains(w) => break,
                Some(p) if !p.is_last() => {
                    let prev = cur.take().expect("checked above");
                    *cur = self.src.next_piece(prev);
                }
                // A resident unit, or `w` is not ahead in the stream: the mapping.
                _ => return f(self.src.bytes(w)),
            }
        }
        let bytes = cur
            .as_ref()
            .and_then(|p| p.bytes(w))
            .expect("the piece holds w");
        f(bytes)
    }

    fn matmul(&self, w: &WRef, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        let rows = w.ne[1] as usize;
        if let Some(lr) = w.low_rank {
            let arith = self.src.arith();
            return self.with(w, |bytes| Self::low_rank(w, &lr, bytes, x, n, out, arith));
        }
        self.with(w, |bytes| {
            outcore_kernels::matmul::matmul_arith(
                &TensorView {
                    name: "",
                    ty: w.ty,
                    shape: &w.ne,
                    bytes,
                },
                &x[..n * w.ne[0] as usize],
                n,
                &mut out[..n * rows],
                self.src.arith(),
            )
            .map_err(|e| EngineError::Kernel(e.to_string()))
        })
    }

    /// W ~ A.B: two thin products, x.B^T (n x rank) then .A^T (n x rows).
    fn low_rank(
        w: &WRef,
        lr: &crate::weights::LowRank,
        bytes: &[u8],
        x: &[f32],
        n: usize,
        out: &mut [f32],
        arith: Arith,
    ) -> Result<()> {
        let rows = w.ne[1] as usize;
        let k = lr.rank;
        let (b_shape, a_shape) = ([w.ne[0], k], [k, w.ne[1]]);
        let b = TensorView {
            name: "",
            ty: lr.b_ty,
            shape: &b_shape,
            bytes: &bytes[lr.b_at..lr.b_at + lr.b_len],
        };
        let a = TensorView {
            name: "",
            ty: lr.a_ty,
            shape: &a_shape,
            bytes: &bytes[lr.a_at..lr.a_at + lr.a_len],
        };
        let mut t = vec![0f32; n * k as usize];
        let kerr = |e: outcore_kernels::KernelError| EngineError::Kernel(e.to_string());
        let mm = outcore_kernels::matmul::matmul_arith;
        mm(&b, &x[..n * w.ne[0] as usize], n, &mut t, arith).map_err(kerr)?;
        mm(&a, &t, n, &mut out[..n * rows], arith).map_err(kerr)
    }

    /// A weight vector (norm or bias) as f32.
    fn vector(&self, w: &WRef, out: &mut Vec<f32>) -> Result<()> {
        out.resize(w.ne[0] as usize, 0.0);
        self.with(w, |bytes| outcore_kernels::dequantize_row(w.ty, bytes, out))
            .map_err(|e| EngineError::Kernel(e.to_string()))
    }

    fn end(self) {}
}

impl<B: WeightBytes + ?Sized> Drop for UnitBytes<'_, B> {
    /// Gives a streamed buffer back even when the unit's computation failed part-way.
    fn drop(&mut self) {
        self.src.end_unit(self.unit, self.filled.take());
    }
}

/// ggml_rms_norm followed by ggml_mul with the weight.
fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut sum = 0.0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * g;
    }
}

thread_local! {
    /// Per-thread attention scratch (q rounded to f16, scores): no allocation per token.
    static ATT_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Attention of one query head over positions 0..=p of one kv head.
fn attend_head(
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kvh: usize,
    p: usize,
    order: DotOrder,
    out: &mut [f32],
) {
    let hd = q.len();
    let (kv_dim, n_ctx) = (kv.kv_dim, kv.n_ctx);
    let scale = 1.0 / (hd as f32).sqrt();
    ATT_SCRATCH.with(|cell| {
        let (q16, scores) = &mut *cell.borrow_mut();
        scores.clear();
        scores.resize(p + 1, 0.0);
        match (&kv.k[layer], &kv.v[layer]) {
            (KvRows::F16(k), KvRows::F16(vt)) => {
                // ggml converts q to f16 for the f16 K product, and the attention weights to f16
                // for V; with one token per call the products run as ggml_vec_dot_f16, with more
                // as llamafile's tinyBLAS (8-lane FMA chains): `ops` reproduces both orders.
                q16.clear();
                q16.extend_from_slice(q);
                ops::round_f16(q16);
                ops::attn_scores(order, q16, &k[kvh * hd..], kv_dim, scale, scores);
                ops::softmax(scores);
                ops::round_f16(scores);
                ops::attn_values(order, scores, &vt[kvh * hd * n_ctx..], n_ctx, out);
            }
            (KvRows::F32(k), KvRows::F32(vt)) => {
                for (j, s) in scores.iter_mut().enumerate() {
                    let row = &k[j * kv_dim + kvh * hd..][..hd];
                    *s = q.iter().zip(row).map(|(a, b)| a * b).sum::<f32>() * scale;
                }
                ops::softmax(scores);
                for (i, o) in out.iter_mut().enumerate() {
                    let row = &vt[(kvh * hd + i) * n_ctx..][..=p];
                    *o = scores.iter().zip(row).map(|(w, v)| w * v).sum();
                }
            }
            _ => unreachable!("K and V of one cache share a type"),
        }
    });
}

/// The input of a group of linear layers, as seen by an [`Observer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearInput {
    /// Normed residual before attention: the input of attn_q, attn_k, attn_v.
    Attn,
    /// Concatenated head outputs: the input of attn_output.
    AttnOut,
    /// Normed residual before the FFN: the input of ffn_gate, ffn_up.
    Ffn,
    /// SwiGLU product: the input of ffn_down.
    FfnDown,
}

/// Sees each linear layer's input rows during a forward pass (calibration for low-rank
/// compression). `x` holds n_tokens rows of the layer's input width.
pub trait Observer: Sync {
    fn observe(&self, layer: usize, input: LinearInput, x: &[f32]);
}

/// Runs the graph over a batch of sequences; returns, per sequence, the logits of its last token
/// (n_vocab values) or of all its tokens (n_tokens x n_vocab) when `all_logits`.
pub fn forward<B: WeightBytes + ?Sized>(
    cfg: &ModelConfig,
    w: &Weights,
    src: &B,
    seqs: &mut [SeqBatch<'_>],
    sc: &mut Scratch,
) -> Result<Vec<Vec<f32>>> {
    forward_observed(cfg, w, src, seqs, sc, None)
}

/// [`forward`] with an optional observer of the linear layers' inputs.
pub fn forward_observed<B: WeightBytes + ?Sized>(
    cfg: &ModelConfig,
    w: &Weights,
    src: &B,
    seqs: &mut [SeqBatch<'_>],
    sc: &mut Scratch,
    obs: Option<&dyn Observer>,
) -> Result<Vec<Vec<f32>>> {
    let d = cfg.n_embd;
    let (qd, kvd, ff, hd) = (cfg.q_dim(), cfg.kv_dim(), cfg.n_ff, cfg.head_dim);
    let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
    if n == 0 {
        return Ok(seqs.iter().map(|_| Vec::new()).collect());
    }
    for s in seqs.iter() {
        if s.pos + s.tokens.len() > s.kv.n_ctx {
            return Err(EngineError::ContextFull { n_ctx: s.kv.n_ctx });
        }
        if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(EngineError::BadToken {
                id: bad,
                n_vocab: cfg.n_vocab,
            });
        }
    }
    for (buf, width) in [
        (&mut sc.x, d),
        (&mut sc.xn, d),
        (&mut sc.q, qd),
        (&mut sc.k, kvd),
        (&mut sc.v, kvd),
    ] {
        grow(buf, n * width);
    }
    for (buf, width) in [
        (&mut sc.att, qd),
        (&mut sc.proj, d),
        (&mut sc.gate, ff),
        (&mut sc.up, ff),
    ] {
        grow(buf, n * width);
    }
    // (token index in batch) -> (sequence, absolute position)
    let mut tok_seq = Vec::with_capacity(n);
    for (si, s) in seqs.iter().enumerate() {
        for t in 0..s.tokens.len() {
            tok_seq.push((si, s.pos + t));
        }
    }

    // Embedding lookup (ggml_get_rows: dequantize whole rows).
    let embd = src.bytes(&w.token_embd);
    let row_bytes = w.token_embd.ty.row_bytes(d as u64).unwrap_or(0) as usize;
    for (i, &tok) in seqs.iter().flat_map(|s| s.tokens.iter()).enumerate() {
        let row = &embd[tok as usize * row_bytes..][..row_bytes];
        outcore_kernels::dequantize_row(w.token_embd.ty, row, &mut sc.x[i * d..(i + 1) * d])
            .map_err(|e| EngineError::Kernel(e.to_string()))?;
    }

    // RoPE angles once per token (ggml's rope cache), shared by every head and layer.
    sc.rope.clear();
    for &(_, p) in &tok_seq {
        ops::rope_cache(
            p,
            cfg.rope_dims,
            cfg.rope_base,
            cfg.rope_freq_scale,
            &mut sc.rope_one,
        );
        sc.rope.extend_from_slice(&sc.rope_one);
    }

    let mut norm_w = Vec::new();
    let mut bias = Vec::new();
    let group = cfg.n_head / cfg.n_head_kv;
    // llama.cpp picks the KQ/KQV kernel by the number of tokens a sequence evaluates, so a
    // sequence decoding one token inside a batch of sequences gets the one-token order (batched
    // decode then equals decoding each sequence alone). The same for every layer.
    // The fast numerics take the one-token order for every token, so a token's attention does
    // not depend on how its prompt was cut into steps either (a server slot may keep a prompt's
    // KV cache and evaluate only the rest of the next prompt, with the same bits).
    let fast = src.arith() == Arith::Fast;
    let order: Vec<DotOrder> = seqs
        .iter()
        .map(|s| match s.tokens.len() > 1 && !fast {
            true => DotOrder::TinyBlas,
            false => DotOrder::VecDotF16,
        })
        .collect();
    for (l, lw) in w.layers.iter().enumerate() {
        let ub = UnitBytes::begin(src, residency::attention_unit(l));
        // Attention block.
        ub.vector(&lw.attn_norm, &mut norm_w)?;
        for i in 0..n {
            rmsnorm(
                &sc.x[i * d..(i + 1) * d],
                &norm_w,
                cfg.rms_eps,
                &mut sc.xn[i * d..(i + 1) * d],
            );
        }
        if let Some(o) = obs {
            o.observe(l, LinearInput::Attn, &sc.xn[..n * d]);
        }
        ub.matmul(&lw.wq, &sc.xn, n, &mut sc.q)?;
        ub.matmul(&lw.wk, &sc.xn, n, &mut sc.k)?;
        ub.matmul(&lw.wv, &sc.xn, n, &mut sc.v)?;
        for (b, buf, width) in [
            (&lw.bq, &mut sc.q, qd),
            (&lw.bk, &mut sc.k, kvd),
            (&lw.bv, &mut sc.v, kvd),
        ] {
            if let Some(b) = b {
                ub.vector(b, &mut bias)?;
                for row in buf[..n * width].chunks_exact_mut(width) {
                    for (x, y) in row.iter_mut().zip(&bias) {
                        *x += y;
                    }
                }
            }
        }
        let half = cfg.rope_dims / 2;
        let neox = cfg.rope_style == RopeStyle::Neox;
        for i in 0..n {
            let cache = &sc.rope[i * half..(i + 1) * half];
            for x in sc.q[i * qd..(i + 1) * qd].chunks_exact_mut(hd) {
                ops::rope_apply(x, cache, neox);
            }
            for x in sc.k[i * kvd..(i + 1) * kvd].chunks_exact_mut(hd) {
                ops::rope_apply(x, cache, neox);
            }
        }
        // Store K/V of the whole batch first, so every token sees the ones before it.
        for (i, &(si, p)) in tok_seq.iter().enumerate() {
            let kv = &mut *seqs[si].kv;
            kv.k[l].store(p * kvd, &sc.k[i * kvd..(i + 1) * kvd]);
            let n_ctx = kv.n_ctx;
            kv.v[l].store_column(p, n_ctx, &sc.v[i * kvd..(i + 1) * kvd]);
        }
        {
            let q = &sc.q;
            let caches: Vec<&KvCache> = seqs.iter().map(|s| &*s.kv).collect();
            let (order, tok_seq) = (&order, &tok_seq);
            sc.att[..n * qd]
                .par_chunks_mut(hd)
                .enumerate()
                .for_each(|(ih, out)| {
                    let (i, h) = (ih / cfg.n_head, ih % cfg.n_head);
                    let (si, p) = tok_seq[i];
                    let qh = &q[i * qd + h * hd..][..hd];
                    attend_head(qh, caches[si], l, h / group, p, order[si], out);
                });
        }
        if let Some(o) = obs {
            o.observe(l, LinearInput::AttnOut, &sc.att[..n * qd]);
        }
        ub.matmul(&lw.wo, &sc.att, n, &mut sc.proj)?;
        for (x, y) in sc.x[..n * d].iter_mut().zip(&sc.proj[..n * d]) {
            *x += y;
        }
        ub.end();
        // Feed-forward block (SwiGLU).
        let ub = UnitBytes::begin(src, residency::feed_forward_unit(l));
        ub.vector(&lw.ffn_norm, &mut norm_w)?;
        for i in 0..n {
            rmsnorm(
                &sc.x[i * d..(i + 1) * d],
                &norm_w,
                cfg.rms_eps,
                &mut sc.xn[i * d..(i + 1) * d],
            );
        }
        if let Some(o) = obs {
            o.observe(l, LinearInput::Ffn, &sc.xn[..n * d]);
        }
        ub.matmul(&lw.w_gate, &sc.xn, n, &mut sc.gate)?;
        ub.matmul(&lw.w_up, &sc.xn, n, &mut sc.up)?;
        ops::swiglu(&mut sc.gate[..n * ff], &sc.up[..n * ff]);
        if let Some(o) = obs {
            o.observe(l, LinearInput::FfnDown, &sc.gate[..n * ff]);
        }
        ub.matmul(&lw.w_down, &sc.gate, n, &mut sc.proj)?;
        for (x, y) in sc.x[..n * d].iter_mut().zip(&sc.proj[..n * d]) {
            *x += y;
        }
        ub.end();
    }

    // Output: final norm on the rows whose logits are wanted, then the output matrix.
    let ub = UnitBytes::begin(src, residency::output_unit(w.layers.len()));
    ub.vector(&w.output_norm, &mut norm_w)?;
    let mut wanted = Vec::new();
    let mut start = 0;
    for s in seqs.iter() {
        let len = s.tokens.len();
        if s.all_logits {
            wanted.extend(start..start + len);
        } else {
            wanted.push(start + len - 1);
        }
        start += len;
    }
    grow(&mut sc.rows, wanted.len() * d);
    for (r, &i) in wanted.iter().enumerate() {
        rmsnorm(
            &sc.x[i * d..(i + 1) * d],
            &norm_w,
            cfg.rms_eps,
            &mut sc.rows[r * d..(r + 1) * d],
        );
    }
    let nv = cfg.n_vocab;
    let mut logits = vec![0f32; wanted.len() * nv];
    let r = ub.matmul(&w.output, &sc.rows, wanted.len(), &mut logits);
    ub.end();
    r?;
    let mut out = Vec::with_capacity(seqs.len());
    let mut r = 0;
    for s in seqs.iter_mut() {
        let rows = if s.all_logits { s.tokens.len() } else { 1 };
        out.push(logits[r * nv..(r + rows) * nv].to_vec());
        r += rows;
        s.pos += s.tokens.len();
    }
    Ok(out)
}

/// True when `ty` can be used as a matrix by `matmul` (every type with a vec-dot pairing).
pub fn matmul_type_ok(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K)
}
