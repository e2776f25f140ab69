//! The KV cache of one sequence: per layer, K and V rows for every position, in F16 (llama.cpp's default) or F32.

use half::f16;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    #[default]
    F16,
    F32,
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            other => Err(format!(
                "unknown cache type `{other}` (expected f16 or f32)"
            )),
        }
    }
}

impl CacheType {
    pub fn bytes_per_value(self) -> usize {
        match self {
            CacheType::F16 => 2,
            CacheType::F32 => 4,
        }
    }
}

/// One layer's K (`n_ctx` rows of `kv_dim` values) or V, stored transposed like llama.cpp's
/// `v_trans` cache (`kv_dim` rows of `n_ctx` values), so each attention product reads contiguous rows.
pub enum KvRows {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvRows {
    fn new(ty: CacheType, n: usize) -> KvRows {
        match ty {
            CacheType::F16 => KvRows::F16(vec![f16::ZERO; n]),
            CacheType::F32 => KvRows::F32(vec![0.0; n]),
        }
    }

    /// Stores `src` at element offset `at`.
    pub fn store(&mut self, at: usize, src: &[f32]) {
        match self {
            KvRows::F16(v) => {
                for (d, s) in v[at..at + src.len()].iter_mut().zip(src) {
                    *d = f16::from_f32(*s);
                }
            }
            KvRows::F32(v) => v[at..at + src.len()].copy_from_slice(src),
        }
    }

    /// Stores `src` as column `pos` of rows of length `row_len` (transposed V).
    pub fn store_column(&mut self, pos: usize, row_len: usize, src: &[f32]) {
        match self {
            KvRows::F16(v) => {
                for (i, s) in src.iter().enumerate() {
                    v[i * row_len + pos] = f16::from_f32(*s);
                }
            }
            KvRows::F32(v) => {
                for (i, s) in src.iter().enumerate() {
                    v[i * row_len + pos] = *s;
                }
            }
        }
    }
}

pub struct KvCache {
    pub ty: CacheType,
    pub n_ctx: usize,
    pub kv_dim: usize,
    /// Per layer: position-major K rows.
    pub k: Vec<KvRows>,
    /// Per layer: V transposed (`kv_dim` rows of `n_ctx` positions).
    pub v: Vec<KvRows>,
}

impl KvCache {
    pub fn new(ty: CacheType, n_layer: usize, n_ctx: usize, kv_dim: usize) -> KvCache {
        KvCache {
            ty,
            n_ctx,
            kv_dim,
            k: (0..n_layer)
                .map(|_| KvRows::new(ty, n_ctx * kv_dim))
                .collect(),
            v: (0..n_layer)
                .map(|_| KvRows::new(ty, n_ctx * kv_dim))
                .collect(),
        }
    }

    /// Bytes the cache holds for a model shape (for planning).
    pub fn bytes_for(ty: CacheType, n_layer: usize, n_ctx: usize, kv_dim: usize) -> u64 {
        2 * (n_layer * n_ctx * kv_dim * ty.bytes_per_value()) as u64
    }

    pub fn bytes(&self) -> u64 {
        Self::bytes_for(self.ty, self.k.len(), self.n_ctx, self.kv_dim)
    }
}
