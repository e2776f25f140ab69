//! `AtomicFile`: write to a temporary file next to the target, then fsync and rename it into place.
//!
//! A reader never sees a half-written file, and a file that is mapped by another process keeps its
//! old inode (rename replaces the directory entry, not the bytes). Dropping an `AtomicFile` that
//! was not committed deletes the temporary file.
//!
//! A writer killed outright (`kill -9`, OOM killer, power loss) runs no destructor and leaves its
//! `.<name>.tmp.<pid>` behind. The next [`AtomicFile::create`] of the same target removes such
//! leftovers: only files named exactly `.<name>.tmp.<digits>` for *its* target, and only when no
//! process with that PID is alive (`/proc/<pid>` is absent; where there is no `/proc`, nothing is
//! removed). A live writer of the same target in another process is left alone. The remaining
//! risk: a writer in another PID namespace (a container) sharing the directory looks dead from
//! here, and losing its temporary file makes its commit fail (its output is then absent, never
//! partial).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::FormatError;

/// A file being written atomically. Implements `Write` (buffered).
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `path`. Refuses to clobber an existing file unless `force`.
    /// The data goes to `<dir>/.<name>.tmp.<pid>` until [`AtomicFile::commit`].
    pub fn create(path: impl AsRef<Path>, force: bool) -> Result<AtomicFile, FormatError> {
        let target = path.as_ref().to_path_buf();
        if !force && fs::symlink_metadata(&target).is_ok() {
            return Err(FormatError::AlreadyExists { path: target });
        }
        let name = target.file_name().ok_or_else(|| {
            FormatError::io(
                &target,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        remove_stale_temps(&dir, name);
        let tmp = dir.join(temp_name(name, std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| FormatError::io(&tmp, e))?;
        Ok(AtomicFile {
            target,
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, fsyncs, renames over the target and fsyncs the directory.
    pub fn commit(mut self) -> Result<(), FormatError> {
        let out = self
            .out
            .take()
            .expect("AtomicFile::out is only taken by commit");
        let file = out
            .into_inner()
            .map_err(|e| FormatError::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| FormatError::io(&self.tmp, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(|e| FormatError::io(&self.target, e))?;
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // fsync the directory so the rename itself is durable.
        if let Ok(d) = File::open(&dir) {
            d.sync_all().map_err(|e| FormatError::io(&dir, e))?;
        }
        Ok(())
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("AtomicFile already committed"))
    }
}

/// `.<name>.tmp.<pid>`: the temporary file a writer with process id `pid` uses for `name`.
fn temp_name(name: &std::ffi::OsStr, pid: u32) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{pid}"));
    tmp
}

/// The writer's PID if `file` is a temporary file of target `name` (`.<name>.tmp.<digits>`).
fn temp_pid(file: &std::ffi::OsStr, name: &std::ffi::OsStr) -> Option<u32> {
    let file = file.to_str()?;
    let rest = file.strip_prefix('.')?.strip_prefix(name.to_str()?)?;
    let digits = rest.strip_prefix(".tmp.")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a process with this id exists. `None` when it cannot be told (no `/proc`).
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Removes the temporary files of target `name` in `dir` whose writer process is gone (see the
/// module docs); returns what it removed. Best effort: errors leave the file in place.
pub fn remove_stale_temps(dir: &Path, name: &std::ffi::OsStr) -> Vec<PathBuf> {
    let own = std::process::id();
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = temp_pid(&entry.file_name(), name) else {
            continue;
        };
        if pid == own || process_alive(pid) != Some(false) {
            continue;
        }
        // Only plain files: never follow or remove a directory or a link someone put there.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.gguf");
        let mut f = AtomicFile::create(&p, false).unwrap();
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".out.gguf.tmp."));
        f.write_all(b"hello").unwrap();
        assert!(!p.exists());
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert!(!tmp.exists());

        let e = AtomicFile::create(&p, false).err().unwrap();
        assert!(matches!(e, FormatError::AlreadyExists { .. }));
        assert!(e.to_string().contains("--force"));
        assert_eq!(fs::read(&p).unwrap(), b"hello");

        let mut f = AtomicFile::create(&p, true).unwrap();
        f.write_all(b"bye").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"bye");
    }

    /// A PID that belonged to a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn temp_names_parse_only_for_their_target() {
        let name = std::ffi::OsStr::new("out.gguf");
        let pid = |f: &str| temp_pid(std::ffi::OsStr::new(f), name);
        assert_eq!(pid(".out.gguf.tmp.123"), Some(123));
        assert_eq!(
            temp_name(name, 77),
            std::ffi::OsString::from(".out.gguf.tmp.77")
        );
        for other in [
            "out.gguf.tmp.123",
            ".out.gguf.tmp.",
            ".out.gguf.tmp.12a",
            ".out.gguf.tmp.-1",
            ".out.gguf.tmp.99999999999",
            ".out.gguf.bak",
            ".other.gguf.tmp.123",
            ".out.gguf.tmp.123.tmp.4",
            ".xout.gguf.tmp.123",
        ] {
            assert_eq!(pid(other), None, "{other}");
        }
    }

    #[test]
    fn create_removes_temp_files_of_dead_writers_only() {
        if process_alive(std::process::id()) != Some(true) {
            eprintln!("skipped: no /proc to tell live processes from dead ones");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = dead_pid();
        assert_eq!(process_alive(dead), Some(false));
        let mut live_child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let live = live_child.id();
        let stale = d.join(format!(".out.gguf.tmp.{dead}"));
        let keep = [
            d.join(format!(".out.gguf.tmp.{live}")),
            d.join(format!(".other.gguf.tmp.{dead}")),
            d.join(format!("out.gguf.tmp.{dead}")),
            d.join(".out.gguf.tmp.x1"),
        ];
        fs::write(&stale, b"half a model").unwrap();
        for k in &keep {
            fs::write(k, b"keep").unwrap();
        }
        // A directory with a stale-looking name is not touched either.
        let dir_named = d.join(format!(".out.gguf.tmp.{}", dead_pid()));
        fs::create_dir(&dir_named).unwrap();

        let mut f = AtomicFile::create(d.join("out.gguf"), false).unwrap();
        assert!(!stale.exists(), "the dead writer's temp file is removed");
        for k in &keep {
            assert!(k.exists(), "{} was kept", k.display());
        }
        assert!(dir_named.is_dir());
        f.write_all(b"done").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(d.join("out.gguf")).unwrap(), b"done");
        assert_eq!(
            remove_stale_temps(d, std::ffi::OsStr::new("out.gguf")),
            Vec::<PathBuf>::new()
        );
        // Once the live writer is gone, its leftover goes at the next write.
        live_child.kill().unwrap();
        live_child.wait().unwrap();
        assert_eq!(
            remove_stale_temps(d, std::ffi::OsStr::new("out.gguf")),
            vec![keep[0].clone()]
        );
    }

    #[test]
    fn drop_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        {
            let mut f = AtomicFile::create(&p, false).unwrap();
            f.write_all(&[0u8; 4 << 20]).unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
