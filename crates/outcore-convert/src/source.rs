//! The converter's view of an HF checkpoint's weights: every tensor of every shard, mapped, with
//! the means to drop a tensor's pages once it has been converted.
//!
//! This reads the safetensors header (8-byte length + JSON) over [`Mapping`]; every check happens
//! at open time, so a conversion fails before writing anything: a shard named by the index that
//! does not exist, an index entry whose shard lacks the tensor, offsets outside the file, a dtype
//! other than F32/F16/BF16, or a byte length that disagrees with the shape.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use outcore_format::{GgmlType, LoadMode, Mapping, TensorView};
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// One tensor in one shard.
#[derive(Clone, Debug)]
pub struct StTensor {
    pub name: String,
    pub ty: GgmlType,
    /// HF order (outermost first).
    pub hf_shape: Vec<u64>,
    /// ggml order (innermost first).
    pub shape: Vec<u64>,
    pub shard: usize,
    /// Absolute byte range in the shard file.
    pub range: Range<usize>,
}

/// All shards of a checkpoint, mapped.
pub struct Checkpoint {
    pub dir: PathBuf,
    shards: Vec<Mapping>,
    tensors: BTreeMap<String, StTensor>,
}

fn dtype(s: &str) -> Option<GgmlType> {
    match s {
        "F32" => Some(GgmlType::F32),
        "F16" => Some(GgmlType::F16),
        "BF16" => Some(GgmlType::BF16),
        _ => None,
    }
}

fn bad(path: &Path, tensor: &str, problem: String) -> ConvertError {
    ConvertError::BadTensor {
        tensor: format!("{} in {}", tensor, path.display()),
        problem,
    }
}

/// Parses one shard's header; returns its tensors (shard index filled in).
fn parse_shard(path: &Path, bytes: &[u8], shard: usize) -> Result<Vec<StTensor>> {
    let head = |problem: String| ConvertError::BadTensor {
        tensor: format!("(header of {})", path.display()),
        problem,
    };
    if bytes.len() < 8 {
        return Err(head(format!(
            "file is {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let data_start = 8u64
        .checked_add(n)
        .filter(|&e| e <= bytes.len() as u64)
        .ok_or_else(|| {
            head(format!(
                "header length {n} exceeds the {} bytes that remain",
                bytes.len() - 8
            ))
        })? as usize;
    let json: Json =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|source| ConvertError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let obj = json
        .as_object()
        .ok_or_else(|| head("header is not a JSON object".into()))?;
    let data_len = (bytes.len() - data_start) as u64;
    let mut out = Vec::new();
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dt = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        let ty = dtype(dt).ok_or_else(|| {
            bad(
                path,
                name,
                format!("dtype {dt} (only F32, F16 and BF16 can be converted)"),
            )
        })?;
        let hf_shape: Vec<u64> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(path, name, "no shape".into()))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| bad(path, name, "shape holds a non-integer".into()))
            })
            .collect::<Result<_>>()?;
        let offs: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        if offs.len() != 2 || offs[0] > offs[1] || offs[1] > data_len {
            return Err(bad(
                path,
                name,
                format!("data_offsets {offs:?} outside the {data_len} data bytes"),
            ));
        }
        let n_el = hf_shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let want = n_el.and_then(|n| n.checked_mul(ty.type_size() as u64));
        if want != Some(offs[1] - offs[0]) {
            return Err(bad(
                path,
                name,
                format!("{} bytes for shape {hf_shape:?} of {ty}", offs[1] - offs[0]),
            ));
        }
        let shape: Vec<u64> = if hf_shape.is_empty() {
            vec![1]
        } else {
            hf_shape.iter().rev().copied().collect()
        };
        out.push(StTensor {
            name: name.clone(),
            ty,
            hf_shape,
            shape,
            shard,
            range: data_start + offs[0] as usize..data_start + offs[1] as usize,
        });
    }
    Ok(out)
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json` and its shards, or `dir/model.safetensors`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let mut files: Vec<String> = Vec::new();
        let mut weight_map: Option<HashMap<String, String>> = None;
        if index_path.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| ConvertError::io(&index_path, e))?;
            let json: Json = serde_json::from_str(&text).map_err(|source| ConvertError::Json {
                path: index_path.clone(),
                source,
            })?;
            let wm = json
                .get("weight_map")
                .and_then(|w| w.as_object())
                .ok_or_else(|| ConvertError::BadConfig {
                    path: index_path.clone(),
                    key: "weight_map".into(),
                    problem: "is missing or not an object".into(),
                })?;
            let mut map = HashMap::new();
            for (k, v) in wm {
                let f = v.as_str().ok_or_else(|| ConvertError::BadConfig {
                    path: index_path.clone(),
                    key: format!("weight_map.{k}"),
                    problem: "is not a file name".into(),
                })?;
                if f.contains('/') || f.contains("..") {
                    return Err(ConvertError::BadConfig {
                        path: index_path.clone(),
                        key: format!("weight_map.{k}"),
                        problem: format!("names {f:?}, outside the checkpoint directory"),
                    });
                }
                if !files.iter().any(|x| x == f) {
                    files.push(f.to_string());
                }
                map.insert(k.clone(), f.to_string());
            }
            files.sort();
            weight_map = Some(map);
        } else if single.exists() {
            files.push("model.safetensors".into());
        } else if !dir.is_dir() {
            return Err(ConvertError::Missing {
                path: dir.to_path_buf(),
                what: "checkpoint directory",
            });
        } else {
            return Err(ConvertError::Missing {
                path: single,
                what: "model.safetensors or model.safetensors.index.json",
            });
        }
        // Check every shard exists before mapping any.
        for f in &files {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(ConvertError::Missing {
                    path: p,
                    what: "shard named by model.safetensors.index.json",
                });
            }
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            let p = dir.join(f);
            let m = Mapping::open(&p, LoadMode::Mmap)?;
            for t in parse_shard(&p, &m, i)? {
                if let Some(wm) = &weight_map {
                    if wm.get(&t.name).map(String::as_str) != Some(f.as_str()) {
                        return Err(bad(
                            &p,
                            &t.name,
                            "is not listed for this shard in the index".into(),
                        ));
                    }
                }
                if tensors.contains_key(&t.name) {
                    return Err(bad(&p, &t.name, "appears in two shards".into()));
                }
                tensors.insert(t.name.clone(), t);
            }
            shards.push(m);
        }
        if let Some(wm) = &weight_map {
            let mut missing: Vec<&String> =
                wm.keys().filter(|k| !tensors.contains_key(*k)).collect();
            missing.sort();
            if let Some(first) = missing.first() {
                return Err(ConvertError::BadTensor {
                    tensor: first.to_string(),
                    problem: format!(
                        "listed in {} for {} but not stored there ({} missing in all)",
                        index_path.display(),
                        wm[*first],
                        missing.len()
                    ),
                });
            }
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            shards,
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
        let t = self.tensors.get(name)?;
        Some(TensorView {
            name: &t.name,
            ty: t.ty,
            shape: &t.shape,
            bytes: &self.shards[t.shard][t.range.clone()],
        })
    }

    /// Drops the mapped pages of `range` (relative to the tensor's bytes) from this process.
    pub fn release(&self, name: &str, range: Range<usize>) {
        if let Some(t) = self.tensors.get(name) {
            let start = t.range.start + range.start.min(t.range.len());
            let end = t.range.start + range.end.min(t.range.len());
            // Best effort: a failed madvise only means the pages stay resident a while longer.
            let _ = self.shards[t.shard].advise_dontneed(start..end);
        }
    }

    /// Total bytes of all tensors.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.range.len() as u64).sum()
    }
}
