//! The engine worker: one OS thread per loaded model running continuous batching.
//!
//! Up to `parallel` sequences are active. Each loop admits queued jobs into free slots (prefill +
//! first token), then advances every active sequence by one token in one batched forward step.
//! A job whose event receiver is gone (client disconnected) is dropped at the next step, which
//! frees its slot. Engine calls run under `catch_unwind` so a bug fails requests, not the thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Engine, EngineError, Sampling, SeqState, TextDecoder, TokenSampler};
use crate::metrics::ModelStats;
use crate::queue::QueueTicket;
use crate::stop::{StopMatcher, StopOutcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What a job reports back, in order: any number of `Text`, then one `Done` or `Error`.
#[derive(Debug, PartialEq)]
pub enum Event {
    Text(String),
    Done(Finish),
    Error(String),
}

/// One generation request, ready for the engine.
pub struct Job {
    pub prompt: Vec<u32>,
    /// Already capped by the context left after the prompt.
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub events: UnboundedSender<Event>,
    /// Held while the job waits; released when it takes a slot.
    pub ticket: Option<QueueTicket>,
}

pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(
        name: &str,
        engine: Arc<dyn Engine>,
        parallel: usize,
        stats: Arc<ModelStats>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("outcore-worker-{name}"))
            .spawn(move || run(engine.as_ref(), parallel.max(1), &rx, &stop2, &stats))?;
        Ok(Worker {
            jobs: Some(tx),
            stop,
            thread: Some(thread),
        })
    }

    /// Queues a job; gives it back if the worker has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(job)),
        }
    }

    /// Stops the thread: active and queued jobs get an error event. Blocks until it exits.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    /// Without an explicit [`Worker::shutdown`] (a model replaced by a reload, dropped when its
    /// last request ends): close the job channel and let the thread finish what it holds and
    /// exit on its own, without blocking the caller (often an async task) on a decode step.
    fn drop(&mut self) {
        self.jobs = None;
        drop(self.thread.take());
    }
}

struct Active {
    events: UnboundedSender<Event>,
    seq: SeqState,
    sampler: Box<dyn TokenSampler>,
    decoder: Box<dyn TextDecoder>,
    stop: StopMatcher,
    history: Vec<u32>,
    n_prompt: usize,
    generated: usize,
    max_tokens: usize,
    /// The token to feed at the next step.
    next: u32,
    done: bool,
    /// Sampled by argmax (cheap): not worth a thread of its own.
    greedy: bool,
}

fn guarded<T>(
    during: &'static str,
    f: impl FnOnce() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(EngineError::Panic { during, message })
        }
    }
}

/// Moves finished and cancelled sequences' states to `free` for reuse.
fn reap(active: &mut Vec<Active>, free: &mut Vec<SeqState>) {
    let mut i = 0;
    while i < active.len() {
        if active[i].done || active[i].events.is_closed() {
            free.push(active.swap_remove(i).seq);
        } else {
            i += 1;
        }
    }
}

fn run(
    engine: &dyn Engine,
    parallel: usize,
    rx: &mpsc::Receiver<Job>,
    stop: &AtomicBool,
    stats: &ModelStats,
) {
    let mut active: Vec<Active> = Vec::with_capacity(parallel);
    // One sequence state (KV cache) per slot, allocated on first use and then reused.
    let mut free: Vec<SeqState> = Vec::with_capacity(parallel);
    let mut disconnected = false;
    let mut shown = ActiveGauge { stats, shown: 0 };
    loop {
        if stop.load(Ordering::SeqCst) {
            for a in active.drain(..) {
                let _ = a.events.send(Event::Error("the model was unloaded".into()));
            }
            while let Ok(job) = rx.try_recv() {
                let _ = job
                    .events
                    .send(Event::Error("the model was unloaded".into()));
            }
            break;
        }
        // Admit waiting jobs into free slots; block only when nothing is active.
        while active.len() < parallel && !disconnected {
            let job = if active.is_empty() {
                match rx.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        disconnected = true;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            };
            if stop.load(Ordering::SeqCst) {
                let _ = job
                    .events
                    .send(Event::Error("the model was unloaded".into()));
                continue;
            }
            match start(engine, job, free.pop(), stats) {
                Ok(a) => active.push(a),
                Err(Some(seq)) => free.push(seq),
                Err(None) => {}
            }
        }
        reap(&mut active, &mut free);
        shown.set(active.len());
        if active.is_empty() {
            if disconnected {
                break;
            }
            continue;
        }
        step(engine, &mut active, stats);
        reap(&mut active, &mut free);
        shown.set(active.len());
    }
    shown.set(0);
}

/// This worker's share of `ModelStats::active`. Added and subtracted rather than stored: during
/// a reload the old worker drains while the new one runs, both counting into the same stats.
struct ActiveGauge<'a> {
    stats: &'a ModelStats,
    shown: usize,
}

impl ActiveGauge<'_> {
    fn set(&mut self, n: usize) {
        if n > self.shown {
            self.stats
                .active
                .fetch_add(n - self.shown, Ordering::Relaxed);
        } else {
            self.stats
                .active
                .fetch_sub(self.shown - n, Ordering::Relaxed);
        }
        self.shown = n;
    }
}

