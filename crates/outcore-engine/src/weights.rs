//! Binding weights by role: each tensor becomes a `WRef` (shard, byte range, type, shape) into a mapping.
//! The forward pass turns a `WRef` back into a `TensorView` borrowed from the mapping: never a copy.

use outcore_format::{GgmlType, TensorView};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::names::{self, Need, Role, Scheme};

/// Where a tensor's bytes lie: mapping number `shard`, `offset..offset+len`.
#[derive(Clone, Copy, Debug)]
pub struct WRef {
    pub shard: usize,
    pub offset: usize,
    pub len: usize,
    pub ty: GgmlType,
    /// ggml order: ne[0] = row length, ne[1] = rows (1 for vectors).
    pub ne: [u64; 2],
    /// Set when the role is bound to a low-rank pair W ~ A.B (`NAME.lr_a`, `NAME.lr_b`, written by
    /// `outcore compress`): `offset..offset+len` then spans both factors and `ty` is A's type.
    pub low_rank: Option<LowRank>,
}

/// Where the two factors of a low-rank weight lie inside its `WRef` span. A is `[rank, rows]`
/// (ggml order), B is `[row length, rank]`; the forward pass computes (x.B^T).A^T.
#[derive(Clone, Copy, Debug)]
pub struct LowRank {
    pub rank: u64,
    pub a_ty: GgmlType,
    /// Start of A's bytes relative to the span start, and their length.
    pub a_at: usize,
    pub a_len: usize,
    pub b_ty: GgmlType,
    pub b_at: usize,
    pub b_len: usize,
}

impl WRef {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: WRef,
    pub wq: WRef,
    pub wk: WRef,
    pub wv: WRef,
    pub wo: WRef,
    pub bq: Option<WRef>,
    pub bk: Option<WRef>,
    pub bv: Option<WRef>,
    pub ffn_norm: WRef,
    pub w_gate: WRef,
    pub w_up: WRef,
    pub w_down: WRef,
}

impl LayerWeights {
    /// The attention block's tensors in the order the forward pass uses them (norm, q/k/v,
    /// biases, o): one streaming unit, streamed piece by piece in this order.
    pub fn attention(&self) -> impl Iterator<Item = &WRef> {
        [
            Some(&self.attn_norm),
            Some(&self.wq),
            Some(&self.wk),
            Some(&self.wv),
            self.bq.as_ref(),
            self.bk.as_ref(),
            self.bv.as_ref(),
            Some(&self.wo),
        ]
        .into_iter()
        .flatten()
    }

    /// The feed-forward block's tensors in the order the forward pass uses them (norm, gate, up,
    /// down): the other streaming unit.
    pub fn feed_forward(&self) -> impl Iterator<Item = &WRef> {
        [&self.ffn_norm, &self.w_gate, &self.w_up, &self.w_down].into_iter()
    }

    /// Every tensor of the layer (for residency accounting and prefetch).
    pub fn all(&self) -> impl Iterator<Item = &WRef> {
        self.attention().chain(self.feed_forward())
    }

    pub fn bytes(&self) -> u64 {
        self.all().map(|w| w.len as u64).sum()
    }
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub token_embd: WRef,
    pub output_norm: WRef,
    pub output: WRef,
    pub output_tied: bool,
    pub layers: Vec<LayerWeights>,
}

/// What a weight source must offer: name lookup and the mappings behind the views.
pub trait TensorLookup {
    fn lookup(&self, name: &str) -> Result<Option<TensorView<'_>>>;
    /// Base address range of each mapping, to locate a view's bytes.
    fn shard_bases(&self) -> Vec<(usize, usize)>;
}

fn locate(bases: &[(usize, usize)], bytes: &[u8]) -> Option<(usize, usize)> {
    let p = bytes.as_ptr() as usize;
    bases
        .iter()
        .enumerate()
        .find(|(_, &(base, len))| p >= base && p + bytes.len() <= base + len)
        .map(|(i, &(base, _))| (i, p - base))
}

struct Binder<'s, S: TensorLookup> {
    src: &'s S,
    scheme: Scheme,
    bases: Vec<(usize, usize)>,
    arch: &'static str,
}

