//! `FormatError`: every way reading or writing a model file can fail, one variant per failure.
//!
//! Parse errors carry the byte offset, key or tensor they concern. [`FormatError::InFile`] wraps a
//! parse error with the path of the file it came from; use [`FormatError::kind`] to look through
//! that wrapper when matching on a specific failure.

use std::io;
use std::path::{Path, PathBuf};

use crate::gguf::value::MetadataError;
use crate::GgmlType;

/// Why a model file could not be read or written. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    // ---- files and mappings ----
    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// A parse error in a named file (see [`FormatError::kind`]).
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<FormatError>,
    },

    #[error("{}: the file is empty", path.display())]
    EmptyFile { path: PathBuf },

    #[error(
        "{}: mlock of {len} bytes failed ({source}); RLIMIT_MEMLOCK is {limit}. \
         Raise it with `ulimit -l unlimited` (or memlock in /etc/security/limits.conf, \
         LimitMEMLOCK= for systemd, --ulimit memlock=-1 for docker), or use load mode mmap",
        path.display()
    )]
    Mlock {
        path: PathBuf,
        len: u64,
        limit: String,
        source: io::Error,
    },

    #[error("unknown load mode `{0}` (expected mmap, read or mlock)")]
    BadLoadMode(String),

    // ---- GGUF header ----
    #[error("bad magic {found:02x?} at offset {offset}: not a GGUF file")]
    BadMagic { offset: u64, found: [u8; 4] },

    #[error("GGUF version {version} is not supported (only v2 and v3 are)")]
    UnsupportedVersion { version: u32 },

    #[error("big-endian GGUF (version {version} byte-swapped) is not supported")]
    BigEndian { version: u32 },

    #[error("truncated at offset {offset} reading {what}: need {need} bytes, {have} left")]
    Truncated {
        offset: u64,
        what: &'static str,
        need: u64,
        have: u64,
    },

    #[error(
        "{what} count {count} at offset {offset} cannot fit in the {remaining} bytes that remain"
    )]
    CountTooLarge {
        what: &'static str,
        count: u64,
        offset: u64,
        remaining: u64,
    },

    #[error("string length {len} at offset {offset} exceeds the {remaining} bytes that remain")]
    StringTooLong {
        offset: u64,
        len: u64,
        remaining: u64,
    },

    #[error("invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 { offset: u64 },

    #[error("unknown metadata value type {id} at offset {offset} (key `{key}`)")]
    UnknownValueType { offset: u64, id: u32, key: String },

    #[error("arrays nested deeper than {max} at offset {offset} (key `{key}`)")]
    NestingTooDeep {
        offset: u64,
        max: usize,
        key: String,
    },

    #[error("duplicate metadata key `{key}`")]
    DuplicateKey { key: String },

    #[error("general.alignment = {value}: must be a nonzero power of two of type u32")]
    BadAlignment { value: String },

    // ---- GGUF tensor infos ----
    #[error("tensor `{tensor}`: type id {id} is {}", match known_name {
        Some(n) => format!("{n}, which is not supported"),
        None => "unknown".to_string(),
    })]
    UnknownTensorType {
        tensor: String,
        id: u32,
        known_name: Option<&'static str>,
    },

    #[error("tensor `{tensor}` has {n} dimensions (1 to 4 are allowed)")]
    TooManyDims { tensor: String, n: u32 },

    #[error("tensor `{tensor}`: element count or byte size overflows")]
    ShapeOverflow { tensor: String },

    #[error("tensor `{tensor}`: dimension {dim} is zero")]
    ZeroDim { tensor: String, dim: usize },

    #[error(
        "tensor `{tensor}`: row length {ne0} is not a multiple of the {ty} block size {block}"
    )]
    RowNotBlockMultiple {
        tensor: String,
        ty: GgmlType,
        ne0: u64,
        block: usize,
    },

    #[error(
        "tensor `{tensor}`: data at offset {offset} + {size} bytes lies past the end of the \
         data section ({data_len} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        data_len: u64,
    },

    #[error("tensor `{tensor}`: offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error("tensors `{a}` and `{b}` overlap")]
    Overlap { a: String, b: String },

    #[error("duplicate tensor name `{name}`")]
    DuplicateTensor { name: String },

    #[error(transparent)]
    Metadata(#[from] MetadataError),

    // ---- writing ----
    #[error("{} already exists; refusing to overwrite it (use --force)", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("writer: tensor `{got}` written out of order (expected {expected})")]
    WriteOrder { expected: String, got: String },

    #[error("writer: tensor `{tensor}` has {got} bytes, expected {expected}")]
    WrongTensorSize {
        tensor: String,
        expected: u64,
        got: u64,
    },

    #[error("writer: {missing} tensor(s) never written, first `{first}`")]
    TensorsNotWritten { missing: usize, first: String },

    #[error("writer: no tensor is open (call begin_tensor first)")]
    NoOpenTensor,

    // ---- safetensors ----
    #[error("{}: safetensors header: {reason}", path.display())]
    Safetensors { path: PathBuf, reason: String },

    #[error("{}: safetensors header length {len} exceeds the limit of {limit} bytes or the file", path.display())]
    SafetensorsHeaderTooLarge { path: PathBuf, len: u64, limit: u64 },

    #[error("{}: tensor `{tensor}` bytes {start}..{end} lie outside the file data ({data_len} bytes)", path.display())]
    SafetensorsOutOfBounds {
        path: PathBuf,
        tensor: String,
        start: u64,
        end: u64,
        data_len: u64,
    },

    #[error("{}: bad safetensors index: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },

    #[error("{}: shard `{shard}` named by the index does not exist", index.display())]
    MissingShard { index: PathBuf, shard: String },

    #[error("tensor `{tensor}` is listed in the index under {} but is missing from that shard", shard.display())]
    TensorMissingFromShard { tensor: String, shard: PathBuf },

    #[error("tensor `{tensor}` appears in both {} and {}", a.display(), b.display())]
    DuplicateShardTensor {
        tensor: String,
        a: PathBuf,
        b: PathBuf,
    },

    #[error("tensor `{tensor}` not found")]
    TensorNotFound { tensor: String },

    #[error("tensor `{tensor}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype { tensor: String, dtype: String },

    #[error("{}: no model.safetensors or model.safetensors.index.json found", path.display())]
    NoSafetensors { path: PathBuf },
}

