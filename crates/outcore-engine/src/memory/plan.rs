//! The load planner: a pure function from model sizes, memory limits and the user's request
//! to a load strategy. No I/O here, so every branch is unit-tested with synthetic numbers;
//! [`super::probe`] supplies the limits and the model loader supplies the sizes.
//!
//! The budget is what the binding limit leaves after the KV cache, scratch buffers and a
//! safety margin. What must fit in it depends on the strategy:
//! - mmap (and streaming): the *hot* set, i.e. every layer plus the hot non-layer tensors. The
//!   token-embedding table is touched one row per token, so when the output matrix is separate
//!   ("untied") the embedding table is cold and does not count; when they are tied, the table
//!   is the output matrix and is read in full every token.
//! - read (`--no-mmap`) and mlock: every byte of the file, since all of it is copied or locked.
//!
//! When the hot set does not fit, the leading layers stay resident and the rest are streamed
//! from disk each token, with room reserved for one streamed layer in flight.

use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

use super::fmt_bytes;
use super::probe::{Figure, MemLimits};

/// Headroom kept free beyond KV cache and scratch (allocator slack, thread stacks, the
/// tokenizer, page tables).
pub const SAFETY_MARGIN: u64 = 64 << 20;

/// How the user asked for the weights to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadStrategy {
    Mmap,
    Read,
    Mlock,
    Stream,
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Strategy {
    /// Map the file; the hot set fits in memory.
    Mmap,
    /// Copy the file into anonymous memory (`--no-mmap`).
    Read,
    /// Map and lock every page.
    Mlock,
    /// Keep `resident_layers` in memory; re-read `streamed_layers` from disk every token.
    Stream {
        resident_layers: Range<usize>,
        streamed_layers: Range<usize>,
    },
}

impl Strategy {
    pub fn kind(&self) -> LoadStrategy {
        match self {
            Strategy::Mmap => LoadStrategy::Mmap,
            Strategy::Read => LoadStrategy::Read,
            Strategy::Mlock => LoadStrategy::Mlock,
            Strategy::Stream { .. } => LoadStrategy::Stream,
        }
    }
}

/// Byte sizes of one model, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSizes {
    /// Size of the model file(s) on disk.
    pub file_bytes: u64,
    /// Weight bytes of each transformer block (`blk.N.*`), index = layer.
    pub layer_bytes: Vec<u64>,
    /// The token-embedding table (`token_embd.weight`).
    pub token_embd_bytes: u64,
    /// The output matrix (`output.weight`); `None` when tied to the embedding table.
    pub output_bytes: Option<u64>,
    /// Every other non-layer tensor (final norm, rope factors, ...).
    pub other_bytes: u64,
    /// KV cache bytes per context position over all layers:
    /// [`kv_cache_bytes`]`(n_layers, 1, n_kv_heads, head_dim, bytes_per_value)`.
    pub kv_bytes_per_token: u64,
    /// Activation and logit buffers, see [`scratch_estimate`].
    pub scratch_bytes: u64,
    /// The largest piece streamed at once (a streaming buffer's size: the residency manager
    /// streams pieces of whole tensors); 0 = whole layers.
    pub max_piece_bytes: u64,
}

impl ModelSizes {
    /// Sorts tensor sizes by GGUF name: `blk.N.*` into layer N, `token_embd.weight`,
    /// `output.weight` (absent = tied), everything else into `other_bytes`.
    pub fn from_tensor_sizes<S: AsRef<str>>(
        file_bytes: u64,
        tensors: impl IntoIterator<Item = (S, u64)>,
        kv_bytes_per_token: u64,
        scratch_bytes: u64,
    ) -> Self {
        let mut s = ModelSizes {
            file_bytes,
            layer_bytes: Vec::new(),
            token_embd_bytes: 0,
            output_bytes: None,
            other_bytes: 0,
            kv_bytes_per_token,
            scratch_bytes,
            max_piece_bytes: 0,
        };
        for (name, bytes) in tensors {
            let name = name.as_ref();
            let layer = name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(n, _)| n.parse::<usize>().ok());
            match (layer, name) {
                (Some(i), _) => {
                    if s.layer_bytes.len() <= i {
                        s.layer_bytes.resize(i + 1, 0);
                    }
                    s.layer_bytes[i] = s.layer_bytes[i].saturating_add(bytes);
                }
                (None, "token_embd.weight") => s.token_embd_bytes = bytes,
                (None, "output.weight") => s.output_bytes = Some(bytes),
                (None, _) => s.other_bytes = s.other_bytes.saturating_add(bytes),
            }
        }
        s
    }

    pub fn n_layers(&self) -> usize {
        self.layer_bytes.len()
    }

    pub fn layers_total(&self) -> u64 {
        self.layer_bytes.iter().fold(0, |a, &b| a.saturating_add(b))
    }

    /// Non-layer bytes read in full every token: the output matrix (the embedding table when
    /// tied) and the small tensors.
    pub fn hot_non_layer(&self) -> u64 {
        self.output_bytes
            .unwrap_or(self.token_embd_bytes)
            .saturating_add(self.other_bytes)
    }

    /// Non-layer bytes touched one row per token: the embedding table when untied, else 0.
    pub fn cold_non_layer(&self) -> u64 {
        if self.output_bytes.is_some() {
            self.token_embd_bytes
        } else {
            0
        }
    }

    /// What mmap must keep resident to avoid re-reading from disk each token.
    pub fn hot_bytes(&self) -> u64 {
        self.hot_non_layer().saturating_add(self.layers_total())
    }

    /// What read/mlock hold: every tensor byte (at least the file size).
    pub fn all_bytes(&self) -> u64 {
        self.hot_bytes()
            .saturating_add(self.cold_non_layer())
            .max(self.file_bytes)
    }
}

