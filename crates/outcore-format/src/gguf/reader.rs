//! GGUF reader: a bounded cursor over the mapped bytes, then validation of every tensor info.
//!
//! Every count and length read from the file is checked against the bytes that remain before
//! anything is allocated; sizes use checked arithmetic. Layout (gguf spec, v2/v3, little-endian):
//! magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type, value),
//! n_tensors x (string name, u32 n_dims, n_dims x u64, u32 type, u64 offset), padding to the
//! alignment, then the data section. Tensor offsets are relative to the data section.

use std::collections::HashMap;
use std::path::Path;

use crate::error::FormatError;
use crate::ggml_type::{known_unsupported_name, GgmlType};
use crate::gguf::value::{Array, Metadata, Value, ValueType};
use crate::mapping::{LoadMode, Mapping};
use crate::TensorView;

/// "GGUF" as stored in the first four bytes.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays inside arrays that we accept.
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Most elements reserved up front for a string or nested array (they grow past it as needed), so
/// a count that fits the file but lies about the layout cannot make us reserve much more memory
/// than the elements actually parsed.
const PREALLOC_CAP: usize = 1 << 16;
/// Smallest encoding of one metadata pair: empty key (8), type (4), 1-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest encoding of one tensor info: empty name (8), n_dims (4), one dim (8), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 32;

/// One tensor's entry in the header, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// ggml order: `shape[0]` is the row length.
    pub shape: Vec<u64>,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A parsed and validated GGUF file over a [`Mapping`]. Tensor views borrow the mapping.
pub struct GgufFile {
    pub metadata: Metadata,
    pub version: u32,
    infos: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
    mapping: Mapping,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.mapping.path())
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.infos.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

