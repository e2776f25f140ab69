//! Model lifecycle: ONE map `name -> Slot { state, last_used, in_use, ... }`.
//!
//! - A model loads on its first request; concurrent first requests wait for that one load.
//! - A background reaper unloads models idle for `unload_after_idle_seconds`.
//! - When loading would exceed the RAM budget, the least recently used idle models are unloaded
//!   first; if that is not enough, the request waits until models go idle. A model counts what
//!   the engine's planner says it takes (estimated at start, then the plan of its last load).
//! - A reload (`SIGHUP`, `POST /v1/models/{id}/reload`, `POST /v1/reload`) of a loaded model
//!   whose file identity (dev, inode, mtime, size) changed maps the new file beside the old one
//!   and swaps it in: new requests get the new file, requests in flight finish on the old
//!   mapping, which goes when the last of them ends. A reload that fails keeps the old one.
//! - Before each load the path's identity is taken, and before each request the loaded files are
//!   checked: a mapped file truncated in place (same inode, fewer bytes) is refused with a 503
//!   rather than risking SIGBUS.
//!
//! The map's mutex is never held across an `.await`; loads and unloads run on blocking threads
//! and announce state changes through one `Notify`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::{ConfigError, ModelConfig, ServerConfig};
use crate::engine::{Engine, Loader, MemoryUsage, PlanInfo};
use crate::error::ApiError;
use crate::files::{self, FileChange, FileId, LoadedFile};
use crate::metrics::ModelStats;
use crate::queue::Queue;
use crate::worker::{Job, Worker};

/// A model that is loaded, with its worker thread.
pub struct LoadedModel {
    pub name: String,
    pub engine: Arc<dyn Engine>,
    worker: Mutex<Worker>,
}

impl LoadedModel {
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        w.submit(job)
            .map_err(|_| ApiError::unavailable("the model's worker has stopped", "model_unloaded"))
    }

    fn shutdown(&self) {
        self.worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown();
    }
}

enum SlotState {
    Unloaded,
    Loading,
    Ready(Arc<LoadedModel>),
    Unloading,
}

impl SlotState {
    fn name(&self) -> &'static str {
        match self {
            SlotState::Unloaded => "unloaded",
            SlotState::Loading => "loading",
            SlotState::Ready(_) => "loaded",
            SlotState::Unloading => "unloading",
        }
    }
}

struct Slot {
    cfg: Arc<ModelConfig>,
    state: SlotState,
    last_used: Instant,
    /// Leases alive (requests using the model); a model in use is never unloaded.
    in_use: usize,
    /// Bytes the model takes once loaded, for the budget.
    estimate: u64,
    stats: Arc<ModelStats>,
    /// Incremented at each load attempt; a failed attempt is remembered for its waiters.
    load_epoch: u64,
    failed: Option<(u64, String)>,
    /// A reload is mapping the file again (one at a time per model).
    reloading: bool,
}

/// A model's state for `/v1/models` and `/metrics`.
pub struct ModelInfo {
    pub name: String,
    pub state: &'static str,
    pub loaded: bool,
    pub memory: MemoryUsage,
    pub stats: Arc<ModelStats>,
    pub cfg: Arc<ModelConfig>,
    pub estimate: u64,
    /// The files the loaded engine maps (empty when not loaded).
    pub files: Vec<LoadedFile>,
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Not loaded: the next request maps whatever the path names then.
    NotLoaded,
    /// The loaded files are still what their paths name.
    Unchanged,
    /// A changed file was mapped and swapped in; the text says what changed.
    Reloaded(String),
}

impl ReloadOutcome {
    pub fn reloaded(&self) -> bool {
        matches!(self, ReloadOutcome::Reloaded(_))
    }

    pub fn detail(&self) -> String {
        match self {
            ReloadOutcome::NotLoaded => {
                "not loaded; the next request maps the file its path names then".into()
            }
            ReloadOutcome::Unchanged => "the loaded files are unchanged".into(),
            ReloadOutcome::Reloaded(what) => format!("reloaded: {what}"),
        }
    }
}

