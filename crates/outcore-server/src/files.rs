//! Which file a loaded model maps, and whether its path still names that file.
//!
//! A model file replaced by `rename` (what outcore's own writers do) leaves the loaded mapping on
//! the old inode, which stays valid: requests go on using the old weights until a reload
//! (`SIGHUP`, `POST /v1/models/{id}/reload`, `POST /v1/reload`) maps the new file. A file
//! truncated *in place* is different: touching a mapped page past the new end raises `SIGBUS`,
//! so a request that finds its model's file shorter than the mapping is refused (503) instead.

use std::io;
use std::path::{Path, PathBuf};

/// Device, inode, size and modification time of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

impl FileId {
    /// The identity of what `path` names now (following symlinks, like `open`).
    pub fn of(path: &Path) -> io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId::from_metadata(&meta))
    }

    #[cfg(unix)]
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    #[cfg(not(unix))]
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileId {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            });
        FileId {
            dev: 0,
            inode: 0,
            size: meta.len(),
            mtime,
        }
    }

    /// The same file (device and inode), whatever happened to its contents.
    pub fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.inode == other.inode
    }
}

/// One file behind a loaded model, as it was when the engine opened it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub id: FileId,
    /// Mapped (pages read on demand from the file) rather than copied into memory.
    pub mapped: bool,
}

/// What became of a loaded file's path.
#[derive(Debug)]
pub enum FileChange {
    Unchanged,
    /// The path names another file now (replaced by rename): the mapping is still valid.
    Replaced {
        path: PathBuf,
        old: FileId,
        new: FileId,
    },
    /// Same inode, same or larger size, other mtime: written in place.
    ModifiedInPlace {
        path: PathBuf,
        old: FileId,
        new: FileId,
    },
    /// Same inode, smaller than what was opened: mapped pages past the end would raise SIGBUS.
    Truncated {
        path: PathBuf,
        old: FileId,
        new: FileId,
    },
    /// The path is gone or unreadable (the mapping is still valid).
    Missing {
        path: PathBuf,
        error: io::Error,
    },
}

impl FileChange {
    /// Whether a reload would map something different.
    pub fn is_change(&self) -> bool {
        !matches!(self, FileChange::Unchanged)
    }

    /// Whether serving from the current mapping may fault (the file shrank under a mapping).
    pub fn is_unsafe(&self, mapped: bool) -> bool {
        mapped && matches!(self, FileChange::Truncated { .. })
    }
}

impl std::fmt::Display for FileChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileChange::Unchanged => write!(f, "unchanged"),
            FileChange::Replaced { path, old, new } => write!(
                f,
                "{} was replaced (inode {} -> {}, {} -> {} bytes)",
                path.display(),
                old.inode,
                new.inode,
                old.size,
                new.size
            ),
            FileChange::ModifiedInPlace { path, old, new } => write!(
                f,
                "{} was modified in place (inode {}, mtime {} -> {})",
                path.display(),
                old.inode,
                old.mtime.0,
                new.mtime.0
            ),
            FileChange::Truncated { path, old, new } => write!(
                f,
                "{} was truncated in place from {} to {} bytes (inode {})",
                path.display(),
                old.size,
                new.size,
                old.inode
            ),
            FileChange::Missing { path, error } => {
                write!(f, "{} cannot be read: {error}", path.display())
            }
        }
    }
}

/// Compares a loaded file with what its path names now.
pub fn check(file: &LoadedFile) -> FileChange {
    let now = match FileId::of(&file.path) {
        Ok(id) => id,
        Err(error) => {
            return FileChange::Missing {
                path: file.path.clone(),
                error,
            }
        }
    };
    let (path, old, new) = (file.path.clone(), file.id, now);
    if !old.same_file(&new) {
        FileChange::Replaced { path, old, new }
    } else if new.size < old.size {
        FileChange::Truncated { path, old, new }
    } else if new != old {
        FileChange::ModifiedInPlace { path, old, new }
    } else {
        FileChange::Unchanged
    }
}

/// The first change among a model's files (`Unchanged` if none).
pub fn check_all(files: &[LoadedFile]) -> FileChange {
    files
        .iter()
        .map(check)
        .find(FileChange::is_change)
        .unwrap_or(FileChange::Unchanged)
}

/// The first file whose change makes serving from its mapping unsafe, with that change.
pub fn unsafe_change(files: &[LoadedFile]) -> Option<FileChange> {
    files
        .iter()
        .filter(|f| f.mapped)
        .map(check)
        .find(|c| c.is_unsafe(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn loaded(path: &Path) -> LoadedFile {
        LoadedFile {
            path: path.to_path_buf(),
            id: FileId::of(path).unwrap(),
            mapped: true,
        }
    }

    #[test]
    fn replaced_truncated_modified_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = loaded(&p);
        assert!(matches!(check(&f), FileChange::Unchanged));

        // Replaced by rename: a new inode.
        let q = dir.path().join("new.gguf");
        std::fs::write(&q, b"abc").unwrap();
        std::fs::rename(&q, &p).unwrap();
        let c = check(&f);
        assert!(matches!(c, FileChange::Replaced { .. }), "{c}");
        assert!(!c.is_unsafe(true));

        // Truncated in place: same inode, shorter.
        let f = loaded(&p);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(1)
            .unwrap();
        let c = check(&f);
        assert!(matches!(c, FileChange::Truncated { .. }), "{c}");
        assert!(c.is_unsafe(true) && !c.is_unsafe(false));
        assert!(unsafe_change(std::slice::from_ref(&f)).is_some());

        // Written in place at the same size with a later mtime.
        let mut f = loaded(&p);
        f.id.mtime.0 -= 10;
        let mut w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        w.write_all(b"z").unwrap();
        let c = check(&f);
        assert!(matches!(c, FileChange::ModifiedInPlace { .. }), "{c}");
        assert!(unsafe_change(std::slice::from_ref(&f)).is_none());

        std::fs::remove_file(&p).unwrap();
        let c = check(&f);
        assert!(matches!(c, FileChange::Missing { .. }), "{c}");
        assert!(c.to_string().contains("m.gguf"));
    }
}
