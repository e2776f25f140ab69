//! GGUF v3 writer: the header (metadata + tensor infos) is built up front from (name, type, shape),
//! because every size is known; then tensor data is streamed one tensor at a time, each padded to
//! the alignment, into an [`AtomicFile`] that is renamed into place by [`GgufWriter::finish`].
//!
//! Output follows the same layout rules as gguf-py's `GGUFWriter` and ggml's `gguf_write`: offsets
//! are cumulative sizes each rounded up to the alignment, the data section starts at the aligned
//! end of the header, and every tensor (the last one included) is followed by zero padding.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::error::FormatError;
use crate::gguf::reader::{
    align_up, tensor_size, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS,
};
use crate::gguf::value::{Array, Metadata, Value};
use crate::GgmlType;

/// The GGUF version written.
pub const WRITE_VERSION: u32 = 3;

/// A tensor as planned in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTensor {
    pub name: String,
    pub ty: GgmlType,
    pub shape: Vec<u64>,
    /// Offset relative to the data section.
    pub offset: u64,
    pub size: u64,
}

/// Streaming GGUF writer. Write tensors in the order they were declared.
pub struct GgufWriter {
    out: AtomicFile,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
    data_offset: u64,
    /// Index of the next tensor to write.
    next: usize,
    /// Bytes written so far for the open tensor, if any.
    open: Option<u64>,
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn write_array(buf: &mut Vec<u8>, a: &Array) {
    buf.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        Array::U8(v) => buf.extend_from_slice(v),
        Array::I8(v) => buf.extend(v.iter().map(|&x| x as u8)),
        Array::Bool(v) => buf.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::U64(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => v
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        Array::String(v) => v.iter().for_each(|s| write_str(buf, s)),
        Array::Array(v) => v.iter().for_each(|inner| write_array(buf, inner)),
    }
}

/// Appends the encoding of one value (without its type id).
fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::Bool(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::String(s) => write_str(buf, s),
        Value::Array(a) => write_array(buf, a),
    }
}

fn write_kv(buf: &mut Vec<u8>, key: &str, v: &Value) {
    write_str(buf, key);
    buf.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
    write_value(buf, v);
}

/// Encodes the whole header (magic .. tensor infos), unpadded, and plans the tensor offsets.
fn encode_header(
    metadata: &Metadata,
    tensors: Vec<(String, GgmlType, Vec<u64>)>,
    alignment: u64,
) -> Result<(Vec<u8>, Vec<PlannedTensor>), FormatError> {
    if !alignment.is_power_of_two() || alignment > u32::MAX as u64 {
        return Err(FormatError::BadAlignment {
            value: alignment.to_string(),
        });
    }
    // The alignment key, if present, must agree with `alignment`; if absent and non-default, add it.
    let add_alignment_key = match metadata.get(ALIGNMENT_KEY) {
        None => alignment != DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a as u64 == alignment => false,
        Some(v) => {
            return Err(FormatError::BadAlignment {
                value: format!("{v} in metadata, but the writer was asked for {alignment}"),
            })
        }
    };

    let mut planned = Vec::with_capacity(tensors.len());
    let mut seen = HashSet::with_capacity(tensors.len());
    let mut offset = 0u64;
    for (name, ty, shape) in tensors {
        if !seen.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor { name });
        }
        if shape.is_empty() || shape.len() > MAX_DIMS as usize {
            return Err(FormatError::TooManyDims {
                tensor: name,
                n: shape.len() as u32,
            });
        }
        let size = tensor_size(&name, ty, &shape)?;
        let overflow = || FormatError::ShapeOverflow {
            tensor: name.clone(),
        };
        let next = align_up(size, alignment)
            .and_then(|s| s.checked_add(offset))
            .ok_or_else(overflow)?;
        planned.push(PlannedTensor {
            name,
            ty,
            shape,
            offset,
            size,
        });
        offset = next;
    }

    let n_kv = metadata.len() as u64 + add_alignment_key as u64;
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(&GGUF_MAGIC);
    buf.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    buf.extend_from_slice(&(planned.len() as u64).to_le_bytes());
    buf.extend_from_slice(&n_kv.to_le_bytes());
    for (k, v) in metadata.iter() {
        write_kv(&mut buf, k, v);
    }
    if add_alignment_key {
        write_kv(&mut buf, ALIGNMENT_KEY, &Value::U32(alignment as u32));
    }
    for t in &planned {
        write_str(&mut buf, &t.name);
        buf.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in &t.shape {
            buf.extend_from_slice(&d.to_le_bytes());
        }
        buf.extend_from_slice(&t.ty.id().to_le_bytes());
        buf.extend_from_slice(&t.offset.to_le_bytes());
    }
    Ok((buf, planned))
}