/// Prefill and first token, in a reused sequence state if there is one. On failure, gives back
/// the state (when it is still usable) after reporting the error to the job.
fn start(
    engine: &dyn Engine,
    mut job: Job,
    reuse: Option<SeqState>,
    stats: &ModelStats,
) -> Result<Active, Option<SeqState>> {
    drop(job.ticket.take());
    if job.events.is_closed() {
        return Err(reuse);
    }
    let t0 = Instant::now();
    let mut seq = match reuse {
        Some(mut s) => match guarded("reset", || engine.reset_sequence(&mut s)) {
            Ok(()) => s,
            Err(e) => {
                let _ = job.events.send(Event::Error(e.to_string()));
                return Err(None);
            }
        },
        None => match guarded("new sequence", || engine.new_sequence()) {
            Ok(s) => s,
            Err(e) => {
                let _ = job.events.send(Event::Error(e.to_string()));
                return Err(None);
            }
        },
    };
    let mut logits = match guarded("prefill", || engine.prefill(&mut seq, &job.prompt)) {
        Ok(l) => l,
        Err(e) => {
            let _ = job.events.send(Event::Error(e.to_string()));
            return Err(Some(seq));
        }
    };
    stats.record_prefill(job.prompt.len(), t0.elapsed());
    let n_prompt = job.prompt.len();
    let greedy = job.sampling.temperature <= 0.0;
    let mut a = Active {
        events: job.events,
        seq,
        sampler: engine.sampler(&job.sampling),
        decoder: engine.decoder(),
        stop: StopMatcher::new(job.stop),
        history: job.prompt,
        n_prompt,
        generated: 0,
        max_tokens: job.max_tokens.max(1),
        next: 0,
        done: false,
        greedy,
    };
    let token = sample(&mut a, &mut logits);
    match token {
        Ok(t) => accept(engine, &mut a, t, stats),
        Err(e) => fail(&mut a, e),
    }
    if a.done {
        Err(Some(a.seq))
    } else {
        Ok(a)
    }
}

fn sample(a: &mut Active, logits: &mut [f32]) -> Result<u32, EngineError> {
    let (sampler, history) = (&mut a.sampler, &a.history);
    guarded("sample", || Ok(sampler.sample(logits, history)))
}

fn fail(a: &mut Active, e: EngineError) {
    let _ = a.events.send(Event::Error(e.to_string()));
    a.done = true;
}

fn finish(a: &mut Active, reason: FinishReason, stats: &ModelStats) {
    let tail = a.stop.finish() + &a.decoder.finish();
    if reason == FinishReason::Length && !tail.is_empty() {
        let _ = a.events.send(Event::Text(tail));
    }
    stats.record_finish(a.n_prompt, a.generated);
    let _ = a.events.send(Event::Done(Finish {
        reason,
        prompt_tokens: a.n_prompt,
        completion_tokens: a.generated,
    }));
    a.done = true;
}

/// Takes a sampled token: end of generation, text out, stop strings, limits.
fn accept(engine: &dyn Engine, a: &mut Active, token: u32, stats: &ModelStats) {
    if engine.is_eog(token) {
        // Flush text held back by the stop matcher or the UTF-8 decoder.
        let tail = a.stop.finish() + &a.decoder.finish();
        if !tail.is_empty() {
            let _ = a.events.send(Event::Text(tail));
        }
        finish(a, FinishReason::Stop, stats);
        return;
    }
    a.generated += 1;
    a.history.push(token);
    let piece = a.decoder.push(token);
    match a.stop.push(&piece) {
        StopOutcome::Stopped(text) => {
            if !text.is_empty() {
                let _ = a.events.send(Event::Text(text));
            }
            finish(a, FinishReason::Stop, stats);
            return;
        }
        StopOutcome::Continue(text) => {
            if !text.is_empty() {
                let _ = a.events.send(Event::Text(text));
            }
        }
    }
    if a.generated >= a.max_tokens || a.history.len() >= engine.n_ctx() {
        finish(a, FinishReason::Length, stats);
        return;
    }
    a.next = token;
}

/// Samples the next token from a sequence's logits and takes it.
fn advance(engine: &dyn Engine, a: &mut Active, mut logits: Vec<f32>, stats: &ModelStats) {
    match sample(a, &mut logits) {
        Ok(t) => accept(engine, a, t, stats),
        Err(e) => fail(a, e),
    }
}

/// Threads that may sample side by side (the machine's, read once).
fn sampling_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One batched decoding step for all active sequences.
fn step(engine: &dyn Engine, active: &mut [Active], stats: &ModelStats) {
    let t0 = Instant::now();
    let tokens: Vec<u32> = active.iter().map(|a| a.next).collect();
    let result = {
        let mut seqs: Vec<&mut SeqState> = active.iter_mut().map(|a| &mut a.seq).collect();
        guarded("decode", || engine.decode_batch(&mut seqs, &tokens))
    };
    match result {
        Ok(logits) if logits.len() == active.len() => {
            stats.record_step(active.len(), t0.elapsed());
            let heavy = active.iter().filter(|a| !a.greedy).count();
            let work = active.iter_mut().zip(logits);
            let lanes = heavy.min(sampling_threads());
            if lanes < 2 {
                for (a, l) in work {
                    advance(engine, a, l, stats);
                }
            } else {
                // Sampling with a temperature sorts the whole vocabulary (milliseconds per
                // sequence) while the compute pool idles: sample the sequences side by side.
                let queue = Mutex::new(work);
                let run = || loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    match next {
                        Some((a, l)) => advance(engine, a, l, stats),
                        None => break,
                    }
                };
                std::thread::scope(|s| {
                    for i in 1..lanes {
                        // If a thread cannot start, the others (this one at least) do its share.
                        let _ = std::thread::Builder::new()
                            .name(format!("outcore-sample-{i}"))
                            .spawn_scoped(s, run);
                    }
                    run();
                });
            }
        }
        Ok(logits) => {
            let e = EngineError::Forward(format!(
                "{} logits rows for {} sequences",
                logits.len(),
                active.len()
            ));
            active
                .iter_mut()
                .for_each(|a| fail(a, EngineError::Forward(e.to_string())));
        }
        Err(e) => active
            .iter_mut()
            .for_each(|a| fail(a, EngineError::Forward(e.to_string()))),
    }
}
