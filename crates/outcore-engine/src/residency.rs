//! The residency manager: keep a budget of layers resident, stream the rest ahead of compute.
//!
//! Plain mmap thrashes once a model exceeds RAM: the page cache's LRU evicts exactly the layer
//! needed next. Here the model is cut into *units* (each transformer layer's attention block and
//! feed-forward block, plus the output matrix) that are each read once per token. Half-layer
//! units keep the ring small (two buffers of the largest block, not of the largest layer), so
//! under a tight cap the ring still has two buffers and reading overlaps compute. Resident units
//! are used straight from the mapping (kept hot, optionally mlocked). Streamed units are read by
//! a prefetch thread with `pread` (buffered with kernel readahead, each unit's page cache dropped
//! right after it is copied; or O_DIRECT at the tightest caps, so nothing enters the page cache)
//! into a small ring of anonymous buffers, in the order the forward pass needs them, while the
//! previous unit computes. Each token therefore reads exactly the streamed bytes.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;

use outcore_format::mapping::{fadvise, FileAdvice};

use crate::weights::{WRef, Weights};

/// One piece of a unit: `range` of mapping/shard `shard`.
#[derive(Clone, Debug)]
pub struct Part {
    pub shard: usize,
    pub range: Range<usize>,
}

/// Units per transformer layer: its attention block, then its feed-forward block.
pub const UNITS_PER_LAYER: usize = 2;

/// The unit of layer `l`'s attention block.
pub fn attention_unit(l: usize) -> usize {
    l * UNITS_PER_LAYER
}

/// The unit of layer `l`'s feed-forward block.
pub fn feed_forward_unit(l: usize) -> usize {
    l * UNITS_PER_LAYER + 1
}

/// The unit of the output matrix in a model of `n_layers` layers (the last one).
pub fn output_unit(n_layers: usize) -> usize {
    n_layers * UNITS_PER_LAYER
}

/// The layer a unit belongs to (`None` for the output matrix).
pub fn unit_layer(u: usize, n_layers: usize) -> Option<usize> {
    (u < output_unit(n_layers)).then_some(u / UNITS_PER_LAYER)
}

/// A unit of residency: half a transformer layer or the output matrix.
#[derive(Clone, Debug)]
pub struct Unit {
    pub name: String,
    pub parts: Vec<Part>,
}

impl Unit {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.range.len() as u64).sum()
    }
}

/// Cuts the weights into units: for each layer its attention then its feed-forward block
/// ([`attention_unit`], [`feed_forward_unit`]), then the output matrix ([`output_unit`]).
/// Tensors of a unit that lie next to each other in a shard are merged into one part.
pub fn units(w: &Weights) -> Vec<Unit> {
    let mut out = Vec::new();
    let mk = |name: String, refs: Vec<&WRef>| {
        let mut spans: Vec<(usize, Range<usize>)> =
            refs.iter().map(|r| (r.shard, r.range())).collect();
        spans.sort_by_key(|(s, r)| (*s, r.start));
        let mut parts: Vec<Part> = Vec::new();
        for (shard, r) in spans {
            match parts.last_mut() {
                // Merge when the gap is small (alignment padding), so one read covers both.
                Some(p) if p.shard == shard && r.start <= p.range.end + 4096 => {
                    p.range.end = p.range.end.max(r.end);
                }
                _ => parts.push(Part { shard, range: r }),
            }
        }
        Unit { name, parts }
    };
    for (l, lw) in w.layers.iter().enumerate() {
        out.push(mk(format!("layer {l} attention"), lw.attention().collect()));
        out.push(mk(
            format!("layer {l} feed-forward"),
            lw.feed_forward().collect(),
        ));
    }
    out.push(mk("output".to_string(), vec![&w.output]));
    out
}

