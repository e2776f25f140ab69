//! `AtomicFile`: write to a temporary file next to the target, then fsync and rename it into place.
//!
//! A reader never sees a half-written file, and a file that is mapped by another process keeps its
//! old inode (rename replaces the directory entry, not the bytes). Dropping an `AtomicFile` that
//! was not committed deletes the temporary file.

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
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
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
