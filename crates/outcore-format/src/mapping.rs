//! `Mapping`: the bytes of a model file, mapped (mmap), mapped and locked (mlock) or read into
//! an aligned heap buffer (read). This file is the only place in outcore that maps a file; every
//! `unsafe` of the crate lives here, each with a `SAFETY` note.
//!
//! The knobs follow llama.cpp's `llama-mmap.cpp`: sequential read-ahead, WILLNEED prefetch of a
//! range, DONTNEED to let pages go, mlock with a hint about `RLIMIT_MEMLOCK` when it fails.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::{Deref, Range};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::error::FormatError;

/// How a model file is brought into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoadMode {
    /// Map the file read-only; pages are faulted in on first touch and can be dropped by the kernel.
    #[default]
    Mmap,
    /// Read the whole file into an anonymous, 64-byte-aligned heap buffer.
    Read,
    /// Map the file and lock all of it in RAM (`mlock`).
    Mlock,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Mmap => "mmap",
            LoadMode::Read => "read",
            LoadMode::Mlock => "mlock",
        }
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LoadMode {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mmap" => Ok(LoadMode::Mmap),
            "read" => Ok(LoadMode::Read),
            "mlock" => Ok(LoadMode::Mlock),
            _ => Err(FormatError::BadLoadMode(s.to_string())),
        }
    }
}

/// Which file a mapping shows, to detect that a path now names a different file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    /// Modification time, seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

/// One 64-byte-aligned chunk of the read-mode buffer (so the buffer start is cache-line aligned).
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

enum Storage {
    Mapped(Mmap),
    Owned(Vec<Line>),
}

/// The bytes of one file. Derefs to `[u8]`; tensor views borrow from it.
///
/// # Safety
///
/// In `Mmap` and `Mlock` modes the bytes are a shared, read-only mapping of the file. Rust
/// assumes a `&[u8]` never changes while it is borrowed, and a read of a page past the end of a
/// file raises `SIGBUS`. The contract therefore is: **the file must not be truncated or modified
/// in place while it is mapped**. outcore never writes to a file it maps (its writers write a
/// temporary file and `rename` it over the target, which leaves the mapped inode untouched), and
/// `Mapping::open` takes a shared advisory `flock` on the file so that cooperating writers can
/// see it is in use. Other processes are outside our control; this is the same contract as
/// llama.cpp's and ripgrep's mmap use. Use `LoadMode::Read` where that contract cannot be met.
pub struct Mapping {
    storage: Storage,
    len: usize,
    path: PathBuf,
    mode: LoadMode,
    file: File,
    identity: FileIdentity,
    shared_lock: bool,
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `RLIMIT_MEMLOCK` (soft limit) in words, for error messages.
fn memlock_limit() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", v / 1024)
        }
    };
    format!("{} (hard limit {})", show(lim.rlim_cur), show(lim.rlim_max))
}

/// What [`fadvise`] tells the kernel about a file range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAdvice {
    /// Start reading the range into the page cache now (asynchronous readahead).
    WillNeed,
    /// The range's clean page cache may be dropped.
    DontNeed,
}

/// `posix_fadvise` on an open file (the streamer's buffered reads: start the next unit's
/// readahead, drop a used unit's pages).
pub fn fadvise(file: &File, range: Range<usize>, advice: FileAdvice) -> io::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let advice = match advice {
        FileAdvice::WillNeed => libc::POSIX_FADV_WILLNEED,
        FileAdvice::DontNeed => libc::POSIX_FADV_DONTNEED,
    };
    // SAFETY: the fd is valid while `file` is borrowed; fadvise touches no memory.
    let rc = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            range.start as libc::off_t,
            range.len() as libc::off_t,
            advice,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

impl Mapping {
    /// Opens `path` in the given mode. Empty files are an error.
    pub fn open(path: impl AsRef<Path>, mode: LoadMode) -> Result<Mapping, FormatError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let meta = file.metadata().map_err(|e| FormatError::io(path, e))?;
        if !meta.is_file() {
            return Err(FormatError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let identity = FileIdentity {
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        };
        if meta.len() == 0 {
            return Err(FormatError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        let len = usize::try_from(meta.len()).map_err(|_| {
            FormatError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "file too large"),
            )
        })?;

        // A shared advisory lock: writers that cooperate (flock LOCK_EX) can see the file is in use.
        // SAFETY: the fd is valid (owned by `file`, which outlives the call); flock touches no memory.
        let shared_lock =
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;

        let storage = match mode {
            LoadMode::Mmap | LoadMode::Mlock => {
                // SAFETY: see the `# Safety` section of `Mapping`: the map is read-only and shared;
                // outcore never modifies or truncates a mapped file, and we hold a shared flock.
                let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
                if map.len() != len {
                    return Err(FormatError::io(
                        path,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file changed size while mapping",
                        ),
                    ));
                }
                if mode == LoadMode::Mlock {
                    map.lock().map_err(|source| FormatError::Mlock {
                        path: path.to_path_buf(),
                        len: len as u64,
                        limit: memlock_limit(),
                        source,
                    })?;
                }
                Storage::Mapped(map)
            }
            LoadMode::Read => {
                let mut buf = vec![Line([0; 64]); len.div_ceil(64)];
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
                file.read_exact(&mut bytes[..len])
                    .map_err(|e| FormatError::io(path, e))?;
                Storage::Owned(buf)
            }
        };
        Ok(Mapping {
            storage,
            len,
            path: path.to_path_buf(),
            mode,
            file,
            identity,
            shared_lock,
        })
    }

