//! Hugging Face safetensors: one file, a directory with `model.safetensors`, or a sharded directory
//! with `model.safetensors.index.json`. Each shard is mapped once; tensors are zero-copy
//! [`TensorView`]s with their shapes reversed into ggml order (`shape[0]` = the contiguous row).
//!
//! Headers are parsed by the `safetensors` crate (`SafeTensors::read_metadata`), which checks the
//! JSON, that offsets are contiguous and match dtype x shape, and that the data fills the file
//! exactly. We add a bound on the header length before touching it, re-check every tensor's byte
//! range against the file, and check the index against the shards.
//!
//! Tensor data in safetensors is not aligned to anything: a view's bytes may start at any address.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::FormatError;
use crate::mapping::{LoadMode, Mapping};
use crate::{GgmlType, TensorView};

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The file of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Largest header we accept (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One mapped `.safetensors` file.
#[derive(Debug)]
pub struct Shard {
    mapping: Mapping,
    /// Absolute offset of the byte buffer (8 + header length).
    data_start: usize,
    /// The header's `__metadata__` string map, if any.
    metadata: HashMap<String, String>,
}

impl Shard {
    pub fn path(&self) -> &Path {
        self.mapping.path()
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Absolute offset where tensor data starts.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// The header's `__metadata__` entries.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
}

/// A tensor's entry: where it lives and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsInfo {
    pub name: String,
    /// Index into [`SafetensorsModel::shards`].
    pub shard: usize,
    /// The dtype as safetensors names it ("F32", "BF16", "I64", ...).
    pub dtype: String,
    /// The matching ggml type (F32/F16/BF16 only).
    pub ty: Option<GgmlType>,
    /// Shape in ggml order (the header's shape reversed).
    pub shape: Vec<u64>,
    /// Absolute byte range in the shard file.
    pub range: Range<usize>,
}

/// A safetensors checkpoint (one or more shards) with a single lookup by HF tensor name.
#[derive(Debug)]
pub struct SafetensorsModel {
    root: PathBuf,
    shards: Vec<Shard>,
    infos: Vec<SafetensorsInfo>,
    by_name: HashMap<String, usize>,
}

fn ggml_type_of(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::F32 => Some(GgmlType::F32),
        Dtype::F16 => Some(GgmlType::F16),
        Dtype::BF16 => Some(GgmlType::BF16),
        _ => None,
    }
}

/// A readable reason for a `safetensors` crate error (its Display is its Debug).
fn describe(e: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader => "header is not valid UTF-8".into(),
        E::InvalidHeaderStart => "header does not start with `{`".into(),
        E::InvalidHeaderDeserialization => "header is not valid safetensors JSON".into(),
        E::HeaderTooLarge => "header length is too large".into(),
        E::HeaderTooSmall => "file is shorter than the 8-byte header length".into(),
        E::InvalidHeaderLength => "header length exceeds the file".into(),
        E::InvalidOffset(t) => format!("tensor `{t}` has offsets that are not contiguous"),
        E::TensorInvalidInfo => "a tensor's byte range does not match its dtype and shape".into(),
        E::MetadataIncompleteBuffer => "tensor data does not cover the file exactly".into(),
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    }
}

impl Shard {
    fn open(path: &Path, mode: LoadMode) -> Result<(Shard, Vec<SafetensorsInfo>), FormatError> {
        let mapping = Mapping::open(path, mode)?;
        let h = parse_header(path, &mapping)?;
        Ok((
            Shard {
                mapping,
                data_start: h.data_start,
                metadata: h.metadata,
            },
            h.tensors,
        ))
    }
}

/// A parsed and validated safetensors header.
#[derive(Clone, Debug)]
pub struct SafetensorsHeader {
    /// Absolute offset where tensor data starts (8 + header length).
    pub data_start: usize,
    /// Tensors sorted by offset (`shard` is 0).
    pub tensors: Vec<SafetensorsInfo>,
    /// The `__metadata__` string map.
    pub metadata: HashMap<String, String>,
}

/// Parses and validates the header of a safetensors file whose bytes are `bytes` (the whole
/// file); `path` only names the file in errors.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<SafetensorsHeader, FormatError> {
    let bad = |reason: String| FormatError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "file is {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    }
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n8);
    let file_len = bytes.len() as u64;
    if n > MAX_HEADER_BYTES || n > file_len - 8 {
        return Err(FormatError::SafetensorsHeaderTooLarge {
            path: path.to_path_buf(),
            len: n,
            limit: MAX_HEADER_BYTES.min(file_len - 8),
        });
    }
    let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(describe(e)))?;
    let data_start = 8 + header_len;
    let data_len = bytes.len() - data_start;
    let mut tensors = Vec::new();
    for (name, info) in meta.tensors() {
        let (s, e) = info.data_offsets;
        if s > e || e > data_len {
            return Err(FormatError::SafetensorsOutOfBounds {
                path: path.to_path_buf(),
                tensor: name,
                start: s as u64,
                end: e as u64,
                data_len: data_len as u64,
            });
        }
        let n_el = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n_el.and_then(|n| n.checked_mul(info.dtype.size())) != Some(e - s) {
            return Err(bad(format!(
                "tensor `{name}`: {} bytes do not match its dtype and shape",
                e - s
            )));
        }
        tensors.push(SafetensorsInfo {
            name,
            shard: 0,
            dtype: format!("{:?}", info.dtype),
            ty: ggml_type_of(info.dtype),
            shape: info.shape.iter().rev().map(|&d| d as u64).collect(),
            range: data_start + s..data_start + e,
        });
    }
    tensors.sort_by_key(|i| i.range.start);
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok(SafetensorsHeader {
        data_start,
        tensors,
        metadata,
    })
}

