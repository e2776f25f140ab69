//! The converter's view of an HF checkpoint's weights: [`SafetensorsModel`] (every shard mapped,
//! headers and index validated at open time) plus HF-order shapes and the means to drop a
//! tensor's pages once they have been converted.

use std::ops::Range;
use std::path::{Path, PathBuf};

use outcore_format::safetensors::SafetensorsModel;
use outcore_format::{GgmlType, TensorView};

use crate::error::{ConvertError, Result};

/// One tensor of the checkpoint.
#[derive(Clone, Debug)]
pub struct StTensor {
    pub name: String,
    pub ty: GgmlType,
    /// HF order (outermost first).
    pub hf_shape: Vec<u64>,
    /// Bytes in its shard.
    pub len: u64,
}

/// All shards of a checkpoint, mapped.
pub struct Checkpoint {
    pub dir: PathBuf,
    model: SafetensorsModel,
    tensors: std::collections::BTreeMap<String, StTensor>,
}

impl Checkpoint {
    /// Opens `dir` (index + shards, or `model.safetensors`). Fails on a missing shard, an index entry
    /// its shard lacks, a malformed header, or a dtype other than F32/F16/BF16.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        if !dir.is_dir() {
            return Err(ConvertError::Missing {
                path: dir.to_path_buf(),
                what: "checkpoint directory",
            });
        }
        let model = SafetensorsModel::open(dir)?;
        let mut tensors = std::collections::BTreeMap::new();
        for i in model.infos() {
            let ty = i.ty.ok_or_else(|| ConvertError::BadTensor {
                tensor: i.name.clone(),
                problem: format!(
                    "dtype {} (only F32, F16 and BF16 can be converted)",
                    i.dtype
                ),
            })?;
            let hf_shape = i.shape.iter().rev().copied().collect();
            tensors.insert(
                i.name.clone(),
                StTensor {
                    name: i.name.clone(),
                    ty,
                    hf_shape,
                    len: i.range.len() as u64,
                },
            );
        }
        // Tensors are read front to back: ask for the larger read-ahead (best effort).
        for shard in model.shards() {
            let _ = shard.mapping().advise_sequential();
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            model,
            tensors,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn info(&self, name: &str) -> Option<&StTensor> {
        self.tensors.get(name)
    }

    pub fn view(&self, name: &str) -> Option<TensorView<'_>> {
        self.model.tensor(name)
    }

    /// Starts reading `range` (relative to the tensor's bytes) into the page cache in the
    /// background (MADV_WILLNEED), so the disk works while the previous chunk is quantized.
    pub fn prefetch(&self, name: &str, range: Range<usize>) {
        if let Some(i) = self.model.info(name) {
            let start = i.range.start + range.start.min(i.range.len());
            let end = i.range.start + range.end.min(i.range.len());
            // Best effort: without it the pages are faulted in when first touched.
            let _ = self.model.shards()[i.shard]
                .mapping()
                .advise_willneed(start..end);
        }
    }

    /// Drops the mapped pages of `range` (relative to the tensor's bytes) from this process, and
    /// with `drop_cache` from the page cache as well.
    pub fn release(&self, name: &str, range: Range<usize>, drop_cache: bool) {
        if let Some(i) = self.model.info(name) {
            let start = i.range.start + range.start.min(i.range.len());
            let end = i.range.start + range.end.min(i.range.len());
            // Best effort: a failed madvise only means the pages stay resident a while longer.
            let m = self.model.shards()[i.shard].mapping();
            let _ = m.advise_dontneed(start..end);
            if drop_cache {
                let _ = m.fadvise_dontneed(start..end);
            }
        }
    }

    /// Total bytes of all tensors.
    pub fn total_bytes(&self) -> u64 {
        self.model.total_bytes()
    }
}
