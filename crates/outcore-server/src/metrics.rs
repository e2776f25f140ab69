//! Counters and the Prometheus text exposition for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::MemoryUsage;

/// Per-model counters; they live as long as the server (across loads and unloads).
#[derive(Debug, Default)]
pub struct ModelStats {
    pub loads: AtomicU64,
    pub unloads: AtomicU64,
    /// Reloads that mapped a changed file while the model stayed available.
    pub reloads: AtomicU64,
    pub queued: AtomicUsize,
    pub active: AtomicUsize,
    pub generations: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub prefill_nanos: AtomicU64,
    pub decode_nanos: AtomicU64,
    pub decode_tokens: AtomicU64,
    /// Batched forward steps (one forward pass each).
    pub decode_steps: AtomicU64,
    /// Steps that fed prompt chunks and decode tokens together.
    pub mixed_steps: AtomicU64,
    /// Decode steps by batch size (sequences in the step).
    batch_sizes: Mutex<BTreeMap<usize, u64>>,
    /// Aggregate decode tokens/s of recent batched steps (moving average), as f64 bits.
    decode_tps: AtomicU64,
}

impl ModelStats {
    /// One forward step: `batch` sequences fed `total` tokens, `prompt` of them prompt tokens
    /// (the rest one decode token each); `produced` sequences sampled a token from it. The
    /// step's time counts as decode time, and its prompt tokens' share of it as prefill time.
    pub fn record_step(
        &self,
        batch: usize,
        produced: usize,
        prompt: usize,
        total: usize,
        took: Duration,
    ) {
        let nanos = took.as_nanos() as u64;
        self.decode_nanos.fetch_add(nanos, Ordering::Relaxed);
        if prompt > 0 && total > 0 {
            let share = (nanos as u128 * prompt as u128 / total as u128) as u64;
            self.prefill_nanos.fetch_add(share, Ordering::Relaxed);
            if total > prompt {
                self.mixed_steps.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.decode_tokens
            .fetch_add(produced as u64, Ordering::Relaxed);
        self.decode_steps.fetch_add(1, Ordering::Relaxed);
        *self
            .batch_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(batch)
            .or_insert(0) += 1;
        let secs = took.as_secs_f64();
        if secs > 0.0 {
            let now = produced as f64 / secs;
            let old = f64::from_bits(self.decode_tps.load(Ordering::Relaxed));
            let avg = if old == 0.0 {
                now
            } else {
                0.9 * old + 0.1 * now
            };
            self.decode_tps.store(avg.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn record_finish(&self, prompt: usize, completion: usize) {
        self.generations.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion as u64, Ordering::Relaxed);
    }

    /// `(batch size, steps)` for every batch size seen, smallest first.
    pub fn batch_sizes(&self) -> Vec<(usize, u64)> {
        self.batch_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&b, &n)| (b, n))
            .collect()
    }

    pub fn decode_tokens_per_second(&self) -> f64 {
        f64::from_bits(self.decode_tps.load(Ordering::Relaxed))
    }
}

/// Responses by route and status code.
#[derive(Debug, Default)]
pub struct HttpStats {
    by_route_code: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpStats {
    pub fn record(&self, route: &str, code: u16) {
        let mut m = self.by_route_code.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), code)).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.by_route_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One model's row for the exposition.
pub struct ModelRow<'a> {
    pub name: &'a str,
    pub loaded: bool,
    pub memory: MemoryUsage,
    pub stats: &'a ModelStats,
}

/// Resident set size of this process, from /proc/self/status (0 where unavailable).
pub fn process_rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(models: &[ModelRow<'_>], http: &HttpStats, queue_waiting: usize) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_model = |f: &dyn Fn(&ModelRow<'_>) -> String| -> Vec<(String, String)> {
        models
            .iter()
            .map(|m| (format!("{{model=\"{}\"}}", label(m.name)), f(m)))
            .collect()
    };
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    family(
        "outcore_model_loaded",
        "gauge",
        "1 if the model is loaded.",
        per_model(&|m| u8::from(m.loaded).to_string()),
    );
    family(
        "outcore_model_loads_total",
        "counter",
        "Times the model was loaded.",
        per_model(&|m| ld(&m.stats.loads)),
    );
    family(
        "outcore_model_unloads_total",
        "counter",
        "Times the model was unloaded.",
        per_model(&|m| ld(&m.stats.unloads)),
    );
    family(
        "outcore_model_reloads_total",
        "counter",
        "Times a changed model file was mapped by a reload (SIGHUP or the reload endpoints).",
        per_model(&|m| ld(&m.stats.reloads)),
    );
    family(
        "outcore_model_resident_bytes",
        "gauge",
        "Bytes of the model resident in RAM.",
        per_model(&|m| m.memory.resident_bytes.to_string()),
    );
    family(
        "outcore_model_file_backed_bytes",
        "gauge",
        "Bytes of the model mapped from its file.",
        per_model(&|m| m.memory.file_backed_bytes.to_string()),
    );
    family(
        "outcore_prompt_tokens_total",
        "counter",
        "Prompt tokens processed.",
        per_model(&|m| ld(&m.stats.prompt_tokens)),
    );
    family(
        "outcore_completion_tokens_total",
        "counter",
        "Tokens generated.",
        per_model(&|m| ld(&m.stats.completion_tokens)),
    );
    family(
        "outcore_generations_total",
        "counter",
        "Generations that ran to completion.",
        per_model(&|m| ld(&m.stats.generations)),
    );
    family(
        "outcore_decode_seconds_total",
        "counter",
        "Time in batched forward steps (decode tokens and prompt chunks together).",
        per_model(&|m| {
            format!(
                "{:.6}",
                m.stats.decode_nanos.load(Ordering::Relaxed) as f64 / 1e9
            )
        }),
    );
    family(
        "outcore_decode_steps_total",
        "counter",
        "Batched forward steps (one forward pass over every active sequence).",
        per_model(&|m| ld(&m.stats.decode_steps)),
    );
    family(
        "outcore_mixed_steps_total",
        "counter",
        "Forward steps in which new prompts' chunks rode along with other sequences' decoding.",
        per_model(&|m| ld(&m.stats.mixed_steps)),
    );
    family(
        "outcore_decode_tokens_total",
        "counter",
        "Tokens sampled from batched forward steps (first tokens after a prompt included).",
        per_model(&|m| ld(&m.stats.decode_tokens)),
    );
    family(
        "outcore_decode_batch_steps_total",
        "counter",
        "Forward steps by batch size: how many sequences (decoding or prefilling) shared one.",
        models
            .iter()
            .flat_map(|m| {
                m.stats.batch_sizes().into_iter().map(move |(b, n)| {
                    (
                        format!("{{model=\"{}\",batch=\"{b}\"}}", label(m.name)),
                        n.to_string(),
                    )
                })
            })
            .collect(),
    );
    family(
        "outcore_prefill_seconds_total",
        "counter",
        "Prompt tokens' share of the forward steps' time.",
        per_model(&|m| {
            format!(
                "{:.6}",
                m.stats.prefill_nanos.load(Ordering::Relaxed) as f64 / 1e9
            )
        }),
    );
    family(
        "outcore_tokens_per_second",
        "gauge",
        "Aggregate decode tokens/s of recent batched steps.",
        per_model(&|m| format!("{:.3}", m.stats.decode_tokens_per_second())),
    );
    family(
        "outcore_queue_depth",
        "gauge",
        "Requests waiting for a decoding slot.",
        per_model(&|m| m.stats.queued.load(Ordering::Relaxed).to_string()),
    );
    family(
        "outcore_active_sequences",
        "gauge",
        "Sequences being decoded.",
        per_model(&|m| m.stats.active.load(Ordering::Relaxed).to_string()),
    );
    family(
        "outcore_queue_waiting",
        "gauge",
        "Requests waiting, all models.",
        vec![(String::new(), queue_waiting.to_string())],
    );
    family(
        "outcore_http_requests_total",
        "counter",
        "HTTP responses by route and status code.",
        http.snapshot()
            .into_iter()
            .map(|((route, code), n)| {
                (
                    format!("{{route=\"{}\",code=\"{code}\"}}", label(&route)),
                    n.to_string(),
                )
            })
            .collect(),
    );
    family(
        "outcore_process_resident_bytes",
        "gauge",
        "Resident set size of the server process.",
        vec![(String::new(), process_rss_bytes().to_string())],
    );
    out
}
