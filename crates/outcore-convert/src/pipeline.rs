//! The streaming core shared by convert, quantize and synth: for each output tensor, in file
//! order, produce f32 rows a chunk at a time, encode them in parallel over row blocks (rayon),
//! append the chunk to the [`GgufWriter`], and let the source drop the pages it no longer needs.
//!
//! Memory: one chunk of encoded output, the f32 rows of the blocks in flight and the source pages
//! of the chunk, which are unmapped (MADV_DONTNEED) and dropped from the page cache
//! (POSIX_FADV_DONTNEED) as soon as the chunk is written, so a memory-capped cgroup is not charged
//! for them. So the peak does not grow with the model: a chunk is at most [`STANDARD_CHUNK`] bytes
//! of f32 in standard mode and [`LOW_MEMORY_CHUNK`] in low-memory mode.
//!
//! Throughput: the next chunk's source pages are requested (MADV_WILLNEED, on top of
//! MADV_SEQUENTIAL read-ahead) before the current chunk is quantized, so the disk reads while the
//! cores quantize; the output is `fdatasync`ed in the background every [`FLUSH_EVERY`] bytes so
//! the disk writes all along instead of dirty pages piling up until the final fsync.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outcore_format::{AtomicFile, GgmlType, GgufWriter, Metadata};
use rayon::prelude::*;

use crate::codec::encode_row;
use crate::error::{ConvertError, Result};

/// f32 bytes per chunk in standard mode.
pub const STANDARD_CHUNK: usize = 64 << 20;
/// f32 bytes per chunk in low-memory mode.
pub const LOW_MEMORY_CHUNK: usize = 16 << 20;

/// Produces the rows of one output tensor as f32.
pub trait RowSource: Sync {
    /// Fills `out` (a whole number of rows) with rows `first..` of the tensor.
    fn fill(&self, first: usize, out: &mut [f32]) -> Result<()>;
    /// Rows `first..first + n` will be needed next: start reading their source in the background.
    fn prefetch(&self, _first: usize, _n: usize) {}
    /// Rows `first..first + n` are written; their source pages may be unmapped, and with
    /// `drop_cache` dropped from the page cache too.
    fn release(&self, _first: usize, _n: usize, _drop_cache: bool) {}
    /// Chunks start and end on multiples of this many rows (a permuted head stays whole).
    fn row_align(&self) -> usize {
        1
    }
    /// Bytes this tensor occupies in the input (for progress and throughput).
    fn input_bytes(&self) -> u64;
    /// The tensor's bytes, already in the output type: copied as they are instead of re-encoded.
    fn raw(&self) -> Option<&[u8]> {
        None
    }
}

/// One tensor of the output file.
pub struct OutTensor<'a> {
    pub name: String,
    /// ggml order: shape[0] is the row length.
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    pub source: Box<dyn RowSource + 'a>,
}

impl OutTensor<'_> {
    pub fn row_len(&self) -> usize {
        self.shape.first().copied().unwrap_or(1) as usize
    }

    pub fn n_rows(&self) -> usize {
        self.shape.iter().skip(1).product::<u64>() as usize
    }

    pub fn f32_bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * 4
    }
}

/// How much memory a run may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Chunks of up to [`STANDARD_CHUNK`] bytes of f32.
    Standard,
    /// Chunks of up to [`LOW_MEMORY_CHUNK`] bytes of f32.
    LowMemory,
}