/// Counters of the streaming (shared with the prefetch thread).
#[derive(Default, Debug)]
pub struct StreamCounters {
    pub bytes_read: AtomicU64,
    pub units_read: AtomicU64,
    pub read_ns: AtomicU64,
    pub stall_ns: AtomicU64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamStats {
    pub bytes_read: u64,
    pub units_read: u64,
    pub read_seconds: f64,
    pub stall_seconds: f64,
    pub direct_io: bool,
}

/// A streamed unit's bytes, filled by the prefetch thread.
pub struct Filled {
    unit: usize,
    buf: Vec<u8>,
    /// For each part of the unit: where its first byte lies in `buf`.
    starts: Vec<usize>,
}

impl Filled {
    /// The bytes of `w` (which must belong to this unit).
    pub fn bytes(&self, parts: &[Part], w: &WRef) -> Option<&[u8]> {
        for (p, &s) in parts.iter().zip(&self.starts) {
            if p.shard == w.shard && p.range.start <= w.offset && w.offset + w.len <= p.range.end {
                let at = s + (w.offset - p.range.start);
                return Some(&self.buf[at..at + w.len]);
            }
        }
        None
    }
}

struct Streamer {
    full_rx: Mutex<Receiver<Filled>>,
    free_tx: Sender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

/// What to keep resident and how to stream.
#[derive(Clone, Debug)]
pub struct ResidencyConfig {
    /// Per unit (layers, then output): true = resident.
    pub resident: Vec<bool>,
    /// Buffers in the ring (>= 1; 2 overlaps reading with compute).
    pub ring: usize,
    /// Try O_DIRECT reads. Otherwise buffered reads with readahead: the kernel is told to read
    /// the unit and the next one ahead (POSIX_FADV_WILLNEED, several requests in flight) and a
    /// used unit's page cache is dropped (POSIX_FADV_DONTNEED). Faster on disks that want depth
    /// (this project's VM disk: 2.1-2.35 GB/s against 1.45-1.8 for 32 MB O_DIRECT reads), but up
    /// to two units sit in the page cache besides the ring, so the plan must have room for them.
    pub direct_io: bool,
}

pub struct Residency {
    pub units: Vec<Unit>,
    pub resident: Vec<bool>,
    streamer: Option<Streamer>,
    counters: Arc<StreamCounters>,
    direct_io: bool,
    /// One forward pass at a time may consume the stream.
    pub gate: Mutex<()>,
}

const ALIGN: usize = 4096;
/// Bytes per `pread`. One 32 MB O_DIRECT read keeps several requests in flight below it: on
/// this project's VM disk 4 MB reads gave 1.1-1.2 GB/s, 32 MB reads 1.45-1.8 GB/s (64 MB no
/// better; two threads of 32 MB reads worse), measured cold with drop_caches.
const CHUNK: usize = 32 << 20;

fn open_shard(path: &PathBuf, direct: bool) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Reads `parts` into `buf`; returns where each part starts in `buf`.
/// Buffered shards: asks the kernel to read `parts` in now, or to drop their page cache.
fn advise(files: &[File], direct: &[bool], parts: &[Part], advice: FileAdvice) {
    for p in parts {
        if !direct[p.shard] {
            // Advice only: a failure costs speed, never correctness.
            let _ = fadvise(&files[p.shard], p.range.clone(), advice);
        }
    }
}

fn fill(
    files: &[File],
    direct: &[bool],
    parts: &[Part],
    buf: &mut [u8],
) -> std::io::Result<Vec<usize>> {
    let mut starts = Vec::with_capacity(parts.len());
    let mut at = buf.as_ptr().align_offset(ALIGN);
    for p in parts {
        let f = &files[p.shard];
        let (file_start, skip) = if direct[p.shard] {
            (p.range.start & !(ALIGN - 1), p.range.start % ALIGN)
        } else {
            (p.range.start, 0)
        };
        let want = skip + p.range.len();
        let len = if direct[p.shard] {
            want.div_ceil(ALIGN) * ALIGN
        } else {
            want
        };
        if buf.len() < at + len {
            return Err(std::io::Error::other("ring buffer too small for unit"));
        }
        let mut done = 0;
        while done < want {
            let n = CHUNK.min(len - done);
            let got = f.read_at(
                &mut buf[at + done..at + done + n],
                (file_start + done) as u64,
            )?;
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "model file shorter than expected",
                ));
            }
            done += got;
        }
        starts.push(at + skip);
        at += len;
        at += buf[at..].as_ptr().align_offset(ALIGN).min(buf.len() - at);
    }
    Ok(starts)
}

impl Residency {
    /// Starts the prefetch thread when some unit is streamed. `paths[i]` is the file of shard i.
    pub fn new(
        units: Vec<Unit>,
        cfg: &ResidencyConfig,
        paths: &[PathBuf],
    ) -> std::io::Result<Residency> {
        let resident = cfg.resident.clone();
        assert_eq!(resident.len(), units.len(), "one residency flag per unit");
        let counters = Arc::new(StreamCounters::default());
        let order: Vec<usize> = (0..units.len()).filter(|&u| !resident[u]).collect();
        let mut direct_io = false;
        let streamer = if order.is_empty() {
            None
        } else {
            let mut files = Vec::new();
            let mut direct = Vec::new();
            for p in paths {
                match open_shard(p, cfg.direct_io) {
                    Ok(f) if cfg.direct_io => {
                        files.push(f);
                        direct.push(true);
                    }
                    _ => {
                        files.push(open_shard(p, false)?);
                        direct.push(false);
                    }
                }
            }
            // Probe that O_DIRECT reads work on this filesystem; fall back per shard if not.
            let max_unit = order
                .iter()
                .map(|&u| units[u].bytes() as usize)
                .max()
                .unwrap_or(0);
            let max_parts = order
                .iter()
                .map(|&u| units[u].parts.len())
                .max()
                .unwrap_or(1);
            let buf_len = max_unit + (max_parts + 1) * 2 * ALIGN;
            for (i, p) in paths.iter().enumerate() {
                if direct[i] {
                    let mut probe = vec![0u8; 3 * ALIGN];
                    let off = probe.as_ptr().align_offset(ALIGN);
                    if files[i].read_at(&mut probe[off..off + ALIGN], 0).is_err() {
                        files[i] = open_shard(p, false)?;
                        direct[i] = false;
                    }
                }
            }
            direct_io = direct.iter().any(|&d| d);
            let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
            let ring = cfg.ring.max(1);
            let (full_tx, full_rx) = mpsc::sync_channel::<Filled>(ring);
            for _ in 0..ring {
                free_tx.send(vec![0u8; buf_len]).expect("receiver alive");
            }
            let parts: Vec<Vec<Part>> = units.iter().map(|u| u.parts.clone()).collect();
            let c = counters.clone();
            let thread = std::thread::Builder::new()
                .name("outcore-prefetch".into())
                .spawn(move || prefetch_loop(files, direct, parts, order, free_rx, full_tx, c))?;
            Some(Streamer {
                full_rx: Mutex::new(full_rx),
                free_tx,
                thread: Some(thread),
            })
        };
        Ok(Residency {
            units,
            resident,
            streamer,
            counters,
            direct_io,
            gate: Mutex::new(()),
        })
    }

