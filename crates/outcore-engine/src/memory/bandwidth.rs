//! Quick bandwidth probes feeding [`super::plan::predict_tokens_per_s`]: sequential disk reads
//! of a file (the model itself, ideally) and a streaming read over a RAM buffer. Each stops
//! after about 0.4 s so `outcore plan` stays interactive. They measure; tests only check
//! that they return sane shapes, never how fast they are.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::MemoryError;

/// Wall-clock cap of one probe.
const TIME_CAP: Duration = Duration::from_millis(400);
/// Read size; a multiple of any O_DIRECT alignment.
const CHUNK: usize = 4 << 20;
/// O_DIRECT wants buffer address, file offset and length aligned to the logical block size;
/// 4096 covers every common device.
const DIRECT_ALIGN: usize = 4096;
const EINVAL: i32 = 22;

/// `O_DIRECT` from the kernel's asm-generic/fcntl.h (it differs per architecture); `None` where
/// this file does not know it, and the probe then reads through the page cache.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "x86", target_arch = "riscv64")
))]
const O_DIRECT: Option<i32> = Some(0o40000);
#[cfg(all(target_os = "linux", any(target_arch = "aarch64", target_arch = "arm")))]
const O_DIRECT: Option<i32> = Some(0o200000);
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "riscv64",
        target_arch = "aarch64",
        target_arch = "arm"
    )
)))]
const O_DIRECT: Option<i32> = None;

/// Result of [`measure_disk_read_bw`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskBandwidth {
    pub bytes_per_s: f64,
    pub bytes_read: u64,
    pub seconds: f64,
    /// The reads bypassed the page cache (`O_DIRECT`).
    pub direct: bool,
    /// Why the figure may mislead, e.g. buffered reads served from the page cache.
    pub note: Option<String>,
}

/// Reads up to `bytes` of `path` sequentially from the start (stopping after ~0.4 s) and
/// reports the rate. Tries `O_DIRECT` so the page cache does not flatter the disk; where
/// the file system refuses it (tmpfs, some overlay setups) it falls back to buffered reads
/// and says so in `note`: without libc there is no `posix_fadvise(DONTNEED)` to drop cached
/// pages first, so a file read recently measures memory rather than disk.
pub fn measure_disk_read_bw(path: &Path, bytes: u64) -> Result<DiskBandwidth, MemoryError> {
    disk_read_bw(path, bytes, O_DIRECT)
}