/// A shard name from the index must be a plain relative path inside the checkpoint directory.
fn safe_shard_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

impl SafetensorsModel {
    /// Opens a `.safetensors` file or a checkpoint directory, mapping every shard.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsModel, FormatError> {
        Self::open_with(path, LoadMode::Mmap)
    }

    /// Like [`SafetensorsModel::open`] with an explicit load mode for the shards.
    pub fn open_with(
        path: impl AsRef<Path>,
        mode: LoadMode,
    ) -> Result<SafetensorsModel, FormatError> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return Self::open_index(path, &index, mode);
            }
            let single = path.join(SINGLE_FILE);
            if single.is_file() {
                return Self::from_files(path, &[single], mode);
            }
            // Fall back to every *.safetensors in the directory (sorted).
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| FormatError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
                .collect();
            if files.is_empty() {
                return Err(FormatError::NoSafetensors {
                    path: path.to_path_buf(),
                });
            }
            files.sort();
            return Self::from_files(path, &files, mode);
        }
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_files(&root, &[path.to_path_buf()], mode)
    }

    fn from_files(
        root: &Path,
        files: &[PathBuf],
        mode: LoadMode,
    ) -> Result<SafetensorsModel, FormatError> {
        let mut model = SafetensorsModel {
            root: root.to_path_buf(),
            shards: Vec::new(),
            infos: Vec::new(),
            by_name: HashMap::new(),
        };
        for f in files {
            model.add_shard(f, mode)?;
        }
        Ok(model)
    }

    fn add_shard(&mut self, file: &Path, mode: LoadMode) -> Result<usize, FormatError> {
        let (shard, infos) = Shard::open(file, mode)?;
        let idx = self.shards.len();
        for mut info in infos {
            info.shard = idx;
            if let Some(&other) = self.by_name.get(&info.name) {
                let a = self.shards[self.infos[other].shard].path().to_path_buf();
                return Err(FormatError::DuplicateShardTensor {
                    tensor: info.name,
                    a,
                    b: file.to_path_buf(),
                });
            }
            self.by_name.insert(info.name.clone(), self.infos.len());
            self.infos.push(info);
        }
        self.shards.push(shard);
        Ok(idx)
    }

    fn open_index(
        dir: &Path,
        index: &Path,
        mode: LoadMode,
    ) -> Result<SafetensorsModel, FormatError> {
        let bad = |reason: String| FormatError::BadIndex {
            path: index.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(index).map_err(|e| FormatError::io(index, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        // Shards in order of first appearance in the sorted weight map (deterministic).
        let mut names: Vec<(&String, &str)> = Vec::with_capacity(map.len());
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(format!("`{tensor}` maps to a non-string")))?;
            if !safe_shard_name(shard) {
                return Err(bad(format!(
                    "shard name `{shard}` for `{tensor}` is not a plain relative path"
                )));
            }
            names.push((tensor, shard));
        }
        let mut shard_files: Vec<&str> = names.iter().map(|&(_, s)| s).collect();
        shard_files.sort_unstable();
        shard_files.dedup();
        let mut model = SafetensorsModel {
            root: dir.to_path_buf(),
            shards: Vec::new(),
            infos: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut shard_index = HashMap::new();
        for s in shard_files {
            let file = dir.join(s);
            if !file.is_file() {
                return Err(FormatError::MissingShard {
                    index: index.to_path_buf(),
                    shard: s.to_string(),
                });
            }
            shard_index.insert(s, model.add_shard(&file, mode)?);
        }
        for (tensor, shard) in names {
            let want = shard_index[shard];
            match model.by_name.get(tensor.as_str()) {
                Some(&i) if model.infos[i].shard == want => {}
                _ => {
                    return Err(FormatError::TensorMissingFromShard {
                        tensor: tensor.clone(),
                        shard: model.shards[want].path().to_path_buf(),
                    })
                }
            }
        }
        Ok(model)
    }

    /// The file or directory this model was opened from (directory for sharded checkpoints).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Tensor names, shard by shard, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.infos.iter().map(|i| i.name.as_str())
    }

    /// Every tensor's entry, shard by shard, in file order.
    pub fn infos(&self) -> &[SafetensorsInfo] {
        &self.infos
    }

    pub fn info(&self, name: &str) -> Option<&SafetensorsInfo> {
        self.by_name.get(name).map(|&i| &self.infos[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Total bytes of tensor data over all shards.
    pub fn total_bytes(&self) -> u64 {
        self.infos.iter().map(|i| i.range.len() as u64).sum()
    }

    fn view<'a>(&'a self, i: &'a SafetensorsInfo, ty: GgmlType) -> TensorView<'a> {
        TensorView {
            name: &i.name,
            ty,
            shape: &i.shape,
            bytes: &self.shards[i.shard].mapping[i.range.clone()],
        }
    }

    /// A zero-copy view of `name` (HF name) if it exists and is F32, F16 or BF16.
    /// Use [`SafetensorsModel::get`] to learn why a tensor is not available.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let i = self.info(name)?;
        i.ty.map(|ty| self.view(i, ty))
    }

    /// Like [`SafetensorsModel::tensor`], with an error naming the tensor when it is missing or
    /// has a dtype other than F32/F16/BF16.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>, FormatError> {
        let i = self.info(name).ok_or_else(|| FormatError::TensorNotFound {
            tensor: name.to_string(),
        })?;
        match i.ty {
            Some(ty) => Ok(self.view(i, ty)),
            None => Err(FormatError::UnsupportedDtype {
                tensor: name.to_string(),
                dtype: i.dtype.clone(),
            }),
        }
    }

    /// All tensors with a supported dtype, shard by shard, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.infos
            .iter()
            .filter_map(|i| i.ty.map(|ty| self.view(i, ty)))
    }
}
