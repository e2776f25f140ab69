//! The engine worker: one OS thread per loaded model running continuous batching.
//!
//! Up to `parallel` sequences are active. Each loop admits queued jobs into free slots, then runs
//! one forward step ([`Engine::forward_mixed`]) that feeds every decoding sequence its sampled
//! token and the newly admitted ones a chunk of their prompt (oldest first, bounded per sequence
//! and per step), so admitting a request does not stall the running streams. A sequence whose
//! prompt chunk was its last samples its first token from that step's logits.
//! A job whose event receiver is gone (client disconnected) is dropped at the next step, which
//! frees its slot. Engine calls run under `catch_unwind` so a bug fails requests, not the thread;
//! when a step of several sequences fails, each is retried alone so only the culprit fails.

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
    /// Prompt tokens whose KV came from the slot's previous request (not computed again).
    pub cached_tokens: usize,
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

/// How the worker shapes its forward steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Sequences in flight (slots).
    pub parallel: usize,
    /// Most prompt tokens one sequence feeds in a step while others decode.
    pub prompt_chunk: usize,
    /// Most tokens in one step, all sequences together (decode tokens first).
    pub step_tokens: usize,
}

impl Batching {
    pub const DEFAULT_PROMPT_CHUNK: usize = 256;
    pub const DEFAULT_STEP_TOKENS: usize = 512;

    pub fn new(parallel: usize) -> Batching {
        Batching {
            parallel: parallel.max(1),
            prompt_chunk: Self::DEFAULT_PROMPT_CHUNK,
            step_tokens: Self::DEFAULT_STEP_TOKENS,
        }
    }
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
        Worker::spawn_batching(name, engine, Batching::new(parallel), stats)
    }

    pub fn spawn_batching(
        name: &str,
        engine: Arc<dyn Engine>,
        batching: Batching,
        stats: Arc<ModelStats>,
    ) -> std::io::Result<Worker> {
        let batching = Batching {
            parallel: batching.parallel.max(1),
            prompt_chunk: batching.prompt_chunk.max(1),
            step_tokens: batching.step_tokens.max(batching.parallel).max(1),
        };
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("outcore-worker-{name}"))
            .spawn(move || run(engine.as_ref(), batching, &rx, &stop2, &stats))?;
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
    /// The prompt, then the generated tokens.
    history: Vec<u32>,
    n_prompt: usize,
    /// Prompt tokens fed so far; the sequence decodes once all are.
    fed: usize,
    /// Prompt tokens whose KV the slot kept from its previous request.
    cached: usize,
    /// Admission order: prompts are fed oldest first.
    admitted: u64,
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

/// A free slot: its sequence state and the tokens whose KV it still holds.
struct Free {
    seq: SeqState,
    tokens: Vec<u32>,
}

/// Moves finished and cancelled sequences' states to `free` for reuse, with the tokens their KV
/// caches hold (a later prompt that starts with them skips computing them again).
fn reap(engine: &dyn Engine, active: &mut Vec<Active>, free: &mut Vec<Free>) {
    let mut i = 0;
    while i < active.len() {
        if active[i].done || active[i].events.is_closed() {
            let a = active.swap_remove(i);
            let mut tokens = a.history;
            tokens.truncate(engine.sequence_len(&a.seq));
            free.push(Free { seq: a.seq, tokens });
        } else {
            i += 1;
        }
    }
}