fn disk_read_bw(
    path: &Path,
    bytes: u64,
    direct_flag: Option<i32>,
) -> Result<DiskBandwidth, MemoryError> {
    let io_err = |source| MemoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Over-allocate and start the working slice at the first 4096-aligned address: O_DIRECT
    // needs an aligned buffer and this gets one without unsafe code.
    let mut storage = vec![0u8; CHUNK + DIRECT_ALIGN];
    let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
    let aligned = start < DIRECT_ALIGN;
    let buf = if aligned {
        &mut storage[start..start + CHUNK]
    } else {
        &mut storage[..CHUNK]
    };

    let why_buffered = match (direct_flag, aligned) {
        (Some(flag), true) => {
            use std::os::unix::fs::OpenOptionsExt;
            match OpenOptions::new().read(true).custom_flags(flag).open(path) {
                Ok(mut f) => match timed_read(&mut f, buf, bytes, true) {
                    Ok((n, secs)) => return Ok(result(n, secs, true, None)),
                    // EINVAL on a read: the file system took the flag but not the I/O.
                    Err(e) if e.raw_os_error() == Some(EINVAL) => {
                        format!("O_DIRECT read refused ({e})")
                    }
                    Err(e) => return Err(io_err(e)),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(io_err(e)),
                Err(e) => format!("O_DIRECT open refused ({e})"),
            }
        }
        (Some(_), false) => "no aligned buffer for O_DIRECT".to_string(),
        (None, _) => "O_DIRECT not available here".to_string(),
    };
    let mut f = File::open(path).map_err(io_err)?;
    let (n, secs) = timed_read(&mut f, buf, bytes, false).map_err(io_err)?;
    let note = format!(
        "{why_buffered}; buffered reads may come from the page cache and overstate the disk"
    );
    Ok(result(n, secs, false, Some(note)))
}

fn result(bytes_read: u64, seconds: f64, direct: bool, note: Option<String>) -> DiskBandwidth {
    DiskBandwidth {
        bytes_per_s: if seconds > 0.0 {
            bytes_read as f64 / seconds
        } else {
            0.0
        },
        bytes_read,
        seconds,
        direct,
        note,
    }
}

/// Sequential reads until `want` bytes, EOF or the time cap. With `direct`, every request
/// length stays a multiple of [`DIRECT_ALIGN`] (the last one may return short at EOF).
fn timed_read(f: &mut File, buf: &mut [u8], want: u64, direct: bool) -> io::Result<(u64, f64)> {
    let t0 = Instant::now();
    let mut total = 0u64;
    while total < want && t0.elapsed() < TIME_CAP {
        let left = usize::try_from(want - total)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let len = if direct {
            left.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
        } else {
            left
        }
        .min(buf.len());
        let n = match f.read(&mut buf[..len]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
    }
    std::hint::black_box(&buf);
    Ok((total.min(want), t0.elapsed().as_secs_f64()))
}

/// Streaming-read bandwidth of RAM, in bytes/s, with every core reading its share (one core
/// alone cannot saturate the memory controller): the best of 3 passes summing a 256 MB buffer
/// (large enough to defeat the caches). About 0.2 s, most of it first-touching the buffer.
pub fn measure_mem_bw() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    measure_mem_bw_threads(256 << 20, cores)
}

/// [`measure_mem_bw`] over a buffer of `bytes` (rounded down to 64 bytes, at least 64), one thread.
pub fn measure_mem_bw_over(bytes: usize) -> f64 {
    measure_mem_bw_threads(bytes, 1)
}

/// [`measure_mem_bw`] over a buffer of `bytes` read by `threads` threads in equal parts.
pub fn measure_mem_bw_threads(bytes: usize, threads: usize) -> f64 {
    let threads = threads.max(1);
    let words = (bytes / 8).max(8 * threads) & !7;
    // A non-zero fill writes every page, so the passes below read real memory rather than
    // the shared zero page.
    let data = vec![1u64; words];
    let t_all = Instant::now();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let part = (words / threads) & !7;
        std::thread::scope(|sc| {
            for c in data.chunks(part.max(8)) {
                sc.spawn(move || std::hint::black_box(sum_words(std::hint::black_box(c))));
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
        if t_all.elapsed() > TIME_CAP {
            break;
        }
    }
    if best > 0.0 {
        (words * 8) as f64 / best
    } else {
        0.0
    }
}

/// Eight independent accumulators so the loop is bound by loads, not by one add chain.
fn sum_words(data: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for c in data.chunks_exact(8) {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(x);
        }
    }
    acc.iter().fold(0, |s, &a| s.wrapping_add(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_exact() {
        let v: Vec<u64> = (0..64).collect();
        assert_eq!(sum_words(&v), 64 * 63 / 2);
    }

    #[test]
    fn buffered_fallback_reads_everything_and_says_why() {
        let path = std::env::temp_dir().join(format!("outcore-bw-buffered-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let r = disk_read_bw(&path, u64::MAX, None);
        std::fs::remove_file(&path).unwrap();
        let r = r.unwrap();
        assert_eq!(r.bytes_read, 100_000);
        assert!(!r.direct);
        let note = r.note.unwrap();
        assert!(
            note.starts_with("O_DIRECT not available here; buffered"),
            "{note}"
        );
    }

    #[test]
    fn mem_bw_is_positive() {
        let bw = measure_mem_bw_over(1 << 20);
        assert!(bw.is_finite() && bw > 0.0, "{bw}");
        assert!(measure_mem_bw_over(0) > 0.0);
    }
}