/// K and V cache bytes for `n_ctx` positions: `2 * n_layers * n_ctx * n_kv_heads * head_dim *
/// bytes_per_value` (2 for an f16 cache, 4 for f32), saturating instead of overflowing.
pub fn kv_cache_bytes(
    n_layers: usize,
    n_ctx: usize,
    n_kv_heads: usize,
    head_dim: usize,
    bytes_per_value: usize,
) -> u64 {
    [n_layers, n_ctx, n_kv_heads, head_dim, bytes_per_value]
        .iter()
        .fold(2u64, |acc, &x| acc.saturating_mul(x as u64))
}

/// A rough upper bound on the f32 working buffers of one forward pass over `n_batch` tokens:
/// the residual stream and its temporaries (4 x n_embd), the FFN hidden pair (2 x n_ff),
/// the attention scores (n_heads x n_ctx) per token, and one row of logits.
pub fn scratch_estimate(
    n_embd: usize,
    n_ff: usize,
    n_heads: usize,
    n_vocab: usize,
    n_ctx: usize,
    n_batch: usize,
) -> u64 {
    let per_token = (4 * n_embd as u64)
        .saturating_add(2 * n_ff as u64)
        .saturating_add((n_heads as u64).saturating_mul(n_ctx as u64));
    per_token
        .saturating_mul(n_batch.max(1) as u64)
        .saturating_add(n_vocab as u64)
        .saturating_mul(4)
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRequest {
    /// Context length the KV cache is sized for.
    pub n_ctx: usize,
    /// `--max-ram`: a cap below what the system reports.
    pub max_ram: Option<u64>,
    /// Use this strategy no matter what (warnings say when it will hurt).
    pub force: Option<LoadStrategy>,
    /// `--no-mmap`: copy the weights when they fit.
    pub no_mmap: bool,
    /// `--mlock`: lock the weights when they fit and the rlimit allows.
    pub mlock: bool,
}

impl PlanRequest {
    pub fn new(n_ctx: usize) -> Self {
        PlanRequest {
            n_ctx,
            max_ram: None,
            force: None,
            no_mmap: false,
            mlock: false,
        }
    }
}

/// The planner's decision and every figure behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub strategy: Strategy,
    /// One sentence: why this strategy.
    pub reason: String,
    pub file_bytes: u64,
    pub n_layers: usize,
    pub n_ctx: usize,
    /// The binding system figure (MemAvailable, cgroup, rlimit).
    pub available: Figure,
    pub max_ram: Option<u64>,
    /// `min(available, max_ram)`.
    pub limit: u64,
    pub limited_by_max_ram: bool,
    pub kv_bytes: u64,
    pub scratch_bytes: u64,
    pub margin_bytes: u64,
    /// `limit - kv - scratch - margin`: what the weights may occupy.
    pub budget: u64,
    pub hot_non_layer_bytes: u64,
    /// Embedding table when untied: mapped, but touched one row per token.
    pub cold_non_layer_bytes: u64,
    /// Weight bytes read from memory per token (hot non-layer + resident layers).
    pub resident_bytes: u64,
    /// Weight bytes read from disk per token (streamed layers).
    pub streamed_bytes: u64,
    /// Memory kept for the streamed layer in flight (0 unless streaming).
    pub window_bytes: u64,
    /// The least `limit` that can run at all: KV + scratch + margin + hot non-layer + largest
    /// streamed unit.
    pub min_required: u64,
    pub warnings: Vec<String>,
    /// Set when even `min_required` does not fit: loading will most likely fail or be killed.
    pub error: Option<String>,
}

