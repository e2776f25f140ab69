//! The residency manager: keep a budget of layers resident, stream the rest ahead of compute.
//!
//! Plain mmap thrashes once a model exceeds RAM: the page cache's LRU evicts exactly the layer
//! needed next. Here the model is cut into *units* (each transformer layer's attention block and
//! feed-forward block, plus the output matrix) that are each read once per token. Half-layer
//! units keep the ring small (two buffers of the largest block, not of the largest layer), so
//! under a tight cap the ring still has two buffers and reading overlaps compute. Resident units
//! are used straight from the mapping (kept hot, optionally mlocked). Streamed units are cut into
//! *pieces* of whole tensors in the order the forward pass uses them (a piece holds at most the
//! largest tensor, or [`PIECE_MIN`] when that is larger), and a prefetch thread reads piece after
//! piece with `pread` (buffered with kernel readahead, each piece's page cache dropped right after
//! it is copied; or O_DIRECT, so nothing enters the page cache) into a small ring of anonymous
//! piece-sized buffers while the previous piece computes. Pieces keep the memory in flight small
//! (1.7B Q8_0: 4 x 17.8 MB instead of 4 x 53.5 MB for half layers), which leaves more of a cap to
//! resident layers. Each token reads exactly the streamed bytes.

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
    /// Every byte of the unit (what a resident unit keeps in memory).
    pub parts: Vec<Part>,
    /// The unit cut into pieces for streaming, in the order the forward pass uses its tensors.
    pub pieces: Vec<Vec<Part>>,
}

impl Unit {
    pub fn bytes(&self) -> u64 {
        parts_bytes(&self.parts)
    }

    /// The largest piece (what one ring buffer must hold).
    pub fn max_piece_bytes(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| parts_bytes(p))
            .max()
            .unwrap_or(0)
    }
}

pub fn parts_bytes(parts: &[Part]) -> u64 {
    parts.iter().map(|p| p.range.len() as u64).sum()
}

/// Pieces are at least this large (when a unit has that much), so small models are not cut
/// into many tiny reads; larger tensors make larger pieces.
pub const PIECE_MIN: u64 = 4 << 20;

/// Tensors lying next to each other in a shard become one part (one read covers both).
fn merge_parts(refs: &[&WRef]) -> Vec<Part> {
    let mut spans: Vec<(usize, Range<usize>)> = refs.iter().map(|r| (r.shard, r.range())).collect();
    spans.sort_by_key(|(s, r)| (*s, r.start));
    let mut parts: Vec<Part> = Vec::new();
    for (shard, r) in spans {
        match parts.last_mut() {
            // Merge when the gap is small (alignment padding).
            Some(p) if p.shard == shard && r.start <= p.range.end + 4096 => {
                p.range.end = p.range.end.max(r.end);
            }
            _ => parts.push(Part { shard, range: r }),
        }
    }
    parts
}

/// The piece size for `w`: its largest layer tensor (no tensor is split), at least `min`.
pub fn piece_cap(w: &Weights, min: u64) -> u64 {
    w.layers
        .iter()
        .flat_map(|l| l.all())
        .map(|t| t.len as u64)
        .max()
        .unwrap_or(0)
        .max(min)
}