/// Receives progress in input bytes.
pub trait Progress: Sync {
    fn start(&self, _total_input: u64) {}
    fn advance(&self, _input_bytes: u64) {}
    fn tensor(&self, _name: &str, _ty: GgmlType) {}
    fn finish(&self) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// What a run wrote.
#[derive(Clone, Debug, Default)]
pub struct WriteStats {
    pub tensors: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub elapsed: Duration,
    /// Output tensors per type.
    pub types: Vec<(GgmlType, usize)>,
}

/// Checks that every tensor can be encoded as planned (before anything is written).
pub fn check_encodable(tensors: &[OutTensor<'_>]) -> Result<()> {
    for t in tensors {
        if t.ty.row_bytes(t.row_len() as u64).is_none() {
            return Err(ConvertError::BadRowLength {
                tensor: t.name.clone(),
                ty: t.ty,
                n_cols: t.row_len() as u64,
                block: t.ty.block_size(),
            });
        }
        if t.source.raw().is_none() && !crate::codec::can_encode(t.ty) {
            return Err(ConvertError::Kernel {
                tensor: t.name.clone(),
                ty: t.ty,
                problem: "no quantizer available for this type".into(),
            });
        }
    }
    Ok(())
}

/// Where encoded tensors go, one after another, each in declared order.
pub trait Sink {
    fn begin_tensor(&mut self, name: &str) -> Result<()>;
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()>;
    fn end_tensor(&mut self) -> Result<()>;
}

impl Sink for GgufWriter {
    fn begin_tensor(&mut self, name: &str) -> Result<()> {
        Ok(GgufWriter::begin_tensor(self, name)?)
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(GgufWriter::write_chunk(self, bytes)?)
    }

    fn end_tensor(&mut self) -> Result<()> {
        Ok(GgufWriter::end_tensor(self)?)
    }
}

/// Writes `tensors` (in order) with `metadata` to `path` atomically.
pub fn write_gguf(
    path: &Path,
    force: bool,
    metadata: &Metadata,
    tensors: Vec<OutTensor<'_>>,
    mode: Mode,
    threads: usize,
    progress: &dyn Progress,
) -> Result<WriteStats> {
    check_encodable(&tensors)?;
    let infos: Vec<(String, GgmlType, Vec<u64>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.ty, t.shape.clone()))
        .collect();
    let out = AtomicFile::create(path, force)?;
    // A second handle on the temporary file, for the background flusher (best effort: without
    // it everything is flushed by the fsync in `finish`).
    let flush_handle = std::fs::File::open(out.temp_path()).ok();
    let mut writer = GgufWriter::new(out, metadata, infos, 32)?;
    let stats = std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        if let Some(file) = flush_handle {
            s.spawn(move || {
                while rx.recv().is_ok() {
                    // Errors surface in the final fsync of `finish`.
                    let _ = file.sync_data();
                }
            });
        }
        let mut sink = FlushingSink {
            inner: &mut writer,
            tx,
            unsynced: 0,
        };
        stream(&tensors, &mut sink, mode, threads, progress)
        // `sink` (and with it the sender) drops here, which ends the flusher.
    })?;
    writer.finish()?;
    Ok(stats)
}

/// Written bytes between two background flushes of the output.
pub const FLUSH_EVERY: u64 = 64 << 20;

/// Passes chunks to the writer and, every [`FLUSH_EVERY`] bytes, asks a background thread to
/// `fdatasync` the output. The disk then writes while the next chunks are read and quantized,
/// instead of dirty pages piling up until the final fsync; inside a memory cgroup (which is
/// charged for dirty page cache and cannot reclaim it until it is written) this keeps the
/// conversion from stalling in reclaim.
struct FlushingSink<'w> {
    inner: &'w mut GgufWriter,
    tx: mpsc::SyncSender<()>,
    unsynced: u64,
}

impl Sink for FlushingSink<'_> {
    fn begin_tensor(&mut self, name: &str) -> Result<()> {
        Sink::begin_tensor(self.inner, name)
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        Sink::write_chunk(self.inner, bytes)?;
        self.unsynced += bytes.len() as u64;
        // A flush already queued or running covers these bytes too once it runs: keep counting.
        if self.unsynced >= FLUSH_EVERY && self.tx.try_send(()).is_ok() {
            self.unsynced = 0;
        }
        Ok(())
    }

    fn end_tensor(&mut self) -> Result<()> {
        Sink::end_tensor(self.inner)
    }
}