/// Decides how to load a model of `sizes` under `limits` for `req`. Pure: same inputs, same plan.
pub fn plan(sizes: &ModelSizes, limits: &MemLimits, req: &PlanRequest) -> Plan {
    let available = limits.effective();
    let limit = req
        .max_ram
        .map_or(available.bytes, |m| m.min(available.bytes));
    let limited_by_max_ram = req.max_ram.is_some_and(|m| m < available.bytes);
    let kv = sizes.kv_bytes_per_token.saturating_mul(req.n_ctx as u64);
    let overhead = kv
        .saturating_add(sizes.scratch_bytes)
        .saturating_add(SAFETY_MARGIN);
    let budget = limit.saturating_sub(overhead);
    let hot = sizes.hot_bytes();
    let all = sizes.all_bytes();
    let hot_nl = sizes.hot_non_layer();
    let largest_layer = sizes.layer_bytes.iter().copied().max().unwrap_or(0);
    // One streamed piece in flight: the largest layer, or the largest piece when known.
    let max_layer = match sizes.max_piece_bytes {
        0 => largest_layer,
        u => u.min(largest_layer),
    };
    let min_required = overhead.saturating_add(hot_nl).saturating_add(max_layer);
    let n = sizes.n_layers();

    let mut warnings = Vec::new();
    let b = fmt_bytes;
    let fits_all = all <= budget;
    let fits_hot = hot <= budget;
    let lockable = limits.can_mlock(all);
    let memlock = limits
        .rlimit_memlock
        .map_or("unlimited".to_string(), fmt_bytes);

    let (strategy, reason) = match req.force {
        Some(LoadStrategy::Mmap) => {
            if !fits_hot {
                warnings.push(format!(
                    "forced mmap: hot set {} exceeds the budget {}; pages will be evicted and re-read every token",
                    b(hot),
                    b(budget)
                ));
            }
            (Strategy::Mmap, "mmap forced by the user".to_string())
        }
        Some(LoadStrategy::Read) => {
            if !fits_all {
                warnings.push(format!(
                    "forced --no-mmap: copying {} exceeds the budget {}; expect swapping or the OOM killer",
                    b(all),
                    b(budget)
                ));
            }
            (
                Strategy::Read,
                "read (--no-mmap) forced by the user".to_string(),
            )
        }
        Some(LoadStrategy::Mlock) => {
            if !fits_all {
                warnings.push(format!(
                    "forced mlock: locking {} exceeds the budget {}; expect the OOM killer",
                    b(all),
                    b(budget)
                ));
            }
            if !lockable {
                warnings.push(format!(
                    "forced mlock: {} exceeds RLIMIT_MEMLOCK {memlock} without CAP_IPC_LOCK; locking will fail",
                    b(all)
                ));
            }
            (Strategy::Mlock, "mlock forced by the user".to_string())
        }
        Some(LoadStrategy::Stream) => {
            let s = split(sizes, budget, max_layer);
            let r = format!("streaming forced by the user: {}", s.1);
            (s.0, r)
        }
        None => {
            let mut choice = None;
            if req.mlock {
                if fits_all && lockable {
                    choice = Some((
                        Strategy::Mlock,
                        format!(
                            "--mlock: {} fits the budget {} and may be locked",
                            b(all),
                            b(budget)
                        ),
                    ));
                } else if !fits_all {
                    warnings.push(format!(
                        "--mlock ignored: {} does not fit the budget {}",
                        b(all),
                        b(budget)
                    ));
                } else {
                    warnings.push(format!(
                        "--mlock ignored: {} exceeds RLIMIT_MEMLOCK {memlock} (raise it with `ulimit -l`, or run with CAP_IPC_LOCK)",
                        b(all)
                    ));
                }
            }
            if choice.is_none() && req.no_mmap {
                if fits_all {
                    choice = Some((
                        Strategy::Read,
                        format!("--no-mmap: {} fits the budget {}", b(all), b(budget)),
                    ));
                } else {
                    warnings.push(format!(
                        "--no-mmap ignored: copying {} would not fit the budget {}",
                        b(all),
                        b(budget)
                    ));
                }
            }
            choice.unwrap_or_else(|| {
                if fits_hot {
                    (
                        Strategy::Mmap,
                        format!("hot set {} fits the budget {}", b(hot), b(budget)),
                    )
                } else {
                    split(sizes, budget, max_layer)
                }
            })
        }
    };

    let (resident_bytes, streamed_bytes, window_bytes) = match &strategy {
        Strategy::Stream {
            resident_layers,
            streamed_layers,
        } => {
            let sum = |r: &Range<usize>| {
                sizes.layer_bytes[r.clone()]
                    .iter()
                    .fold(0u64, |a, &x| a.saturating_add(x))
            };
            let window = if streamed_layers.is_empty() {
                0
            } else {
                max_layer
            };
            (
                hot_nl.saturating_add(sum(resident_layers)),
                sum(streamed_layers),
                window,
            )
        }
        _ => (hot, 0, 0),
    };

    let error = (limit < min_required).then(|| {
        format!(
            "not enough memory: {} available ({}) but even streaming every layer needs {} \
             (KV cache {} + scratch {} + margin {} + hot non-layer tensors {} + largest streamed piece {})",
            b(limit),
            if limited_by_max_ram {
                "--max-ram".to_string()
            } else {
                available.source.to_string()
            },
            b(min_required),
            b(kv),
            b(sizes.scratch_bytes),
            b(SAFETY_MARGIN),
            b(hot_nl),
            b(max_layer)
        )
    });

    Plan {
        strategy,
        reason,
        file_bytes: sizes.file_bytes,
        n_layers: n,
        n_ctx: req.n_ctx,
        available,
        max_ram: req.max_ram,
        limit,
        limited_by_max_ram,
        kv_bytes: kv,
        scratch_bytes: sizes.scratch_bytes,
        margin_bytes: SAFETY_MARGIN,
        budget,
        hot_non_layer_bytes: hot_nl,
        cold_non_layer_bytes: sizes.cold_non_layer(),
        resident_bytes,
        streamed_bytes,
        window_bytes,
        min_required,
        warnings,
        error,
    }
}