/// Cuts the weights into units: for each layer its attention then its feed-forward block
/// ([`attention_unit`], [`feed_forward_unit`]), then the output matrix ([`output_unit`]).
/// Each unit's tensors, in the order the forward pass uses them, are grouped greedily into
/// pieces of at most `cap` bytes (a tensor larger than `cap` is a piece of its own).
pub fn units(w: &Weights, cap: u64) -> Vec<Unit> {
    let mut out = Vec::new();
    let mk = |name: String, refs: Vec<&WRef>| {
        let mut pieces: Vec<Vec<&WRef>> = Vec::new();
        let mut size = 0u64;
        for r in &refs {
            match pieces.last_mut() {
                Some(p) if size + r.len as u64 <= cap => {
                    p.push(r);
                    size += r.len as u64;
                }
                _ => {
                    pieces.push(vec![r]);
                    size = r.len as u64;
                }
            }
        }
        Unit {
            name,
            parts: merge_parts(&refs),
            pieces: pieces.iter().map(|p| merge_parts(p)).collect(),
        }
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

/// A streamed piece's bytes, filled by the prefetch thread.
pub struct Filled {
    unit: usize,
    piece: usize,
    /// Whether this is the unit's last piece.
    last: bool,
    parts: Vec<Part>,
    buf: Vec<u8>,
    /// For each part of the piece: where its first byte lies in `buf`.
    starts: Vec<usize>,
}

impl Filled {
    pub fn unit(&self) -> usize {
        self.unit
    }

    pub fn piece(&self) -> usize {
        self.piece
    }

    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Whether `w` lies in this piece.
    pub fn contains(&self, w: &WRef) -> bool {
        self.bytes(w).is_some()
    }

    /// The bytes of `w`, if it lies in this piece.
    pub fn bytes(&self, w: &WRef) -> Option<&[u8]> {
        let parts = &self.parts;
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
    /// the piece and the next [`READ_AHEAD`] pieces (POSIX_FADV_WILLNEED, several requests in
    /// flight) and a used piece's page cache is dropped (POSIX_FADV_DONTNEED). Faster on disks
    /// that want depth (this project's VM disk: 2.1-2.35 GB/s against 1.45-1.8 for 32 MB O_DIRECT
    /// reads), but `1 + READ_AHEAD` pieces sit in the page cache besides the ring, so the plan
    /// must have room for them ([`window_bytes`]).
    pub direct_io: bool,
}

/// Pieces read ahead by the kernel (buffered reads) beyond the one being copied.
pub const READ_AHEAD: usize = 1;

/// [`READ_AHEAD`], or `OUTCORE_STREAM_AHEAD` (pieces, 0-16) to compare depths.
pub fn read_ahead() -> usize {
    std::env::var("OUTCORE_STREAM_AHEAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n <= 16)
        .unwrap_or(READ_AHEAD)
}

/// The memory streaming occupies besides resident weights: `ring` buffers of `max_piece` bytes,
/// and with buffered reads the pieces in the page cache (the one being copied and those read
/// ahead).
pub fn window_bytes(max_piece: u64, ring: usize, direct_io: bool) -> u64 {
    let cached = if direct_io { 0 } else { 1 + read_ahead() };
    max_piece.saturating_mul((ring + cached) as u64)
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
        // The stream: every piece of every streamed unit, in forward-pass order.
        let order: Vec<(usize, usize)> = (0..units.len())
            .filter(|&u| !resident[u])
            .flat_map(|u| (0..units[u].pieces.len()).map(move |k| (u, k)))
            .collect();
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
            let max_piece = order
                .iter()
                .map(|&(u, k)| parts_bytes(&units[u].pieces[k]) as usize)
                .max()
                .unwrap_or(0);
            let max_parts = order
                .iter()
                .map(|&(u, k)| units[u].pieces[k].len())
                .max()
                .unwrap_or(1);
            let buf_len = max_piece + (max_parts + 1) * 2 * ALIGN;
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
            let pieces: Vec<Vec<Vec<Part>>> = units.iter().map(|u| u.pieces.clone()).collect();
            let c = counters.clone();
            let thread = std::thread::Builder::new()
                .name("outcore-prefetch".into())
                .spawn(move || prefetch_loop(files, direct, pieces, order, free_rx, full_tx, c))?;
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

    /// Waits for the first piece of a streamed unit (None for resident units).
    pub fn begin(&self, unit: usize) -> Option<Filled> {
        if self.is_resident(unit) {
            return None;
        }
        self.wait_for(unit, 0)
    }

    /// Gives `prev` back to the ring and waits for the unit's next piece (None after the last).
    pub fn next_piece(&self, prev: Filled) -> Option<Filled> {
        let (unit, piece, last) = (prev.unit, prev.piece, prev.last);
        self.end(Some(prev));
        if last {
            return None;
        }
        self.wait_for(unit, piece + 1)
    }

    fn wait_for(&self, unit: usize, piece: usize) -> Option<Filled> {
        let s = self.streamer.as_ref()?;
        let t0 = Instant::now();
        let rx = s.full_rx.lock().unwrap_or_else(|e| e.into_inner());
        let got = loop {
            match rx.recv() {
                // A forward pass that stopped early leaves the cycle ahead: skip to our piece.
                Ok(f) if (f.unit, f.piece) != (unit, piece) => {
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

    /// Gives a streamed piece's buffer back to the ring.
    pub fn end(&self, filled: Option<Filled>) {
        if let (Some(f), Some(s)) = (filled, self.streamer.as_ref()) {
            let _ = s.free_tx.send(f.buf);
        }
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
    pieces: Vec<Vec<Vec<Part>>>,
    order: Vec<(usize, usize)>,
    free_rx: Receiver<Vec<u8>>,
    full_tx: SyncSender<Filled>,
    c: Arc<StreamCounters>,
) {
    let parts = |(u, k): (usize, usize)| &pieces[u][k];
    let ahead = read_ahead();
    loop {
        for (i, &(u, k)) in order.iter().enumerate() {
            let Ok(mut buf) = free_rx.recv() else { return };
            let t0 = Instant::now();
            // Buffered reads: this piece and the next READ_AHEAD are read ahead by the kernel
            // while this one is copied; this one's page cache is dropped once copied.
            advise(&files, &direct, parts((u, k)), FileAdvice::WillNeed);
            for j in 1..=ahead.min(order.len() - 1) {
                let next = order[(i + j) % order.len()];
                advise(&files, &direct, parts(next), FileAdvice::WillNeed);
            }
            let got = fill(&files, &direct, parts((u, k)), &mut buf);
            advise(&files, &direct, parts((u, k)), FileAdvice::DontNeed);
            let starts = match got {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("outcore: prefetch of unit {u} piece {k} failed: {e}");
                    return;
                }
            };
            c.read_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            c.bytes_read
                .fetch_add(parts_bytes(parts((u, k))), Ordering::Relaxed);
            if k + 1 == pieces[u].len() {
                c.units_read.fetch_add(1, Ordering::Relaxed);
            }
            if full_tx
                .send(Filled {
                    unit: u,
                    piece: k,
                    last: k + 1 == pieces[u].len(),
                    parts: parts((u, k)).clone(),
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