/// A cursor that never reads past the end and reports where it failed.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                offset: self.offset(),
                what,
                need: n,
                have: self.remaining(),
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` items of at least `min_each` bytes can still fit.
    fn check_count(
        &self,
        what: &'static str,
        count: u64,
        min_each: u64,
        at: u64,
    ) -> Result<(), FormatError> {
        let fits = count
            .checked_mul(min_each)
            .is_some_and(|need| need <= self.remaining());
        if fits {
            Ok(())
        } else {
            Err(FormatError::CountTooLarge {
                what,
                count,
                offset: at,
                remaining: self.remaining(),
            })
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, FormatError> {
        let at = self.offset();
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(FormatError::StringTooLong {
                offset: at,
                len,
                remaining: self.remaining(),
            });
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(FormatError::InvalidUtf8 { offset: at }),
        }
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType, FormatError> {
        let at = self.offset();
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or_else(|| FormatError::UnknownValueType {
            offset: at,
            id,
            key: key.to_string(),
        })
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, FormatError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            ValueType::I8 => Value::I8(self.array::<1>("i8 value")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            ValueType::U32 => Value::U32(self.u32("u32 value")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            ValueType::Bool => Value::Bool(self.array::<1>("bool value")?[0] != 0),
            ValueType::String => Value::String(self.string("string value")?),
            ValueType::U64 => Value::U64(self.u64("u64 value")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            ValueType::Array => Value::Array(self.array_value(key, 1)?),
        })
    }

    /// Reads `n` fixed-size scalars; the caller has checked that `n * N` bytes remain.
    fn scalars<const N: usize, T>(
        &mut self,
        n: u64,
        what: &'static str,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, FormatError> {
        let bytes = self.take(n * N as u64, what)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect())
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array, FormatError> {
        let at = self.offset();
        if depth > MAX_ARRAY_DEPTH {
            return Err(FormatError::NestingTooDeep {
                offset: at,
                max: MAX_ARRAY_DEPTH,
                key: key.to_string(),
            });
        }
        let ty = self.value_type(key)?;
        let len_at = self.offset();
        let n = self.u64("array length")?;
        // Minimum bytes per element: the scalar size, a string's length prefix, or a nested
        // array's type + length.
        let min_each = match ty {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.scalar_size().unwrap_or(1) as u64,
        };
        self.check_count("array element", n, min_each, len_at)?;
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(n, "u8 array")?.to_vec()),
            ValueType::I8 => {
                Array::I8(self.take(n, "i8 array")?.iter().map(|&b| b as i8).collect())
            }
            ValueType::Bool => Array::Bool(
                self.take(n, "bool array")?
                    .iter()
                    .map(|&b| b != 0)
                    .collect(),
            ),
            ValueType::U16 => Array::U16(self.scalars(n, "u16 array", u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.scalars(n, "i16 array", i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.scalars(n, "u32 array", u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.scalars(n, "i32 array", i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.scalars(n, "f32 array", f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.scalars(n, "u64 array", u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.scalars(n, "i64 array", i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.scalars(n, "f64 array", f64::from_le_bytes)?),
            ValueType::String => {
                let mut v = Vec::with_capacity((n as usize).min(PREALLOC_CAP));
                for _ in 0..n {
                    v.push(self.string("string array element")?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity((n as usize).min(PREALLOC_CAP));
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

/// Reads `general.alignment` (absent: 32) and checks it is a nonzero power-of-two u32.
fn alignment_of(metadata: &Metadata) -> Result<u64, FormatError> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(*a as u64),
        Some(v) => Err(FormatError::BadAlignment {
            value: format!("{v} ({})", v.value_type().name()),
        }),
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two), None on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Byte size of a tensor of `ty` and `shape`, with the block-multiple and overflow checks.
pub(crate) fn tensor_size(name: &str, ty: GgmlType, shape: &[u64]) -> Result<u64, FormatError> {
    for (dim, &d) in shape.iter().enumerate() {
        if d == 0 {
            return Err(FormatError::ZeroDim {
                tensor: name.to_string(),
                dim,
            });
        }
    }
    let ne0 = shape.first().copied().unwrap_or(1);
    if ne0 % ty.block_size() as u64 != 0 {
        return Err(FormatError::RowNotBlockMultiple {
            tensor: name.to_string(),
            ty,
            ne0,
            block: ty.block_size(),
        });
    }
    let overflow = || FormatError::ShapeOverflow {
        tensor: name.to_string(),
    };
    let n_rows = shape
        .iter()
        .skip(1)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    // The element count must also be representable (ggml stores it as int64).
    n_rows
        .checked_mul(ne0)
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(overflow)?;
    let row = ty.row_bytes(ne0).ok_or_else(overflow)?;
    row.checked_mul(n_rows)
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(overflow)
}

impl GgufFile {
    /// Opens and validates a GGUF file.
    pub fn open(path: impl AsRef<Path>, mode: LoadMode) -> Result<GgufFile, FormatError> {
        let mapping = Mapping::open(path.as_ref(), mode)?;
        GgufFile::from_mapping(mapping)
    }

    /// Parses and validates the GGUF in `mapping`; errors name the file.
    pub fn from_mapping(mapping: Mapping) -> Result<GgufFile, FormatError> {
        match GgufHeader::parse(&mapping) {
            Ok(h) => Ok(GgufFile {
                metadata: h.metadata,
                version: h.version,
                infos: h.tensors,
                by_name: h.by_name,
                alignment: h.alignment,
                data_offset: h.data_offset,
                mapping,
            }),
            Err(e) => Err(e.in_file(mapping.path())),
        }
    }
}

/// The validated header of a GGUF file, parsed from bytes (the whole file, so that tensor
/// bounds can be checked). [`GgufFile`] is this plus the mapping; this form serves fuzzing and
/// checks of in-memory buffers.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Metadata,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Parses and validates `buf`, the bytes of a whole GGUF file.
    pub fn parse(buf: &[u8]) -> Result<GgufHeader, FormatError> {
        let mut c = Cursor { buf, pos: 0 };
        let magic: [u8; 4] = c.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(FormatError::BadMagic {
                offset: 0,
                found: magic,
            });
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            v if (2..=3).contains(&v.swap_bytes()) => {
                return Err(FormatError::BigEndian {
                    version: v.swap_bytes(),
                })
            }
            v => return Err(FormatError::UnsupportedVersion { version: v }),
        }
        let n_tensors_at = c.offset();
        let n_tensors = c.u64("tensor count")?;
        let n_kv_at = c.offset();
        let n_kv = c.u64("metadata count")?;
        c.check_count("metadata", n_kv, MIN_KV_BYTES, n_kv_at)?;
        c.check_count("tensor", n_tensors, MIN_TENSOR_INFO_BYTES, n_tensors_at)?;

        let mut metadata = Metadata::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            if metadata.contains(&key) {
                return Err(FormatError::DuplicateKey { key });
            }
            let ty = c.value_type(&key)?;
            let value = c.value(ty, &key)?;
            metadata.insert(key, value);
        }
        let alignment = alignment_of(&metadata)?;

        // Tensor infos: the remaining bytes bound the count (checked above), so this allocation is bounded.
        let mut infos = Vec::with_capacity(n_tensors as usize);
        let mut by_name = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            if by_name.contains_key(&name) {
                return Err(FormatError::DuplicateTensor { name });
            }
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(FormatError::TooManyDims {
                    tensor: name,
                    n: n_dims,
                });
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                shape.push(c.u64("tensor dimension")?);
            }
            let id = c.u32("tensor type")?;
            let ty = GgmlType::from_id(id).ok_or_else(|| FormatError::UnknownTensorType {
                tensor: name.clone(),
                id,
                known_name: known_unsupported_name(id),
            })?;
            let offset = c.u64("tensor offset")?;
            let size = tensor_size(&name, ty, &shape)?;
            by_name.insert(name.clone(), infos.len());
            infos.push(TensorInfo {
                name,
                ty,
                shape,
                offset,
                size,
            });
        }

        let data_offset = align_up(c.offset(), alignment).ok_or(FormatError::Truncated {
            offset: c.offset(),
            what: "data section",
            need: alignment,
            have: c.remaining(),
        })?;
        let data_len = (buf.len() as u64).saturating_sub(data_offset);
        for t in &infos {
            if t.offset % alignment != 0 {
                return Err(FormatError::Misaligned {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment,
                });
            }
            if !matches!(t.offset.checked_add(t.size), Some(end) if end <= data_len) {
                return Err(FormatError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    size: t.size,
                    data_len,
                });
            }
        }
        let mut order: Vec<usize> = (0..infos.len()).collect();
        order.sort_by_key(|&i| infos[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&infos[w[0]], &infos[w[1]]);
            if a.offset + a.size > b.offset {
                return Err(FormatError::Overlap {
                    a: a.name.clone(),
                    b: b.name.clone(),
                });
            }
        }
        Ok(GgufHeader {
            version,
            metadata,
            tensors: infos,
            by_name,
            alignment,
            data_offset,
        })
    }
}

impl GgufFile {
    /// The metadata key/value pairs, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.infos
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.infos[i])
    }

    fn view<'a>(&'a self, t: &'a TensorInfo) -> TensorView<'a> {
        // Bounds were validated at parse time.
        let start = (self.data_offset + t.offset) as usize;
        TensorView {
            name: &t.name,
            ty: t.ty,
            shape: &t.shape,
            bytes: &self.mapping[start..start + t.size as usize],
        }
    }

    /// A zero-copy view of the tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensor_info(name).map(|t| self.view(t))
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.infos.iter().map(|t| self.view(t))
    }

    /// The absolute byte range of tensor `name` within the file (for advise/residency).
    pub fn tensor_range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.tensor_info(name).map(|t| {
            let start = (self.data_offset + t.offset) as usize;
            start..start + t.size as usize
        })
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    pub fn path(&self) -> &Path {
        self.mapping.path()
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.infos.iter().map(|t| t.size).sum()
    }
}