/// Keeps the longest prefix of layers that fits `budget` after the hot non-layer tensors and
/// one streamed layer in flight; streams the rest.
fn split(sizes: &ModelSizes, budget: u64, max_layer: u64) -> (Strategy, String) {
    let n = sizes.n_layers();
    let hot_nl = sizes.hot_non_layer();
    let all_layers_fit = sizes.hot_bytes() <= budget;
    // No window is needed when nothing will be streamed.
    let window = if all_layers_fit { 0 } else { max_layer };
    let mut room = budget.saturating_sub(hot_nl).saturating_sub(window);
    let mut k = 0;
    for &l in &sizes.layer_bytes {
        if l > room {
            break;
        }
        room -= l;
        k += 1;
    }
    let reason = format!(
        "hot set {} exceeds the budget {}: {k} of {n} layers stay resident, {} are streamed from disk",
        fmt_bytes(sizes.hot_bytes()),
        fmt_bytes(budget),
        n - k
    );
    (
        Strategy::Stream {
            resident_layers: 0..k,
            streamed_layers: k..n,
        },
        reason,
    )
}

fn layer_range(r: &Range<usize>) -> String {
    match r.len() {
        0 => "no layers".to_string(),
        1 => format!("layer {}", r.start),
        _ => format!("layers {}-{}", r.start, r.end - 1),
    }
}

impl Plan {
    /// One paragraph for humans, e.g. `model 1.8 GB, available 0.9 GB (cgroup v1 limit),
    /// resident budget 0.7 GB = layers 0-11, streaming layers 12-23 (...)`.
    pub fn summary(&self) -> String {
        let b = fmt_bytes;
        let mut s = format!(
            "model {}, available {} (",
            b(self.file_bytes),
            b(self.limit)
        );
        if self.limited_by_max_ram {
            let _ = write!(
                s,
                "--max-ram; system {} {}",
                b(self.available.bytes),
                self.available.source
            );
        } else {
            let _ = write!(s, "{}", self.available.source);
        }
        let _ = write!(s, "), resident budget {}", b(self.budget));
        match &self.strategy {
            Strategy::Stream {
                resident_layers,
                streamed_layers,
            } => {
                let _ = write!(s, " = {}", layer_range(resident_layers));
                if streamed_layers.is_empty() {
                    let _ = write!(s, ", streaming nothing");
                } else {
                    let _ = write!(
                        s,
                        ", streaming {} ({} from disk per token)",
                        layer_range(streamed_layers),
                        b(self.streamed_bytes)
                    );
                }
            }
            other => {
                let name = match other {
                    Strategy::Mmap => "mmap",
                    Strategy::Read => "read into memory (--no-mmap)",
                    _ => "mmap + mlock",
                };
                let _ = write!(s, ": {name}, all {} layers resident", self.n_layers);
            }
        }
        let _ = write!(
            s,
            ". KV cache {} for {} tokens, scratch {}, margin {}",
            b(self.kv_bytes),
            self.n_ctx,
            b(self.scratch_bytes),
            b(self.margin_bytes)
        );
        if self.cold_non_layer_bytes > 0 {
            let _ = write!(
                s,
                "; token embeddings ({}) not counted: touched one row per token",
                b(self.cold_non_layer_bytes)
            );
        }
        let mut reason = self.reason.chars();
        if let Some(first) = reason.next() {
            let _ = write!(s, ". {}{}.", first.to_uppercase(), reason.as_str());
        }
        for w in &self.warnings {
            let _ = write!(s, " Warning: {w}.");
        }
        if let Some(e) = &self.error {
            let _ = write!(s, " Error: {e}.");
        }
        s
    }
}