impl FormatError {
    /// The underlying error, looking through [`FormatError::InFile`].
    pub fn kind(&self) -> &FormatError {
        match self {
            FormatError::InFile { source, .. } => source.kind(),
            other => other,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> FormatError {
        FormatError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Attaches a path to a parse error (errors that already name a path are left alone).
    pub fn in_file(self, path: impl AsRef<Path>) -> FormatError {
        match self {
            e @ (FormatError::Io { .. }
            | FormatError::InFile { .. }
            | FormatError::EmptyFile { .. }
            | FormatError::Mlock { .. }
            | FormatError::AlreadyExists { .. }
            | FormatError::Safetensors { .. }
            | FormatError::SafetensorsHeaderTooLarge { .. }
            | FormatError::SafetensorsOutOfBounds { .. }
            | FormatError::BadIndex { .. }
            | FormatError::MissingShard { .. }
            | FormatError::TensorMissingFromShard { .. }
            | FormatError::DuplicateShardTensor { .. }
            | FormatError::NoSafetensors { .. }) => e,
            e => FormatError::InFile {
                path: path.as_ref().to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_on_one_line() {
        let e = FormatError::UnknownTensorType {
            tensor: "w".into(),
            id: 16,
            known_name: Some("IQ2_XXS"),
        };
        assert_eq!(
            e.to_string(),
            "tensor `w`: type id 16 is IQ2_XXS, which is not supported"
        );
        let e = e.in_file("/m.gguf");
        assert!(matches!(
            e.kind(),
            FormatError::UnknownTensorType { id: 16, .. }
        ));
        assert!(!e.to_string().contains('\n'));
        let e = FormatError::Mlock {
            path: "/m".into(),
            len: 10,
            limit: "8 MiB".into(),
            source: io::Error::from_raw_os_error(12),
        };
        assert!(!e.to_string().contains('\n'));
        assert!(e.to_string().contains("ulimit -l"));
    }
}