    /// An owned, read-mode copy of bytes derived from the file at `path` (e.g. a re-laid-out
    /// llama2.c checkpoint): tensor views can borrow it like any mapping. `path` and its identity
    /// name where the bytes came from.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Mapping, FormatError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let meta = file.metadata().map_err(|e| FormatError::io(path, e))?;
        let mut buf = vec![Line([0; 64]); bytes.len().div_ceil(64).max(1)];
        bytemuck::cast_slice_mut::<Line, u8>(&mut buf)[..bytes.len()].copy_from_slice(bytes);
        Ok(Mapping {
            storage: Storage::Owned(buf),
            len: bytes.len(),
            path: path.to_path_buf(),
            mode: LoadMode::Read,
            file,
            identity: FileIdentity {
                dev: meta.dev(),
                inode: meta.ino(),
                size: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
            },
            shared_lock: false,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty files are refused by `open`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> LoadMode {
        self.mode
    }

    /// Device, inode, size and mtime of the file as it was when opened.
    pub fn file_identity(&self) -> FileIdentity {
        self.identity
    }

    /// Whether the shared advisory `flock` was obtained (failure is not an error).
    pub fn has_shared_lock(&self) -> bool {
        self.shared_lock
    }

    fn map(&self) -> Option<&Mmap> {
        match &self.storage {
            Storage::Mapped(m) => Some(m),
            Storage::Owned(_) => None,
        }
    }

    /// Clamps `range` to the file and returns (offset, len).
    fn clamp(&self, range: &Range<usize>) -> (usize, usize) {
        let start = range.start.min(self.len);
        let end = range.end.clamp(start, self.len);
        (start, end - start)
    }

    /// Page-aligned (start pointer, length) covering `range` (clamped to the file).
    fn page_span(&self, range: &Range<usize>) -> (*const u8, usize) {
        let (off, len) = self.clamp(range);
        let ps = page_size();
        let base = self.as_ptr() as usize + off;
        let start = base & !(ps - 1);
        let end = (base + len).div_ceil(ps) * ps;
        (start as *const u8, end - start)
    }

    /// Tells the kernel the file will be read front to back (bigger read-ahead).
    pub fn advise_sequential(&self) -> io::Result<()> {
        if let Some(m) = self.map() {
            m.advise(Advice::Sequential)?;
        }
        // SAFETY: the fd is valid for the lifetime of `self.file`; fadvise touches no memory.
        let rc = unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL)
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }

    /// Asks the kernel to start reading `range` in (no-op in read mode).
    pub fn advise_willneed(&self, range: Range<usize>) -> io::Result<()> {
        let (off, len) = self.clamp(&range);
        match self.map() {
            Some(m) if len > 0 => m.advise_range(Advice::WillNeed, off, len),
            _ => Ok(()),
        }
    }

    /// Drops the pages of `range` from this process (MADV_DONTNEED). For a shared read-only file
    /// mapping this only unmaps the pages; the next access faults them back in from the page cache
    /// or the file, with the same contents. No-op in read mode (there it would zero the buffer).
    pub fn advise_dontneed(&self, range: Range<usize>) -> io::Result<()> {
        let (off, len) = self.clamp(&range);
        match self.map() {
            // SAFETY: the mapping is a read-only, shared file mapping (never MAP_PRIVATE-written),
            // so MADV_DONTNEED cannot change what any `&[u8]` into it reads: dropped pages are
            // refaulted from the file with identical contents.
            Some(m) if len > 0 => unsafe {
                m.unchecked_advise_range(UncheckedAdvice::DontNeed, off, len)
            },
            _ => Ok(()),
        }
    }

    /// Tells the kernel the page cache for `range` of the file may be dropped (POSIX_FADV_DONTNEED).
    pub fn fadvise_dontneed(&self, range: Range<usize>) -> io::Result<()> {
        let (off, len) = self.clamp(&range);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the fd is valid for the lifetime of `self.file`; fadvise touches no memory.
        let rc = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                off as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }

    /// Bytes of `range` whose pages are resident in RAM (counted in whole pages, clamped to the
    /// range). In read mode the whole buffer is counted as resident.
    pub fn resident_bytes(&self, range: Range<usize>) -> io::Result<u64> {
        let (off, len) = self.clamp(&range);
        if len == 0 {
            return Ok(0);
        }
        if self.map().is_none() {
            return Ok(len as u64);
        }
        let ps = page_size();
        let (start, span) = self.page_span(&range);
        let pages = span / ps;
        let mut vec = vec![0u8; pages];
        // SAFETY: `start..start+span` is page-aligned and lies within the live mapping (it covers
        // only pages that hold bytes of the file); `vec` has one byte per page, as mincore requires.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, span, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Count bytes of the requested range within resident pages.
        let first = self.as_ptr() as usize + off;
        let last = first + len;
        let mut total = 0u64;
        for (i, &v) in vec.iter().enumerate() {
            if v & 1 == 1 {
                let p0 = (start as usize + i * ps).max(first);
                let p1 = (start as usize + (i + 1) * ps).min(last);
                total += (p1 - p0) as u64;
            }
        }
        Ok(total)
    }

    /// Locks the pages of `range` in RAM (mlock). Fails with a hint about RLIMIT_MEMLOCK.
    pub fn lock(&self, range: Range<usize>) -> Result<(), FormatError> {
        let (_, len) = self.clamp(&range);
        if len == 0 {
            return Ok(());
        }
        let (start, span) = self.page_span(&range);
        // SAFETY: the span is page-aligned and within memory owned by `self` (mapping or buffer);
        // mlock changes no contents.
        let rc = unsafe { libc::mlock(start as *const libc::c_void, span) };
        if rc != 0 {
            return Err(FormatError::Mlock {
                path: self.path.clone(),
                len: span as u64,
                limit: memlock_limit(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Unlocks the pages of `range` (munlock).
    pub fn unlock(&self, range: Range<usize>) -> io::Result<()> {
        let (_, len) = self.clamp(&range);
        if len == 0 {
            return Ok(());
        }
        let (start, span) = self.page_span(&range);
        // SAFETY: the span is page-aligned and within memory owned by `self`; munlock changes no contents.
        let rc = unsafe { libc::munlock(start as *const libc::c_void, span) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => &bytemuck::cast_slice(v)[..self.len],
        }
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    #[test]
    fn load_mode_parses_and_displays() {
        for m in [LoadMode::Mmap, LoadMode::Read, LoadMode::Mlock] {
            assert_eq!(m.to_string().parse::<LoadMode>().unwrap(), m);
        }
        assert!(matches!(
            "bogus".parse::<LoadMode>(),
            Err(FormatError::BadLoadMode(_))
        ));
    }

    #[test]
    fn all_modes_give_the_same_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let f = temp_file(&data);
        for mode in [LoadMode::Mmap, LoadMode::Read] {
            let m = Mapping::open(f.path(), mode).unwrap();
            assert_eq!(&m[..], &data[..]);
            assert_eq!(m.len(), data.len());
            assert_eq!(m.mode(), mode);
            assert_eq!(m.file_identity().size, data.len() as u64);
            m.advise_sequential().unwrap();
            m.advise_willneed(0..5000).unwrap();
            let r = m.resident_bytes(0..data.len()).unwrap();
            assert!(r <= data.len() as u64);
            m.advise_dontneed(100..9000).unwrap();
            m.fadvise_dontneed(0..data.len()).unwrap();
            assert_eq!(&m[..], &data[..], "contents unchanged after DONTNEED");
            // Out-of-range requests are clamped, not errors.
            m.advise_willneed(5000..1_000_000).unwrap();
            assert_eq!(m.resident_bytes(20_000..30_000).unwrap(), 0);
        }
        let m = Mapping::open(f.path(), LoadMode::Read).unwrap();
        assert_eq!(m.as_ptr() as usize % 64, 0);
    }

    #[test]
    fn residency_follows_touch() {
        let data = vec![1u8; 64 * 1024];
        let f = temp_file(&data);
        let m = Mapping::open(f.path(), LoadMode::Mmap).unwrap();
        let sum: u64 = m.iter().map(|&b| b as u64).sum();
        assert_eq!(sum, data.len() as u64);
        assert_eq!(m.resident_bytes(0..m.len()).unwrap(), m.len() as u64);
        assert_eq!(m.resident_bytes(10..20).unwrap(), 10);
    }

    #[test]
    fn empty_and_missing_files_are_clear_errors() {
        let f = temp_file(b"");
        assert!(matches!(
            Mapping::open(f.path(), LoadMode::Mmap),
            Err(FormatError::EmptyFile { .. })
        ));
        let e = Mapping::open("/nonexistent/x.gguf", LoadMode::Read).unwrap_err();
        assert!(matches!(e, FormatError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/x.gguf"));
    }

    #[test]
    fn lock_small_range_or_clear_error() {
        let f = temp_file(&[3u8; 8192]);
        let m = Mapping::open(f.path(), LoadMode::Mmap).unwrap();
        match m.lock(0..4096) {
            Ok(()) => m.unlock(0..4096).unwrap(),
            Err(e) => assert!(e.to_string().contains("RLIMIT_MEMLOCK")),
        }
    }
}