/// Encodes every tensor into `sink`, in order, chunk by chunk.
pub fn stream(
    tensors: &[OutTensor<'_>],
    writer: &mut dyn Sink,
    mode: Mode,
    threads: usize,
    progress: &dyn Progress,
) -> Result<WriteStats> {
    check_encodable(tensors)?;
    let start = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ConvertError::Invalid {
            what: format!("thread pool: {e}"),
        })?;
    let total_in: u64 = tensors.iter().map(|t| t.source.input_bytes()).sum();
    progress.start(total_in);
    let mut stats = WriteStats {
        tensors: tensors.len(),
        ..Default::default()
    };
    let mut buf: Vec<u8> = Vec::new();
    for (ti, t) in tensors.iter().enumerate() {
        progress.tensor(&t.name, t.ty);
        writer.begin_tensor(&t.name)?;
        let row_len = t.row_len();
        let n_rows = t.n_rows();
        let row_bytes =
            t.ty.row_bytes(row_len as u64)
                .expect("checked by check_encodable") as usize;
        let chunk_rows = chunk_rows_of(t, mode);
        if ti == 0 {
            t.source.prefetch(0, chunk_rows);
        }
        let in_total = t.source.input_bytes();
        let mut done = 0usize;
        while done < n_rows {
            let rows = chunk_rows.min(n_rows - done);
            // Read ahead: the next chunk of this tensor, or the first of the next tensor, comes in
            // from disk while this one is quantized (its own pages were asked for one chunk ago).
            if done + rows < n_rows {
                t.source
                    .prefetch(done + rows, chunk_rows.min(n_rows - done - rows));
            } else if let Some(next) = tensors.get(ti + 1) {
                next.source.prefetch(0, chunk_rows_of(next, mode));
            }
            buf.resize(rows * row_bytes, 0);
            // Blocks of rows small enough to spread over the threads, large enough to amortise.
            let per_task = (rows / (threads.max(1) * 4))
                .max(1)
                .max(4096 / row_len.max(1))
                .min(rows);
            let src = &*t.source;
            let name = &t.name;
            let ty = t.ty;
            if let Some(raw) = src.raw() {
                buf.copy_from_slice(&raw[done * row_bytes..(done + rows) * row_bytes]);
            } else {
                pool.install(|| {
                    buf.par_chunks_mut(per_task * row_bytes)
                        .enumerate()
                        .try_for_each(|(i, dst)| {
                            let first = done + i * per_task;
                            let n = dst.len() / row_bytes;
                            let mut f = vec![0f32; n * row_len];
                            src.fill(first, &mut f)?;
                            for (frow, drow) in
                                f.chunks_exact(row_len).zip(dst.chunks_exact_mut(row_bytes))
                            {
                                encode_row(ty, frow, drow, name)?;
                            }
                            Ok::<(), ConvertError>(())
                        })
                })?;
            }
            writer.write_chunk(&buf)?;
            // The converter never reads these source pages again: unmap them and drop them from
            // the page cache in both modes. Under a memory cgroup the cache is charged to us, and
            // letting it fill the cap forces reclaim in the middle of reads and writes (1B f16 to
            // q8_0 in a 1.5 GB cgroup on a busy machine: 28 s keeping the cache, 9 s dropping it;
            // on a quiet one with the input in the host's cache both take ~5 s).
            t.source.release(done, rows, true);
            let before = in_total * done as u64 / n_rows as u64;
            done += rows;
            let after = in_total * done as u64 / n_rows as u64;
            progress.advance(after - before);
        }
        writer.end_tensor()?;
        stats.input_bytes += in_total;
        stats.output_bytes += (row_bytes * n_rows) as u64;
        match stats.types.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, n)) => *n += 1,
            None => stats.types.push((t.ty, 1)),
        }
        // Give the chunk buffer back between tensors so a large tensor's buffer does not linger.
        buf = Vec::new();
    }
    progress.finish();
    stats.elapsed = start.elapsed();
    Ok(stats)
}

/// Rows per chunk of `t`: about [`STANDARD_CHUNK`] or [`LOW_MEMORY_CHUNK`] bytes of f32, a
/// multiple of the source's row alignment, at least one row and at most the whole tensor.
fn chunk_rows_of(t: &OutTensor<'_>, mode: Mode) -> usize {
    let row_len = t.row_len();
    let align = t.source.row_align().max(1);
    let chunk_f32 = match mode {
        Mode::Standard => STANDARD_CHUNK,
        Mode::LowMemory => LOW_MEMORY_CHUNK,
    };
    let rows = ((chunk_f32 / (row_len * 4).max(1)).max(1) / align).max(1) * align;
    rows.min(t.n_rows()).max(1)
}

/// Peak resident set size of this process (VmHWM), from the engine's process statistics.
pub fn peak_rss() -> Option<u64> {
    outcore_engine::memory::ProcessStats::now()
        .ok()
        .map(|s| s.mem.vm_hwm)
}

/// A 1-D tensor held in memory (small generated tensors such as `rope_freqs`).
pub struct VecRows(pub Vec<f32>);

impl RowSource for VecRows {
    fn fill(&self, first: usize, out: &mut [f32]) -> Result<()> {
        let start = first * self.0.len();
        out.copy_from_slice(&self.0[start..start + out.len()]);
        Ok(())
    }

    fn input_bytes(&self) -> u64 {
        0
    }
}