/// The slot for `prompt`, as llama.cpp's server picks one: the free slot whose cached tokens
/// share the longest prefix with it when that is at least half the prompt (the most recently
/// freed among equals); else a new slot while fewer than `parallel` exist (`None`: every slot's
/// cache is kept for later); else the least recently freed slot. `free` is in the order slots
/// were freed.
fn take_slot(free: &mut Vec<Free>, prompt: &[u32], can_allocate: bool) -> Option<Free> {
    let best = (0..free.len()).max_by_key(|&i| (common_prefix(&free[i].tokens, prompt), i));
    match best {
        Some(i) if 2 * common_prefix(&free[i].tokens, prompt) >= prompt.len() => {
            Some(free.remove(i))
        }
        _ if can_allocate => None,
        Some(_) => Some(free.remove(0)),
        None => None,
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Active {
    fn prefilling(&self) -> bool {
        self.fed < self.n_prompt
    }
}

fn run(
    engine: &dyn Engine,
    batching: Batching,
    rx: &mpsc::Receiver<Job>,
    stop: &AtomicBool,
    stats: &ModelStats,
) {
    let parallel = batching.parallel;
    let mut admitted = 0u64;
    let mut active: Vec<Active> = Vec::with_capacity(parallel);
    // One sequence state (KV cache) per slot, allocated on first use and then reused.
    let mut free: Vec<Free> = Vec::with_capacity(parallel);
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
            admitted += 1;
            let can_allocate = active.len() + free.len() < parallel;
            let slot = take_slot(&mut free, &job.prompt, can_allocate);
            match start(engine, job, slot, admitted) {
                Ok(a) => active.push(a),
                Err(Some(slot)) => free.push(slot),
                Err(None) => {}
            }
        }
        reap(engine, &mut active, &mut free);
        shown.set(active.len());
        if active.is_empty() {
            if disconnected {
                break;
            }
            continue;
        }
        step(engine, &mut active, &batching, stats);
        reap(engine, &mut active, &mut free);
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

/// A slot for a job, in a reused sequence state if there is one (keeping the KV of the prompt's
/// first tokens where the slot's previous request had the same ones; at least the last prompt
/// token is computed, for its logits); the rest of its prompt is fed by the following steps.
/// On failure, gives back the slot (when it is still usable) after reporting the error to the
/// job.
fn start(
    engine: &dyn Engine,
    mut job: Job,
    reuse: Option<Free>,
    admitted: u64,
) -> Result<Active, Option<Free>> {
    drop(job.ticket.take());
    if job.events.is_closed() {
        return Err(reuse);
    }
    if job.prompt.is_empty() {
        let _ = job
            .events
            .send(Event::Error("the prompt has no tokens".into()));
        return Err(reuse);
    }
    let (seq, cached) = match reuse {
        Some(Free { mut seq, tokens }) => {
            let keep = common_prefix(&tokens, &job.prompt).min(job.prompt.len() - 1);
            match guarded("reset", || engine.keep_prefix(&mut seq, keep)) {
                Ok(kept) => (seq, kept.min(keep)),
                Err(e) => {
                    let _ = job.events.send(Event::Error(e.to_string()));
                    return Err(None);
                }
            }
        }
        None => match guarded("new sequence", || engine.new_sequence()) {
            Ok(s) => (s, 0),
            Err(e) => {
                let _ = job.events.send(Event::Error(e.to_string()));
                return Err(None);
            }
        },
    };
    let n_prompt = job.prompt.len();
    let greedy = job.sampling.temperature <= 0.0;
    Ok(Active {
        events: job.events,
        seq,
        sampler: engine.sampler(&job.sampling),
        decoder: engine.decoder(),
        stop: StopMatcher::new(job.stop),
        history: job.prompt,
        n_prompt,
        fed: cached,
        cached,
        admitted,
        generated: 0,
        max_tokens: job.max_tokens.max(1),
        next: 0,
        done: false,
        greedy,
    })
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
        cached_tokens: a.cached,
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

/// How many tokens each active sequence feeds this step: one for each decoding sequence, then
/// prompt chunks, oldest admission first, within the step's budget. A prompt fed while nothing
/// decodes may use the whole budget (no stream to stall).
fn plan_step(active: &[Active], batching: &Batching) -> Vec<usize> {
    let decoding = active.iter().filter(|a| !a.prefilling()).count();
    let mut budget = batching.step_tokens.saturating_sub(decoding);
    let chunk = if decoding == 0 {
        batching.step_tokens
    } else {
        batching.prompt_chunk
    };
    let mut counts: Vec<usize> = active
        .iter()
        .map(|a| usize::from(!a.prefilling()))
        .collect();
    let mut waiting: Vec<usize> = (0..active.len())
        .filter(|&i| active[i].prefilling())
        .collect();
    waiting.sort_by_key(|&i| active[i].admitted);
    for i in waiting {
        let n = (active[i].n_prompt - active[i].fed).min(chunk).min(budget);
        counts[i] = n;
        budget -= n;
    }
    counts
}

/// Runs one step; if it fails with several sequences in it, runs each of them alone so that
/// only the ones at fault fail (the trait promises nothing advanced on error).
fn forward(
    engine: &dyn Engine,
    active: &mut [Active],
    counts: &[usize],
) -> Vec<Result<Vec<f32>, EngineError>> {
    let fed = counts.iter().filter(|&&n| n > 0).count();
    let result = {
        let mut seqs: Vec<&mut SeqState> = Vec::with_capacity(active.len());
        let mut tokens: Vec<&[u32]> = Vec::with_capacity(active.len());
        for (a, &n) in active.iter_mut().zip(counts) {
            seqs.push(&mut a.seq);
            tokens.push(if a.fed < a.n_prompt {
                &a.history[a.fed..a.fed + n]
            } else if n > 0 {
                std::slice::from_ref(&a.next)
            } else {
                &[]
            });
        }
        guarded("forward step", || engine.forward_mixed(&mut seqs, &tokens))
    };
    match result {
        Ok(logits) if logits.len() == active.len() => logits.into_iter().map(Ok).collect(),
        Ok(logits) => {
            let e = format!(
                "{} logits rows for {} sequences",
                logits.len(),
                active.len()
            );
            active
                .iter()
                .map(|_| Err(EngineError::Forward(e.clone())))
                .collect()
        }
        Err(e) if fed < 2 => active
            .iter()
            .map(|_| Err(EngineError::Forward(e.to_string())))
            .collect(),
        Err(_) => active
            .iter_mut()
            .zip(counts)
            .map(|(a, &n)| {
                if n == 0 {
                    return Ok(Vec::new());
                }
                let tokens: &[u32] = if a.fed < a.n_prompt {
                    &a.history[a.fed..a.fed + n]
                } else {
                    std::slice::from_ref(&a.next)
                };
                let seq = &mut a.seq;
                let mut out = guarded("forward step", || {
                    engine.forward_mixed(&mut [seq], &[tokens])
                })?;
                match out.pop() {
                    Some(l) if out.is_empty() => Ok(l),
                    _ => Err(EngineError::Forward("no logits for the sequence".into())),
                }
            })
            .collect(),
    }
}

/// One forward step for all active sequences: decode tokens and prompt chunks together.
fn step(engine: &dyn Engine, active: &mut [Active], batching: &Batching, stats: &ModelStats) {
    let t0 = Instant::now();
    let counts = plan_step(active, batching);
    let results = forward(engine, active, &counts);
    let took = t0.elapsed();
    let mut prompt_tokens = 0;
    let mut work = Vec::with_capacity(active.len());
    for ((a, &n), r) in active.iter_mut().zip(&counts).zip(results) {
        if n == 0 {
            continue;
        }
        match r {
            Err(e) => fail(a, e),
            Ok(logits) => {
                if a.prefilling() {
                    a.fed += n;
                    prompt_tokens += n;
                    if a.prefilling() {
                        continue;
                    }
                }
                work.push((a, logits));
            }
        }
    }
    let batch = counts.iter().filter(|&&n| n > 0).count();
    stats.record_step(batch, work.len(), prompt_tokens, counts.iter().sum(), took);
    let heavy = work.iter().filter(|(a, _)| !a.greedy).count();
    let lanes = heavy.min(sampling_threads());
    if lanes < 2 {
        for (a, l) in work {
            advance(engine, a, l, stats);
        }
    } else {
        // Sampling with a temperature sorts the whole vocabulary (milliseconds per
        // sequence) while the compute pool idles: sample the sequences side by side.
        let queue = Mutex::new(work.into_iter());
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;
    use crate::config::ModelConfig;
    use crate::engine::fake::{FakeLoader, FakeOptions, FakeStats};
    use crate::engine::Loader;

    fn free(tokens: &[u32]) -> Free {
        Free {
            seq: Box::new(()),
            tokens: tokens.to_vec(),
        }
    }

    /// The longest shared prefix wins when it is at least half the prompt; otherwise a new slot
    /// while there is room, else the least recently freed one.
    #[test]
    fn slot_choice_follows_the_prompt_prefix() {
        let mut slots = vec![free(&[1, 5, 6]), free(&[1, 2, 3, 4]), free(&[1, 2, 9])];
        let got = take_slot(&mut slots, &[1, 2, 3, 7], true).unwrap();
        assert_eq!(got.tokens, [1, 2, 3, 4]);
        assert_eq!(slots.len(), 2);
        // [1] of [1, 8, 8] is less than half: a new slot if one may be made ...
        assert!(take_slot(&mut slots, &[1, 8, 8], true).is_none());
        // ... else the least recently freed one.
        let got = take_slot(&mut slots, &[1, 8, 8], false).unwrap();
        assert_eq!(got.tokens, [1, 5, 6]);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2]), 2);
        assert!(take_slot(&mut Vec::new(), &[1], false).is_none());
    }

    fn fake(opts: FakeOptions) -> (Arc<dyn Engine>, Arc<FakeStats>) {
        let loader = FakeLoader::new(opts);
        let cfg = ModelConfig::new("m", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        (loader.load(&cfg).unwrap(), loader.stats.clone())
    }

    fn job(
        engine: &dyn Engine,
        prompt: &str,
        max_tokens: usize,
    ) -> (Job, UnboundedReceiver<Event>) {
        let (tx, rx) = unbounded_channel();
        let job = Job {
            prompt: engine.tokenize(prompt).unwrap(),
            max_tokens,
            sampling: Sampling {
                temperature: 0.0,
                ..Default::default()
            },
            stop: Vec::new(),
            events: tx,
            ticket: None,
        };
        (job, rx)
    }

    /// The text and the finish of a job, in order.
    fn collect(rx: &mut UnboundedReceiver<Event>) -> (String, Finish) {
        let mut text = String::new();
        loop {
            match rx.blocking_recv() {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(f)) => return (text, f),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    const SMALL: Batching = Batching {
        parallel: 2,
        prompt_chunk: 8,
        step_tokens: 16,
    };

    const LONG_PROMPT: &str = "a prompt long enough for several chunks of eight";

    #[test]
    fn prompt_admitted_while_another_decodes_rides_along_and_matches_alone() {
        let opts = FakeOptions {
            endless: true,
            step_delay: Duration::from_millis(2),
            n_ctx: 256,
            ..Default::default()
        };
        // Alone.
        let (engine, _) = fake(opts.clone());
        let stats = Arc::new(ModelStats::default());
        let mut w = Worker::spawn_batching("alone", engine.clone(), SMALL, stats).unwrap();
        let (b, mut b_rx) = job(engine.as_ref(), LONG_PROMPT, 10);
        let n_prompt = b.prompt.len();
        assert!(n_prompt > 3 * SMALL.prompt_chunk);
        w.submit(b).map_err(|_| "submit").unwrap();
        let alone = collect(&mut b_rx);
        w.shutdown();

        // Admitted while a long generation decodes.
        let (engine, fake_stats) = fake(opts);
        let stats = Arc::new(ModelStats::default());
        let mut w = Worker::spawn_batching("mixed", engine.clone(), SMALL, stats.clone()).unwrap();
        let (a, mut a_rx) = job(engine.as_ref(), "hi", 80);
        w.submit(a).map_err(|_| "submit").unwrap();
        let mut a_text = match a_rx.blocking_recv() {
            Some(Event::Text(t)) => t,
            other => panic!("unexpected event {other:?}"),
        };
        let (b, mut b_rx) = job(engine.as_ref(), LONG_PROMPT, 10);
        w.submit(b).map_err(|_| "submit").unwrap();
        let together = collect(&mut b_rx);
        let (rest, a_finish) = collect(&mut a_rx);
        a_text.push_str(&rest);
        w.shutdown();

        assert_eq!(together, alone);
        assert_eq!(together.1.prompt_tokens, n_prompt);
        assert_eq!(together.1.completion_tokens, 10);
        // The running stream went on undisturbed.
        assert_eq!(a_finish.completion_tokens, 80);
        assert_eq!(a_text, "Hello there!".repeat(7)[..80]);
        // Every chunk of the new prompt shared a step with the decoding stream.
        let chunks = n_prompt.div_ceil(SMALL.prompt_chunk) as u64;
        let mixed = stats.mixed_steps.load(Ordering::SeqCst);
        assert!(mixed >= chunks, "{mixed} mixed steps for {chunks} chunks");
        let pairs = stats
            .batch_sizes()
            .into_iter()
            .find(|&(b, _)| b == 2)
            .map_or(0, |(_, n)| n);
        assert!(pairs >= chunks + 9, "{pairs} steps of two sequences");
        assert_eq!(fake_stats.mixed_steps.load(Ordering::SeqCst) as u64, mixed);
        assert!(fake_stats.max_chunk.load(Ordering::SeqCst) <= SMALL.prompt_chunk);
        assert!(fake_stats.max_step_tokens.load(Ordering::SeqCst) <= SMALL.step_tokens);
    }

    #[test]
    fn a_failing_prompt_fails_alone() {
        let opts = FakeOptions {
            endless: true,
            step_delay: Duration::from_millis(2),
            n_ctx: 256,
            ..Default::default()
        };
        let (engine, _) = fake(opts);
        let stats = Arc::new(ModelStats::default());
        let mut w = Worker::spawn_batching("m", engine.clone(), SMALL, stats).unwrap();
        let (a, mut a_rx) = job(engine.as_ref(), "hi", 40);
        w.submit(a).map_err(|_| "submit").unwrap();
        assert!(matches!(a_rx.blocking_recv(), Some(Event::Text(_))));
        let (b, mut b_rx) = job(engine.as_ref(), "PANIC", 10);
        w.submit(b).map_err(|_| "submit").unwrap();
        match b_rx.blocking_recv() {
            Some(Event::Error(e)) => assert!(e.contains("panicked"), "{e}"),
            other => panic!("unexpected event {other:?}"),
        }
        let (_, a_finish) = collect(&mut a_rx);
        assert_eq!(a_finish.completion_tokens, 40);
        w.shutdown();
    }
}