/// Tokens per second if decoding is bound by reading weights: each token reads the resident
/// bytes at memory bandwidth and the streamed bytes at disk bandwidth,
/// `1 / (resident / mem_bw + streamed / disk_bw)`. Bandwidths are in bytes/s; a zero or
/// negative bandwidth that some bytes depend on gives 0, and a plan that reads nothing gives
/// infinity.
pub fn predict_tokens_per_s(plan: &Plan, mem_bw_bytes_s: f64, disk_bw_bytes_s: f64) -> f64 {
    let part = |bytes: u64, bw: f64| -> Option<f64> {
        match bytes {
            0 => Some(0.0),
            _ if bw > 0.0 => Some(bytes as f64 / bw),
            _ => None,
        }
    };
    match (
        part(plan.resident_bytes, mem_bw_bytes_s),
        part(plan.streamed_bytes, disk_bw_bytes_s),
    ) {
        (Some(a), Some(b)) if a + b > 0.0 => 1.0 / (a + b),
        (Some(_), Some(_)) => f64::INFINITY,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::probe::{CgroupLevel, CgroupMemory, CgroupVersion, Source};

    const MB: u64 = 1_000_000;

    /// 24 layers of 40 MB, untied: output 90 MB + norms 10 MB hot, embeddings 740 MB cold.
    fn sizes_1_8_gb() -> ModelSizes {
        ModelSizes {
            file_bytes: 1800 * MB,
            layer_bytes: vec![40 * MB; 24],
            token_embd_bytes: 740 * MB,
            output_bytes: Some(90 * MB),
            other_bytes: 10 * MB,
            kv_bytes_per_token: 50_000,
            scratch_bytes: 10 * MB,
            max_piece_bytes: 0,
        }
    }

    fn cgroup_v1(available: u64) -> MemLimits {
        let mut l = MemLimits::unconstrained(24_000 * MB);
        l.cgroup = Some(CgroupMemory {
            version: CgroupVersion::V1,
            path: "/job".into(),
            levels: vec![CgroupLevel {
                dir: "/sys/fs/cgroup/memory/job".into(),
                limit: Some(available + 100 * MB),
                high: None,
                usage: 150 * MB,
                inactive_file: 50 * MB,
                file_cache: 60 * MB,
            }],
        });
        l
    }

    #[test]
    fn kv_cache_of_smollm2_135m() {
        // 30 layers, 3 KV heads of 64, 2048 positions, f16.
        assert_eq!(kv_cache_bytes(30, 2048, 3, 64, 2), 47_185_920);
        assert_eq!(kv_cache_bytes(30, 2048, 3, 64, 4), 2 * 47_185_920);
        assert_eq!(kv_cache_bytes(usize::MAX, usize::MAX, 8, 128, 4), u64::MAX);
    }

    #[test]
    fn scratch_is_small_and_grows_with_ctx_and_batch() {
        let a = scratch_estimate(576, 1536, 9, 49152, 2048, 1);
        assert_eq!(a, ((4 * 576 + 2 * 1536 + 9 * 2048) + 49152) * 4);
        assert!(scratch_estimate(576, 1536, 9, 49152, 8192, 1) > a);
        assert!(scratch_estimate(576, 1536, 9, 49152, 2048, 32) > a);
    }

    #[test]
    fn sizes_from_gguf_names() {
        let t = [
            ("token_embd.weight", 100u64),
            ("blk.0.attn_q.weight", 10),
            ("blk.0.ffn_up.weight", 20),
            ("blk.1.attn_q.weight", 11),
            ("output_norm.weight", 3),
            ("blk.x.bogus", 4),
        ];
        let s = ModelSizes::from_tensor_sizes(200, t, 7, 9);
        assert_eq!(s.layer_bytes, vec![30, 11]);
        assert_eq!(
            (s.token_embd_bytes, s.output_bytes, s.other_bytes),
            (100, None, 7)
        );
        // Tied: the embedding table is the output matrix, so it is hot.
        assert_eq!(s.hot_non_layer(), 107);
        assert_eq!(s.cold_non_layer(), 0);
        let untied =
            ModelSizes::from_tensor_sizes(300, t.into_iter().chain([("output.weight", 50)]), 7, 9);
        assert_eq!(untied.hot_non_layer(), 57);
        assert_eq!(untied.cold_non_layer(), 100);
        assert_eq!(untied.all_bytes(), 300);
    }

    #[test]
    fn everything_fits_so_mmap() {
        let p = plan(
            &sizes_1_8_gb(),
            &MemLimits::unconstrained(8000 * MB),
            &PlanRequest::new(2048),
        );
        assert_eq!(p.strategy, Strategy::Mmap);
        assert_eq!(p.available.source, Source::MemAvailable);
        assert_eq!(p.kv_bytes, 2048 * 50_000);
        assert_eq!(
            p.budget,
            8000 * MB - 2048 * 50_000 - 10 * MB - SAFETY_MARGIN
        );
        assert_eq!(p.resident_bytes, 24 * 40 * MB + 100 * MB);
        assert_eq!((p.streamed_bytes, p.window_bytes), (0, 0));
        assert!(p.warnings.is_empty() && p.error.is_none());
        let s = p.summary();
        assert!(s.starts_with("model 1.8 GB, available 8.0 GB (MemAvailable), resident budget 7.8 GB: mmap, all 24 layers resident"), "{s}");
        assert!(s.contains("token embeddings (740.0 MB) not counted"), "{s}");
    }

    #[test]
    fn cold_embeddings_let_mmap_fit_where_read_would_not() {
        // Budget ~1.2 GB: hot set 1.06 GB fits; the full 1.8 GB copy does not.
        let limits = MemLimits::unconstrained(1400 * MB);
        let mut req = PlanRequest::new(2048);
        assert_eq!(
            plan(&sizes_1_8_gb(), &limits, &req).strategy,
            Strategy::Mmap
        );
        req.no_mmap = true;
        let p = plan(&sizes_1_8_gb(), &limits, &req);
        assert_eq!(p.strategy, Strategy::Mmap);
        assert!(
            p.warnings[0].starts_with("--no-mmap ignored"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn no_mmap_reads_when_it_fits() {
        let mut req = PlanRequest::new(2048);
        req.no_mmap = true;
        let p = plan(&sizes_1_8_gb(), &MemLimits::unconstrained(8000 * MB), &req);
        assert_eq!(p.strategy, Strategy::Read);
        assert!(p.reason.starts_with("--no-mmap"));
        assert!(p.summary().contains("read into memory (--no-mmap)"));
    }

    #[test]
    fn mlock_needs_room_and_rlimit() {
        let mut req = PlanRequest::new(2048);
        req.mlock = true;
        let mut limits = MemLimits::unconstrained(8000 * MB);
        assert_eq!(
            plan(&sizes_1_8_gb(), &limits, &req).strategy,
            Strategy::Mlock
        );
        limits.rlimit_memlock = Some(8 << 20);
        let p = plan(&sizes_1_8_gb(), &limits, &req);
        assert_eq!(p.strategy, Strategy::Mmap);
        assert!(
            p.warnings[0].contains("RLIMIT_MEMLOCK 8.4 MB"),
            "{:?}",
            p.warnings
        );
        limits.cap_ipc_lock = true;
        assert_eq!(
            plan(&sizes_1_8_gb(), &limits, &req).strategy,
            Strategy::Mlock
        );
        // Too big for the budget: fall back (to streaming here) with a warning.
        let p = plan(&sizes_1_8_gb(), &MemLimits::unconstrained(900 * MB), &req);
        assert_eq!(p.strategy.kind(), LoadStrategy::Stream);
        assert!(p.warnings[0].starts_with("--mlock ignored"));
    }

    #[test]
    fn cgroup_limit_forces_streaming() {
        // 0.9 GB left in the cgroup; budget = 900 - 102.4 (KV) - 10 - 67.1 = 720.5 MB;
        // room for layers = 720.5 - 100 (hot non-layer) - 40 (window) = 580.5 MB -> 14 layers.
        let p = plan(
            &sizes_1_8_gb(),
            &cgroup_v1(900 * MB),
            &PlanRequest::new(2048),
        );
        assert_eq!(p.available.source, Source::CgroupV1Limit);
        assert_eq!(p.limit, 900 * MB);
        assert_eq!(
            p.strategy,
            Strategy::Stream {
                resident_layers: 0..14,
                streamed_layers: 14..24
            }
        );
        assert_eq!(p.resident_bytes, 100 * MB + 14 * 40 * MB);
        assert_eq!(p.streamed_bytes, 10 * 40 * MB);
        assert_eq!(p.window_bytes, 40 * MB);
        assert!(p.resident_bytes + p.window_bytes <= p.budget);
        assert!(p.error.is_none());
        let s = p.summary();
        assert!(
            s.starts_with(
                "model 1.8 GB, available 900.0 MB (cgroup v1 limit), resident budget 720.5 MB = layers 0-13, \
                 streaming layers 14-23 (400.0 MB from disk per token)"
            ),
            "{s}"
        );
        assert!(s.contains("14 of 24 layers stay resident"), "{s}");
    }

    #[test]
    fn max_ram_caps_the_system_figure() {
        let mut req = PlanRequest::new(2048);
        req.max_ram = Some(900 * MB);
        let p = plan(&sizes_1_8_gb(), &MemLimits::unconstrained(8000 * MB), &req);
        assert!(p.limited_by_max_ram);
        assert_eq!(p.limit, 900 * MB);
        assert_eq!(p.strategy.kind(), LoadStrategy::Stream);
        assert!(p
            .summary()
            .contains("available 900.0 MB (--max-ram; system 8.0 GB MemAvailable)"));
        // A max_ram above what is available changes nothing.
        req.max_ram = Some(100_000 * MB);
        let p = plan(&sizes_1_8_gb(), &MemLimits::unconstrained(8000 * MB), &req);
        assert!(!p.limited_by_max_ram);
        assert_eq!(p.limit, 8000 * MB);
    }

    #[test]
    fn too_little_memory_is_an_error() {
        // KV 102.4 + scratch 10 + margin 67.1 + hot 100 + layer 40 = 319.5 MB needed.
        let p = plan(
            &sizes_1_8_gb(),
            &MemLimits::unconstrained(300 * MB),
            &PlanRequest::new(2048),
        );
        assert_eq!(
            p.min_required,
            2048 * 50_000 + 10 * MB + SAFETY_MARGIN + 100 * MB + 40 * MB
        );
        let e = p.error.as_deref().expect("an error");
        assert!(e.contains("319.5 MB"), "{e}");
        assert!(e.contains("KV cache 102.4 MB"), "{e}");
        assert_eq!(
            p.strategy,
            Strategy::Stream {
                resident_layers: 0..0,
                streamed_layers: 0..24
            }
        );
        assert!(p.summary().contains("= no layers, streaming layers 0-23"));
        assert!(p.summary().contains("Error: not enough memory"));
        // Just enough: every layer streamed, no error.
        let p = plan(
            &sizes_1_8_gb(),
            &MemLimits::unconstrained(p.min_required),
            &PlanRequest::new(2048),
        );
        assert!(p.error.is_none());
        assert_eq!(p.resident_bytes, 100 * MB);
        assert_eq!(p.streamed_bytes, 960 * MB);
    }

    #[test]
    fn forced_modes_are_honoured_with_warnings() {
        let small = MemLimits::unconstrained(900 * MB);
        for (force, kind) in [
            (LoadStrategy::Mmap, "forced mmap"),
            (LoadStrategy::Read, "forced --no-mmap"),
            (LoadStrategy::Mlock, "forced mlock"),
        ] {
            let mut req = PlanRequest::new(2048);
            req.force = Some(force);
            let p = plan(&sizes_1_8_gb(), &small, &req);
            assert_eq!(p.strategy.kind(), force);
            assert!(
                p.warnings.iter().any(|w| w.starts_with(kind)),
                "{force:?}: {:?}",
                p.warnings
            );
        }
        // Forced streaming when everything fits: all layers resident, nothing streamed.
        let mut req = PlanRequest::new(2048);
        req.force = Some(LoadStrategy::Stream);
        let p = plan(&sizes_1_8_gb(), &MemLimits::unconstrained(8000 * MB), &req);
        assert_eq!(
            p.strategy,
            Strategy::Stream {
                resident_layers: 0..24,
                streamed_layers: 24..24
            }
        );
        assert_eq!((p.streamed_bytes, p.window_bytes), (0, 0));
        assert!(p.summary().contains("streaming nothing"));
    }

    #[test]
    fn tied_embeddings_are_hot() {
        let mut s = sizes_1_8_gb();
        s.output_bytes = None;
        // Hot non-layer is now the 740 MB table + 10 MB.
        let p = plan(
            &s,
            &MemLimits::unconstrained(1400 * MB),
            &PlanRequest::new(2048),
        );
        assert_eq!(p.hot_non_layer_bytes, 750 * MB);
        assert_eq!(p.cold_non_layer_bytes, 0);
        assert_eq!(p.strategy.kind(), LoadStrategy::Stream);
        assert!(!p.summary().contains("not counted"));
    }

    #[test]
    fn prediction() {
        let p = plan(
            &sizes_1_8_gb(),
            &cgroup_v1(900 * MB),
            &PlanRequest::new(2048),
        );
        // 660 MB at 10 GB/s + 400 MB at 1 GB/s = 0.066 + 0.4 s.
        let t = predict_tokens_per_s(&p, 10e9, 1e9);
        assert!((t - 1.0 / 0.466).abs() < 1e-9, "{t}");
        assert_eq!(predict_tokens_per_s(&p, 10e9, 0.0), 0.0);
        let fits = plan(
            &sizes_1_8_gb(),
            &MemLimits::unconstrained(8000 * MB),
            &PlanRequest::new(2048),
        );
        // Nothing streamed: disk bandwidth does not matter.
        assert!((predict_tokens_per_s(&fits, 10e9, 0.0) - 10e9 / 1060e6).abs() < 1e-9);
        let mut empty = fits.clone();
        empty.resident_bytes = 0;
        assert_eq!(predict_tokens_per_s(&empty, 1.0, 1.0), f64::INFINITY);
    }

    #[test]
    fn stream_split_invariants_over_random_models() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for _ in 0..2000 {
            let n = next(40) as usize;
            let layer_bytes: Vec<u64> = (0..n).map(|_| next(200 * MB) + 1).collect();
            let sizes = ModelSizes {
                file_bytes: next(10_000 * MB),
                layer_bytes,
                token_embd_bytes: next(500 * MB),
                output_bytes: if next(2) == 0 {
                    None
                } else {
                    Some(next(500 * MB))
                },
                other_bytes: next(MB),
                kv_bytes_per_token: next(200_000),
                scratch_bytes: next(100 * MB),
                max_piece_bytes: next(2) * next(200 * MB),
            };
            let limits = MemLimits::unconstrained(next(12_000 * MB));
            let p = plan(&sizes, &limits, &PlanRequest::new(next(8192) as usize + 1));
            assert_eq!(p.resident_bytes + p.streamed_bytes, sizes.hot_bytes());
            match &p.strategy {
                Strategy::Mmap => assert!(sizes.hot_bytes() <= p.budget),
                Strategy::Stream {
                    resident_layers,
                    streamed_layers,
                } => {
                    assert_eq!(
                        (resident_layers.start, resident_layers.end),
                        (0, streamed_layers.start)
                    );
                    assert_eq!(streamed_layers.end, n);
                    assert!(!streamed_layers.is_empty() || n == 0);
                    if p.error.is_none() {
                        // What stays resident plus the layer in flight fits the budget ...
                        assert!(
                            p.resident_bytes + p.window_bytes <= p.budget,
                            "{}",
                            p.summary()
                        );
                        // ... and one more resident layer would not.
                        let more = sizes.layer_bytes[streamed_layers.start];
                        assert!(p.resident_bytes + more + p.window_bytes > p.budget);
                    }
                }
                other => panic!("unrequested {other:?}"),
            }
            assert_eq!(p.error.is_some(), p.limit < p.min_required);
        }
    }

    #[test]
    fn serializes_for_json() {
        let p = plan(
            &sizes_1_8_gb(),
            &cgroup_v1(900 * MB),
            &PlanRequest::new(2048),
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["strategy"]["mode"], "stream");
        assert_eq!(v["strategy"]["resident_layers"]["end"], 14);
        assert_eq!(v["available"]["source"], "cgroup_v1_limit");
        assert_eq!(v["budget"], p.budget);
        assert!(v["error"].is_null());
        let m = serde_json::to_value(Strategy::Mmap).unwrap();
        assert_eq!(m["mode"], "mmap");
    }
}