impl<S: TensorLookup> Binder<'_, S> {
    /// A role stored as a low-rank pair `NAME.lr_a` [rank, rows] + `NAME.lr_b` [cols, rank].
    fn get_low_rank(&self, name: &str, expect: &[u64]) -> Result<Option<WRef>> {
        let (Some(a), Some(b)) = (
            self.src.lookup(&format!("{name}.lr_a"))?,
            self.src.lookup(&format!("{name}.lr_b"))?,
        ) else {
            return Ok(None);
        };
        let rank = a.shape[0];
        let rows = expect.get(1).copied().unwrap_or(1);
        if expect.len() != 2 || a.shape != [rank, rows] || b.shape != [expect[0], rank] {
            return Err(EngineError::TensorShape {
                name: format!("{name}.lr_a/.lr_b"),
                expected: expect.to_vec(),
                found: [a.shape, b.shape].concat(),
            });
        }
        let at = |v: &TensorView<'_>| {
            locate(&self.bases, v.bytes).ok_or_else(|| EngineError::Unsupported {
                what: format!("tensor `{name}` factor does not lie in a mapping"),
            })
        };
        let ((sa, oa), (sb, ob)) = (at(&a)?, at(&b)?);
        if sa != sb {
            return Err(EngineError::Unsupported {
                what: format!("low-rank factors of `{name}` lie in different shards"),
            });
        }
        let start = oa.min(ob);
        let end = (oa + a.bytes.len()).max(ob + b.bytes.len());
        Ok(Some(WRef {
            shard: sa,
            offset: start,
            len: end - start,
            ty: a.ty,
            ne: [expect[0], rows],
            low_rank: Some(LowRank {
                rank,
                a_ty: a.ty,
                a_at: oa - start,
                a_len: a.bytes.len(),
                b_ty: b.ty,
                b_at: ob - start,
                b_len: b.bytes.len(),
            }),
        }))
    }

    fn get(&self, role: Role, layer: usize, expect: &[u64]) -> Result<Option<WRef>> {
        let name = names::name(self.scheme, role, layer);
        let Some(view) = self.src.lookup(&name)? else {
            return self.get_low_rank(&name, expect);
        };
        let shape: Vec<u64> = view.shape.to_vec();
        let mut want = expect.to_vec();
        // A 2-D expectation also matches a stored [n, 1] vector shape and vice versa.
        while want.len() > 1 && want.last() == Some(&1) {
            want.pop();
        }
        let mut got = shape.clone();
        while got.len() > 1 && got.last() == Some(&1) {
            got.pop();
        }
        if got != want {
            return Err(EngineError::TensorShape {
                name,
                expected: expect.to_vec(),
                found: shape,
            });
        }
        let (shard, offset) =
            locate(&self.bases, view.bytes).ok_or_else(|| EngineError::Unsupported {
                what: format!("tensor `{name}` does not lie in a mapping"),
            })?;
        Ok(Some(WRef {
            shard,
            offset,
            len: view.bytes.len(),
            ty: view.ty,
            ne: [expect[0], expect.get(1).copied().unwrap_or(1)],
            low_rank: None,
        }))
    }

    fn need(&self, role: Role, layer: usize, expect: &[u64]) -> Result<WRef> {
        self.get(role, layer, expect)?
            .ok_or_else(|| EngineError::MissingTensor {
                name: names::name(self.scheme, role, layer),
                arch: self.arch,
            })
    }
}

/// Binds every tensor of the llama-family graph, checking shapes against the config.
pub fn bind<S: TensorLookup>(src: &S, scheme: Scheme, cfg: &ModelConfig) -> Result<Weights> {
    let b = Binder {
        src,
        scheme,
        bases: src.shard_bases(),
        arch: cfg.arch.name(),
    };
    let (d, v, ff) = (cfg.n_embd as u64, cfg.n_vocab as u64, cfg.n_ff as u64);
    let (qd, kvd) = (cfg.q_dim() as u64, cfg.kv_dim() as u64);
    let token_embd = b.need(Role::TokenEmbd, 0, &[d, v])?;
    let output_norm = b.need(Role::OutputNorm, 0, &[d])?;
    let (output, output_tied) = match b.get(Role::Output, 0, &[d, v])? {
        Some(w) => (w, false),
        None => {
            debug_assert_eq!(names::row(Role::Output).need, Need::TiedTo(Role::TokenEmbd));
            (token_embd, true)
        }
    };
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for l in 0..cfg.n_layer {
        let bias = |role, n| -> Result<Option<WRef>> {
            if cfg.qkv_bias {
                b.need(role, l, &[n]).map(Some)
            } else {
                Ok(None)
            }
        };
        layers.push(LayerWeights {
            attn_norm: b.need(Role::AttnNorm, l, &[d])?,
            wq: b.need(Role::AttnQ, l, &[d, qd])?,
            wk: b.need(Role::AttnK, l, &[d, kvd])?,
            wv: b.need(Role::AttnV, l, &[d, kvd])?,
            wo: b.need(Role::AttnOut, l, &[qd, d])?,
            bq: bias(Role::AttnQBias, qd)?,
            bk: bias(Role::AttnKBias, kvd)?,
            bv: bias(Role::AttnVBias, kvd)?,
            ffn_norm: b.need(Role::FfnNorm, l, &[d])?,
            w_gate: b.need(Role::FfnGate, l, &[d, ff])?,
            w_up: b.need(Role::FfnUp, l, &[d, ff])?,
            w_down: b.need(Role::FfnDown, l, &[ff, d])?,
        });
    }
    let w = Weights {
        token_embd,
        output_norm,
        output,
        output_tied,
        layers,
    };
    for wr in
        w.layers
            .iter()
            .flat_map(|l| l.all())
            .chain([&w.token_embd, &w.output_norm, &w.output])
    {
        check_type(wr)?;
    }
    Ok(w)
}

fn check_type(w: &WRef) -> Result<()> {
    if let Some(lr) = w.low_rank {
        for ty in [lr.a_ty, lr.b_ty] {
            check_type(&WRef {
                ty,
                low_rank: None,
                ..*w
            })?;
        }
    }
    match w.ty {
        GgmlType::Q8_1 | GgmlType::Q8_K => Err(EngineError::TensorType {
            name: format!("{w:?}"),
            ty: w.ty,
        }),
        _ => Ok(()),
    }
}