/// Clears a slot's `reloading` mark when a reload ends, however it ends.
struct ReloadClaim<'a> {
    registry: &'a Registry,
    name: &'a str,
}

impl Drop for ReloadClaim<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.registry.lock().get_mut(self.name) {
            slot.reloading = false;
        }
        self.registry.changed.notify_waiters();
    }
}

/// A model opened on a blocking thread, with its worker, and the plan the engine made.
type Opened = Result<(LoadedModel, Option<PlanInfo>), String>;

pub struct Registry {
    slots: Mutex<BTreeMap<String, Slot>>,
    changed: Notify,
    loader: Arc<dyn Loader>,
    budget: Option<u64>,
    pub queue: Arc<Queue>,
}

/// A model held for one request; releasing it marks the model used now.
pub struct Lease {
    pub model: Arc<LoadedModel>,
    registry: Arc<Registry>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry.release(&self.model.name);
    }
}

impl Registry {
    pub fn new(
        config: &ServerConfig,
        loader: Arc<dyn Loader>,
    ) -> Result<Arc<Registry>, ConfigError> {
        let mut slots = BTreeMap::new();
        for (name, cfg) in &config.models {
            let estimate = loader.estimate_bytes(cfg);
            if let Some(budget) = config.max_ram {
                if estimate > budget {
                    return Err(ConfigError::Invalid {
                        origin: "config".into(),
                        key: "max_ram".into(),
                        reason: format!(
                            "model '{name}' needs about {} MiB, more than the whole budget of {} MiB",
                            estimate >> 20,
                            budget >> 20
                        ),
                    });
                }
            }
            slots.insert(
                name.clone(),
                Slot {
                    cfg: cfg.clone(),
                    state: SlotState::Unloaded,
                    last_used: Instant::now(),
                    in_use: 0,
                    estimate,
                    stats: Arc::default(),
                    load_epoch: 0,
                    failed: None,
                    reloading: false,
                },
            );
        }
        Ok(Arc::new(Registry {
            slots: Mutex::new(slots),
            changed: Notify::new(),
            loader,
            budget: config.max_ram,
            queue: Queue::new(config.max_queue),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self, name: &str) -> Option<Arc<ModelStats>> {
        self.lock().get(name).map(|s| s.stats.clone())
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        self.lock()
            .iter()
            .map(|(name, s)| {
                let (memory, files) = match &s.state {
                    SlotState::Ready(m) => (m.engine.memory(), m.engine.files()),
                    _ => (MemoryUsage::default(), Vec::new()),
                };
                ModelInfo {
                    name: name.clone(),
                    state: s.state.name(),
                    loaded: matches!(s.state, SlotState::Ready(_)),
                    memory,
                    stats: s.stats.clone(),
                    cfg: s.cfg.clone(),
                    estimate: s.estimate,
                    files,
                }
            })
            .collect()
    }

    /// The loaded model for a request, loading it (and evicting idle ones) if needed.
    pub async fn acquire(self: &Arc<Self>, name: &str) -> Result<Lease, ApiError> {
        let mut waited_on: Option<u64> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            {
                let mut slots = self.lock();
                let slot = slots
                    .get_mut(name)
                    .ok_or_else(|| ApiError::model_not_found(name))?;
                match &slot.state {
                    SlotState::Ready(m) => {
                        let model = m.clone();
                        slot.in_use += 1;
                        slot.last_used = Instant::now();
                        drop(slots);
                        let lease = Lease {
                            model,
                            registry: self.clone(),
                        };
                        return match files::unsafe_change(&lease.model.engine.files()) {
                            None => Ok(lease),
                            Some(change) => {
                                eprintln!("outcore-server: model '{name}': {change}; refusing requests until it is reloaded");
                                Err(ApiError::unavailable(
                                    format!(
                                        "Model '{name}' cannot be served: {change}. Restore the file \
                                         and reload the model (POST /v1/models/{name}/reload)"
                                    ),
                                    "model_file_truncated",
                                ))
                            }
                        };
                    }
                    SlotState::Unloaded => {
                        if let (Some(epoch), Some((failed, msg))) = (waited_on, &slot.failed) {
                            if epoch == *failed {
                                return Err(ApiError::unavailable(
                                    format!("Loading model '{name}' failed: {msg}"),
                                    "model_load_failed",
                                ));
                            }
                        }
                        if let Some(victims) = self.plan_load(&mut slots, name) {
                            let slot = slots.get_mut(name).expect("present: checked above");
                            slot.state = SlotState::Loading;
                            slot.load_epoch += 1;
                            waited_on = Some(slot.load_epoch);
                            let cfg = slot.cfg.clone();
                            let stats = slot.stats.clone();
                            let this = self.clone();
                            tokio::spawn(async move { this.load(cfg, stats, victims).await });
                        }
                    }
                    SlotState::Loading => waited_on = Some(slot.load_epoch),
                    SlotState::Unloading => {}
                }
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// Victims to unload so `name` fits the budget (possibly none), or `None` to wait.
    /// Marks the victims `Unloading` and takes their models.
    fn plan_load(
        &self,
        slots: &mut BTreeMap<String, Slot>,
        name: &str,
    ) -> Option<Vec<(String, Arc<LoadedModel>)>> {
        let Some(budget) = self.budget else {
            return Some(Vec::new());
        };
        let need = slots[name].estimate;
        let used: u64 = slots
            .values()
            .filter(|s| !matches!(s.state, SlotState::Unloaded))
            .map(|s| s.estimate)
            .sum();
        let mut idle: Vec<(&String, Instant, u64)> = slots
            .iter()
            .filter(|(_, s)| matches!(s.state, SlotState::Ready(_)) && s.in_use == 0)
            .map(|(n, s)| (n, s.last_used, s.estimate))
            .collect();
        idle.sort_by_key(|&(_, t, _)| t);
        let mut freed = 0u64;
        let mut names = Vec::new();
        for (n, _, est) in idle {
            if used - freed + need <= budget {
                break;
            }
            freed += est;
            names.push(n.clone());
        }
        if used - freed + need > budget {
            return None;
        }
        Some(
            names
                .into_iter()
                .filter_map(|n| Self::begin_unload(slots, &n).map(|m| (n, m)))
                .collect(),
        )
    }

    fn begin_unload(slots: &mut BTreeMap<String, Slot>, name: &str) -> Option<Arc<LoadedModel>> {
        let slot = slots.get_mut(name)?;
        if slot.in_use > 0 {
            return None;
        }
        match std::mem::replace(&mut slot.state, SlotState::Unloading) {
            SlotState::Ready(m) => Some(m),
            other => {
                slot.state = other;
                None
            }
        }
    }

    async fn finish_unload(&self, name: &str, model: Arc<LoadedModel>) {
        let _ = tokio::task::spawn_blocking(move || {
            model.shutdown();
            drop(model);
        })
        .await;
        {
            let mut slots = self.lock();
            if let Some(slot) = slots.get_mut(name) {
                slot.state = SlotState::Unloaded;
                slot.stats
                    .unloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.changed.notify_waiters();
    }

    /// Opens `cfg`'s model and starts its worker on a blocking thread. The path's identity is
    /// taken first (a missing or emptied file fails here, with its name); if the engine ends up
    /// mapping another file (replaced during the load), that is said, and the engine's own
    /// identities are what later reloads compare against.
    async fn open(&self, cfg: Arc<ModelConfig>, stats: Arc<ModelStats>) -> Opened {
        let loader = self.loader.clone();
        tokio::task::spawn_blocking(move || -> Opened {
            let before = FileId::of(&cfg.path)
                .map_err(|e| format!("{}: {e}", cfg.path.display()))?;
            if before.size == 0 && cfg.path.is_file() {
                return Err(format!("{} is empty", cfg.path.display()));
            }
            let engine = loader.load(&cfg).map_err(|e| e.to_string())?;
            if let Some(f) = engine.files().iter().find(|f| f.path == cfg.path) {
                if f.id != before {
                    eprintln!(
                        "outcore-server: model '{}': {} changed while loading; serving inode {} ({} bytes)",
                        cfg.name,
                        cfg.path.display(),
                        f.id.inode,
                        f.id.size
                    );
                }
            }
            let plan = engine.plan();
            if let Some(p) = &plan {
                eprintln!("outcore-server: model '{}': {}", cfg.name, p.summary);
            }
            let worker = Worker::spawn(&cfg.name, engine.clone(), cfg.parallel, stats)
                .map_err(|e| format!("starting the worker thread: {e}"))?;
            Ok((
                LoadedModel {
                    name: cfg.name.clone(),
                    engine,
                    worker: Mutex::new(worker),
                },
                plan,
            ))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the loader panicked: {e}")))
    }

    async fn load(
        self: Arc<Self>,
        cfg: Arc<ModelConfig>,
        stats: Arc<ModelStats>,
        victims: Vec<(String, Arc<LoadedModel>)>,
    ) {
        for (name, model) in victims {
            self.finish_unload(&name, model).await;
        }
        let result = self.open(cfg.clone(), stats.clone()).await;
        {
            let mut slots = self.lock();
            if let Some(slot) = slots.get_mut(&cfg.name) {
                match result {
                    Ok((model, plan)) => {
                        slot.state = SlotState::Ready(Arc::new(model));
                        slot.last_used = Instant::now();
                        slot.failed = None;
                        if let Some(p) = plan {
                            slot.estimate = p.ram_bytes;
                        }
                        stats
                            .loads
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(msg) => {
                        eprintln!("outcore-server: loading model '{}' failed: {msg}", cfg.name);
                        slot.state = SlotState::Unloaded;
                        slot.failed = Some((slot.load_epoch, msg));
                    }
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Maps `name`'s file again if it changed since it was loaded (see the module docs).
    /// Waits for a load, unload or other reload of the same model to end first.
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, ApiError> {
        let (old, cfg, stats) = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            {
                let mut slots = self.lock();
                let slot = slots
                    .get_mut(name)
                    .ok_or_else(|| ApiError::model_not_found(name))?;
                match &slot.state {
                    SlotState::Unloaded => return Ok(ReloadOutcome::NotLoaded),
                    SlotState::Ready(m) if !slot.reloading => {
                        slot.reloading = true;
                        break (m.clone(), slot.cfg.clone(), slot.stats.clone());
                    }
                    _ => {
                        notified.as_mut().enable();
                    }
                }
            }
            notified.await;
        };
        let _claim = ReloadClaim {
            registry: self,
            name,
        };
        let loaded = old.engine.files();
        let change = tokio::task::spawn_blocking(move || files::check_all(&loaded))
            .await
            .map_err(|e| ApiError::internal(format!("file check failed: {e}")))?;
        match &change {
            FileChange::Unchanged => return Ok(ReloadOutcome::Unchanged),
            FileChange::Missing { .. } => {
                return Err(ApiError::unavailable(
                    format!(
                        "Cannot reload model '{name}': {change}; still serving the loaded file"
                    ),
                    "model_reload_failed",
                ))
            }
            _ => {}
        }
        eprintln!("outcore-server: reloading model '{name}': {change}");
        let (model, plan) = self.open(cfg, stats.clone()).await.map_err(|msg| {
            eprintln!("outcore-server: reloading model '{name}' failed: {msg}");
            ApiError::unavailable(
                format!("Reloading model '{name}' failed: {msg}; still serving the previously loaded file"),
                "model_reload_failed",
            )
        })?;
        let leftover = {
            let mut slots = self.lock();
            match slots.get_mut(name) {
                Some(slot) if matches!(&slot.state, SlotState::Ready(cur) if Arc::ptr_eq(cur, &old)) =>
                {
                    slot.state = SlotState::Ready(Arc::new(model));
                    if let Some(p) = plan {
                        slot.estimate = p.ram_bytes;
                    }
                    for c in [&stats.loads, &stats.reloads] {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    None
                }
                // Unloaded (idle, evicted, by an operator) while the new file was mapped.
                _ => Some(model),
            }
        };
        // The old model goes when the last request holding it ends (its worker drains).
        drop(old);
        if let Some(m) = leftover {
            let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
            return Ok(ReloadOutcome::NotLoaded);
        }
        Ok(ReloadOutcome::Reloaded(change.to_string()))
    }

    /// [`Registry::reload`] for every model, in name order.
    pub async fn reload_all(&self) -> Vec<(String, Result<ReloadOutcome, ApiError>)> {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let r = self.reload(&name).await;
            out.push((name, r));
        }
        out
    }

    fn release(&self, name: &str) {
        {
            let mut slots = self.lock();
            if let Some(slot) = slots.get_mut(name) {
                slot.in_use = slot.in_use.saturating_sub(1);
                slot.last_used = Instant::now();
            }
        }
        self.changed.notify_waiters();
    }

    /// Unloads a model now. `Ok(false)` if it was not loaded; 409 while it is in use or loading.
    pub async fn unload(&self, name: &str) -> Result<bool, ApiError> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            let model = {
                let mut slots = self.lock();
                let slot = slots
                    .get_mut(name)
                    .ok_or_else(|| ApiError::model_not_found(name))?;
                match &slot.state {
                    SlotState::Unloaded => return Ok(false),
                    SlotState::Loading => {
                        return Err(ApiError::conflict(
                            format!("Model '{name}' is loading"),
                            "model_loading",
                        ))
                    }
                    SlotState::Ready(_) if slot.in_use > 0 => {
                        return Err(ApiError::conflict(
                            format!(
                                "Model '{name}' is serving {} request(s); retry when they finish",
                                slot.in_use
                            ),
                            "model_busy",
                        ))
                    }
                    SlotState::Ready(_) => Self::begin_unload(&mut slots, name),
                    SlotState::Unloading => {
                        notified.as_mut().enable();
                        None
                    }
                }
            };
            match model {
                Some(m) => {
                    self.finish_unload(name, m).await;
                    return Ok(true);
                }
                None => notified.await,
            }
        }
    }

    /// Unloads every idle model whose `unload_after_idle` has passed.
    pub async fn reap_idle(&self) {
        let victims: Vec<(String, Arc<LoadedModel>)> = {
            let mut slots = self.lock();
            let names: Vec<String> = slots
                .iter()
                .filter(|(_, s)| {
                    matches!(s.state, SlotState::Ready(_))
                        && s.in_use == 0
                        && s.cfg
                            .unload_after_idle
                            .is_some_and(|d| s.last_used.elapsed() >= d)
                })
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| Self::begin_unload(&mut slots, &n).map(|m| (n, m)))
                .collect()
        };
        for (name, model) in victims {
            eprintln!("outcore-server: unloading idle model '{name}'");
            self.finish_unload(&name, model).await;
        }
    }

    /// Runs `reap_idle` periodically while the registry lives (needs a tokio runtime).
    pub fn spawn_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Registry> = Arc::downgrade(self);
        let shortest = self
            .lock()
            .values()
            .filter_map(|s| s.cfg.unload_after_idle)
            .min();
        let period = shortest.map_or(Duration::from_secs(1), |d| {
            (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(reg) = weak.upgrade() else { return };
                reg.reap_idle().await;
            }
        })
    }

    /// Unloads everything (server shutdown); requests still running get an error event.
    pub async fn shutdown_all(&self) {
        let victims: Vec<(String, Arc<LoadedModel>)> = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .filter_map(
                    |(n, s)| match std::mem::replace(&mut s.state, SlotState::Unloading) {
                        SlotState::Ready(m) => Some((n.clone(), m)),
                        other => {
                            s.state = other;
                            None
                        }
                    },
                )
                .collect()
        };
        for (name, model) in victims {
            self.finish_unload(&name, model).await;
        }
    }
}