    pub fn is_streaming(&self) -> bool {
        self.streamer.is_some()
    }

    pub fn is_resident(&self, unit: usize) -> bool {
        self.resident.get(unit).copied().unwrap_or(true)
    }

    pub fn resident_bytes(&self) -> u64 {
        self.units
            .iter()
            .zip(&self.resident)
            .filter(|(_, &r)| r)
            .map(|(u, _)| u.bytes())
            .sum()
    }

    pub fn streamed_bytes(&self) -> u64 {
        self.units
            .iter()
            .zip(&self.resident)
            .filter(|(_, &r)| !r)
            .map(|(u, _)| u.bytes())
            .sum()
    }

    /// Waits for a streamed unit's bytes (None for resident units).
    pub fn begin(&self, unit: usize) -> Option<Filled> {
        if self.is_resident(unit) {
            return None;
        }
        let s = self.streamer.as_ref()?;
        let t0 = Instant::now();
        let rx = s.full_rx.lock().unwrap_or_else(|e| e.into_inner());
        let got = loop {
            match rx.recv() {
                // A forward pass that stopped early leaves the cycle ahead: skip to our unit.
                Ok(f) if f.unit != unit => {
                    let _ = s.free_tx.send(f.buf);
                }
                Ok(f) => break Some(f),
                Err(_) => break None,
            }
        };
        self.counters
            .stall_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        got
    }

    /// Gives a streamed unit's buffer back to the ring.
    pub fn end(&self, filled: Option<Filled>) {
        if let (Some(f), Some(s)) = (filled, self.streamer.as_ref()) {
            let _ = s.free_tx.send(f.buf);
        }
    }

    pub fn parts(&self, unit: usize) -> &[Part] {
        &self.units[unit].parts
    }

    pub fn stats(&self) -> StreamStats {
        let c = &self.counters;
        StreamStats {
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            units_read: c.units_read.load(Ordering::Relaxed),
            read_seconds: c.read_ns.load(Ordering::Relaxed) as f64 / 1e9,
            stall_seconds: c.stall_ns.load(Ordering::Relaxed) as f64 / 1e9,
            direct_io: self.direct_io,
        }
    }
}

impl Drop for Residency {
    fn drop(&mut self) {
        if let Some(mut s) = self.streamer.take() {
            let thread = s.thread.take();
            // Closing both channels ends the prefetch loop.
            drop(s);
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

fn prefetch_loop(
    files: Vec<File>,
    direct: Vec<bool>,
    parts: Vec<Vec<Part>>,
    order: Vec<usize>,
    free_rx: Receiver<Vec<u8>>,
    full_tx: SyncSender<Filled>,
    c: Arc<StreamCounters>,
) {
    loop {
        for (k, &u) in order.iter().enumerate() {
            let Ok(mut buf) = free_rx.recv() else { return };
            let t0 = Instant::now();
            // Buffered reads: this unit and the next one are read ahead by the kernel while
            // this one is copied; this one's page cache is dropped once copied.
            let next = order[(k + 1) % order.len()];
            advise(&files, &direct, &parts[u], FileAdvice::WillNeed);
            advise(&files, &direct, &parts[next], FileAdvice::WillNeed);
            let got = fill(&files, &direct, &parts[u], &mut buf);
            advise(&files, &direct, &parts[u], FileAdvice::DontNeed);
            let starts = match got {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("outcore: prefetch of unit {u} failed: {e}");
                    return;
                }
            };
            c.read_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            c.bytes_read.fetch_add(
                parts[u].iter().map(|p| p.range.len() as u64).sum(),
                Ordering::Relaxed,
            );
            c.units_read.fetch_add(1, Ordering::Relaxed);
            if full_tx
                .send(Filled {
                    unit: u,
                    buf,
                    starts,
                })
                .is_err()
            {
                return;
            }
        }
    }
}