const ZEROS: [u8; 4096] = [0; 4096];

impl GgufWriter {
    /// Creates `path` (refusing to overwrite it unless `force`) and writes the header.
    pub fn create(
        path: impl AsRef<Path>,
        force: bool,
        metadata: &Metadata,
        tensors: Vec<(String, GgmlType, Vec<u64>)>,
        alignment: u64,
    ) -> Result<GgufWriter, FormatError> {
        let out = AtomicFile::create(path, force)?;
        GgufWriter::new(out, metadata, tensors, alignment)
    }

    /// Writes the header (metadata, tensor infos, padding) into `out`. `tensors` are
    /// (name, type, shape in ggml order); offsets are computed here from their sizes.
    pub fn new(
        mut out: AtomicFile,
        metadata: &Metadata,
        tensors: Vec<(String, GgmlType, Vec<u64>)>,
        alignment: u64,
    ) -> Result<GgufWriter, FormatError> {
        let (mut header, planned) = encode_header(metadata, tensors, alignment)?;
        let data_offset = align_up(header.len() as u64, alignment).expect("header length is small");
        header.resize(data_offset as usize, 0);
        out.write_all(&header)
            .map_err(|e| FormatError::io(out.temp_path(), e))?;
        Ok(GgufWriter {
            out,
            tensors: planned,
            alignment,
            data_offset,
            next: 0,
            open: None,
        })
    }

    /// The planned tensors, in write order.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }

