//! GGUF -> GGUF in another file type (llama-quantize): dequantize each tensor's rows to f32,
//! quantize them with the type mix, stream them out. Metadata is copied; `general.file_type` and
//! `general.quantization_version` are updated and split keys dropped. A tensor that keeps its
//! type is copied byte for byte.

use std::path::PathBuf;

use outcore_format::gguf::GgufFile;
use outcore_format::{GgmlType, LoadMode, Metadata, Value};

use crate::codec::decode_row;
use crate::convert::{ModeChoice, Report};
use crate::error::{ConvertError, Result};
use crate::mix::{choose_type, FileType, MixContext};
use crate::pipeline::{self, OutTensor, Progress, RowSource};

#[derive(Clone, Debug)]
pub struct RequantizeOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    pub ftype: FileType,
    pub force: bool,
    pub mode: ModeChoice,
    pub threads: usize,
    pub pure: bool,
}

/// Rows of a GGUF tensor, dequantized (or copied when the type does not change).
struct GgufRows<'a> {
    file: &'a GgufFile,
    name: String,
    ty: GgmlType,
    row_len: usize,
}

impl RowSource for GgufRows<'_> {
    fn fill(&self, first: usize, out: &mut [f32]) -> Result<()> {
        let view = self.file.tensor(&self.name).expect("listed by the file");
        let rb = self
            .ty
            .row_bytes(self.row_len as u64)
            .expect("validated by the reader") as usize;
        for (i, row) in out.chunks_exact_mut(self.row_len).enumerate() {
            let r = first + i;
            decode_row(self.ty, &view.bytes[r * rb..(r + 1) * rb], row, &self.name)?;
        }
        Ok(())
    }

    fn release(&self, first: usize, n: usize, drop_cache: bool) {
        if let Some(range) = self.file.tensor_range(&self.name) {
            let rb = self.ty.row_bytes(self.row_len as u64).unwrap_or(0) as usize;
            let start = range.start + first * rb;
            let r = start..(start + n * rb).min(range.end);
            let _ = self.file.mapping().advise_dontneed(r.clone());
            if drop_cache {
                let _ = self.file.mapping().fadvise_dontneed(r);
            }
        }
    }

    fn input_bytes(&self) -> u64 {
        self.file
            .tensor(&self.name)
            .map(|v| v.bytes.len() as u64)
            .unwrap_or(0)
    }
}

/// Requantizes `opts.input` into `opts.output`.
pub fn requantize(opts: &RequantizeOptions, progress: &dyn Progress) -> Result<Report> {
    if !opts.force && opts.output.exists() {
        return Err(ConvertError::OutputExists {
            path: opts.output.clone(),
        });
    }
    let file = GgufFile::open(&opts.input, LoadMode::Mmap)?;
    let arch = file.metadata.get_str("general.architecture")?.to_string();
    let n_layer = file.metadata.get_u32(&format!("{arch}.block_count"))? as usize;
    let has_output = file.tensor("output.weight").is_some();
    let mix = MixContext {
        ftype: opts.ftype,
        n_layer,
        has_output,
        pure: opts.pure,
    };

    let mut metadata = Metadata::new();
    for (k, v) in file.metadata.iter() {
        if k.starts_with("split.") || k == "general.alignment" {
            continue;
        }
        metadata.insert(k, v.clone());
    }
    metadata.insert("general.quantization_version", Value::U32(2));
    metadata.insert("general.file_type", Value::U32(opts.ftype.id()));

    let mut tensors = Vec::new();
    let mut largest_f32 = 0u64;
    for v in file.tensors() {
        let ty = choose_type(&mix, v.name, v.shape, v.ty);
        largest_f32 = largest_f32.max(v.n_elements() * 4);
        let row_len = v.row_len();
        let source: Box<dyn RowSource> = if ty == v.ty {
            Box::new(CopyRows {
                file: &file,
                name: v.name.to_string(),
                ty,
            })
        } else {
            Box::new(GgufRows {
                file: &file,
                name: v.name.to_string(),
                ty: v.ty,
                row_len,
            })
        };
        tensors.push(OutTensor {
            name: v.name.to_string(),
            shape: v.shape.to_vec(),
            ty,
            source,
        });
    }
    let (mode, mode_reason) = opts.mode.resolve(largest_f32);
    let stats = pipeline::write_gguf(
        &opts.output,
        opts.force,
        &metadata,
        tensors,
        mode,
        opts.threads,
        progress,
    )?;
    Ok(Report {
        stats,
        mode,
        mode_reason,
        peak_rss: crate::pipeline::peak_rss(),
        largest_tensor_f32: largest_f32,
    })
}

/// A tensor whose type does not change: its bytes are copied as they are (pipeline's raw path).
struct CopyRows<'a> {
    file: &'a GgufFile,
    name: String,
    ty: GgmlType,
}

impl RowSource for CopyRows<'_> {
    fn fill(&self, _first: usize, _out: &mut [f32]) -> Result<()> {
        Err(ConvertError::Invalid {
            what: format!("{}: raw copies are not decoded", self.name),
        })
    }

    fn raw(&self) -> Option<&[u8]> {
        self.file.tensor(&self.name).map(|v| v.bytes)
    }

    fn release(&self, first: usize, n: usize, drop_cache: bool) {
        if let (Some(range), Some(v)) = (
            self.file.tensor_range(&self.name),
            self.file.tensor(&self.name),
        ) {
            let rb = self.ty.row_bytes(v.row_len() as u64).unwrap_or(0) as usize;
            let start = range.start + first * rb;
            let r = start..(start + n * rb).min(range.end);
            let _ = self.file.mapping().advise_dontneed(r.clone());
            if drop_cache {
                let _ = self.file.mapping().fadvise_dontneed(r);
            }
        }
    }

    fn input_bytes(&self) -> u64 {
        self.file
            .tensor(&self.name)
            .map(|v| v.bytes.len() as u64)
            .unwrap_or(0)
    }
}