    /// Absolute offset of the data section in the output.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    fn io(&self, e: std::io::Error) -> FormatError {
        FormatError::io(self.out.temp_path(), e)
    }

    /// Starts the next tensor; `name` must be the next one declared.
    pub fn begin_tensor(&mut self, name: &str) -> Result<(), FormatError> {
        let expected = match self.tensors.get(self.next) {
            Some(t) => &t.name,
            None => {
                return Err(FormatError::WriteOrder {
                    expected: "(no more tensors)".into(),
                    got: name.into(),
                })
            }
        };
        if self.open.is_some() || expected != name {
            return Err(FormatError::WriteOrder {
                expected: expected.clone(),
                got: name.into(),
            });
        }
        self.open = Some(0);
        Ok(())
    }

    /// Appends bytes to the open tensor.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        let written = self.open.ok_or(FormatError::NoOpenTensor)?;
        let t = &self.tensors[self.next];
        let got = written + bytes.len() as u64;
        if got > t.size {
            return Err(FormatError::WrongTensorSize {
                tensor: t.name.clone(),
                expected: t.size,
                got,
            });
        }
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.open = Some(got);
        Ok(())
    }

    /// Finishes the open tensor: checks its size and writes the padding.
    pub fn end_tensor(&mut self) -> Result<(), FormatError> {
        let written = self.open.ok_or(FormatError::NoOpenTensor)?;
        let t = &self.tensors[self.next];
        if written != t.size {
            return Err(FormatError::WrongTensorSize {
                tensor: t.name.clone(),
                expected: t.size,
                got: written,
            });
        }
        let pad =
            (align_up(t.size, self.alignment).expect("checked at plan time") - t.size) as usize;
        let mut left = pad;
        while left > 0 {
            let n = left.min(ZEROS.len());
            self.out.write_all(&ZEROS[..n]).map_err(|e| self.io(e))?;
            left -= n;
        }
        self.open = None;
        self.next += 1;
        Ok(())
    }

    /// Writes a whole tensor (the next one declared).
    pub fn write_tensor_data(&mut self, name: &str, bytes: &[u8]) -> Result<(), FormatError> {
        self.begin_tensor(name)?;
        self.write_chunk(bytes)?;
        self.end_tensor()
    }

    /// Checks that every tensor was written, then fsyncs and renames the file into place.
    pub fn finish(self) -> Result<(), FormatError> {
        if self.open.is_some() || self.next < self.tensors.len() {
            return Err(FormatError::TensorsNotWritten {
                missing: self.tensors.len() - self.next,
                first: self.tensors[self.next].name.clone(),
            });
        }
        self.out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufFile, LoadMode};

    fn meta() -> Metadata {
        let mut m = Metadata::new();
        m.insert("general.architecture", Value::String("llama".into()));
        m.insert("x.u8", Value::U8(7));
        m.insert("x.i8", Value::I8(-7));
        m.insert("x.u16", Value::U16(700));
        m.insert("x.i16", Value::I16(-700));
        m.insert("x.i32", Value::I32(-70000));
        m.insert("x.f32", Value::F32(1.5));
        m.insert("x.bool", Value::Bool(true));
        m.insert("x.u64", Value::U64(1 << 40));
        m.insert("x.i64", Value::I64(-(1 << 40)));
        m.insert("x.f64", Value::F64(-2.25));
        m.insert(
            "x.strs",
            Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])),
        );
        m.insert(
            "x.nested",
            Value::Array(Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::F32(vec![]),
            ])),
        );
        m.insert("x.bools", Value::Array(Array::Bool(vec![true, false])));
        m
    }

    #[test]
    fn round_trip_metadata_and_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        for alignment in [32u64, 64] {
            let tensors = vec![
                ("a".to_string(), GgmlType::F32, vec![3, 2]),
                ("b".to_string(), GgmlType::Q8_0, vec![64]),
                ("c".to_string(), GgmlType::F16, vec![5]),
            ];
            let mut w = GgufWriter::create(&p, true, &meta(), tensors, alignment).unwrap();
            let a: Vec<u8> = (0..24u8).collect();
            let b = [9u8; 68];
            w.write_tensor_data("a", &a).unwrap();
            w.begin_tensor("b").unwrap();
            w.write_chunk(&b[..30]).unwrap();
            w.write_chunk(&b[30..]).unwrap();
            w.end_tensor().unwrap();
            w.write_tensor_data("c", &[1; 10]).unwrap();
            w.finish().unwrap();

            let f = GgufFile::open(&p, LoadMode::Read).unwrap();
            assert_eq!(f.alignment(), alignment);
            for (k, v) in meta().iter() {
                assert_eq!(f.metadata.get(k), Some(v), "{k}");
            }
            assert_eq!(f.metadata.len(), meta().len() + (alignment != 32) as usize);
            assert_eq!(f.tensor("a").unwrap().bytes, &a[..]);
            assert_eq!(f.tensor("b").unwrap().bytes, &b[..]);
            assert_eq!(f.tensor("c").unwrap().bytes, &[1; 10]);
            assert_eq!(f.tensor("c").unwrap().shape, &[5]);
            assert_eq!(std::fs::metadata(&p).unwrap().len() % alignment, 0);
        }
    }

    #[test]
    fn misuse_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        let tensors = || {
            vec![
                ("a".to_string(), GgmlType::F32, vec![4]),
                ("b".to_string(), GgmlType::F32, vec![4]),
            ]
        };
        let mut w = GgufWriter::create(&p, false, &meta(), tensors(), 32).unwrap();
        assert!(matches!(
            w.write_tensor_data("b", &[0; 16]),
            Err(FormatError::WriteOrder { .. })
        ));
        assert!(matches!(
            w.write_chunk(&[0; 4]),
            Err(FormatError::NoOpenTensor)
        ));
        w.begin_tensor("a").unwrap();
        assert!(matches!(
            w.write_chunk(&[0; 17]),
            Err(FormatError::WrongTensorSize { got: 17, .. })
        ));
        w.write_chunk(&[0; 8]).unwrap();
        assert!(matches!(
            w.end_tensor(),
            Err(FormatError::WrongTensorSize { got: 8, .. })
        ));
        w.write_chunk(&[0; 8]).unwrap();
        w.end_tensor().unwrap();
        assert!(matches!(
            w.finish(),
            Err(FormatError::TensorsNotWritten { missing: 1, .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let dup = vec![
            ("a".to_string(), GgmlType::F32, vec![4]),
            ("a".to_string(), GgmlType::F32, vec![4]),
        ];
        assert!(matches!(
            GgufWriter::create(&p, false, &meta(), dup, 32),
            Err(FormatError::DuplicateTensor { .. })
        ));
        let bad = vec![("q".to_string(), GgmlType::Q4_0, vec![33])];
        assert!(matches!(
            GgufWriter::create(&p, false, &meta(), bad, 32),
            Err(FormatError::RowNotBlockMultiple { .. })
        ));
        assert!(matches!(
            GgufWriter::create(&p, false, &meta(), vec![], 48),
            Err(FormatError::BadAlignment { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
