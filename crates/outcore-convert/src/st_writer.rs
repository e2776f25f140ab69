//! Streaming writer of a sharded safetensors checkpoint (`model-0000i-of-0000N.safetensors` +
//! `model.safetensors.index.json`, or one `model.safetensors`), as transformers' `save_pretrained`
//! lays it out: shards filled greedily in tensor order up to the size limit, each header an
//! 8-byte length plus JSON padded with spaces to a multiple of 8. Every shard goes through
//! [`AtomicFile`]; a half-written checkpoint leaves no shard behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use outcore_format::{AtomicFile, GgmlType};
use serde_json::{json, Map, Value as Json};

use crate::error::{ConvertError, Result};
use crate::pipeline::Sink;

struct Planned {
    name: String,
    dtype: &'static str,
    hf_shape: Vec<u64>,
    size: u64,
    shard: usize,
    offset: u64,
}

/// Writes the tensors declared at creation, in that order.
pub struct SafetensorsWriter {
    dir: PathBuf,
    force: bool,
    tensors: Vec<Planned>,
    shard_names: Vec<String>,
    next: usize,
    open: Option<(AtomicFile, u64)>,
    open_shard: Option<usize>,
    done: Vec<AtomicFile>,
}

fn dtype_name(ty: GgmlType) -> Result<&'static str> {
    match ty {
        GgmlType::F32 => Ok("F32"),
        GgmlType::F16 => Ok("F16"),
        GgmlType::BF16 => Ok("BF16"),
        other => Err(ConvertError::Invalid {
            what: format!("safetensors output cannot hold {other} tensors"),
        }),
    }
}

impl SafetensorsWriter {
    /// Plans the shards for `tensors` = (HF name, type, HF shape) with at most `max_shard` bytes of
    /// tensor data per shard (a larger tensor gets a shard to itself).
    pub fn create(
        dir: &Path,
        force: bool,
        tensors: &[(String, GgmlType, Vec<u64>)],
        max_shard: u64,
    ) -> Result<Self> {
        let mut planned = Vec::with_capacity(tensors.len());
        let (mut shard, mut used) = (0usize, 0u64);
        for (name, ty, shape) in tensors {
            let size = shape.iter().product::<u64>() * ty.type_size() as u64;
            if used > 0 && used + size > max_shard {
                shard += 1;
                used = 0;
            }
            planned.push(Planned {
                name: name.clone(),
                dtype: dtype_name(*ty)?,
                hf_shape: shape.clone(),
                size,
                shard,
                offset: used,
            });
            used += size;
        }
        let n = if planned.is_empty() { 0 } else { shard + 1 };
        let shard_names: Vec<String> = if n == 1 {
            vec!["model.safetensors".into()]
        } else {
            (1..=n)
                .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
                .collect()
        };
        std::fs::create_dir_all(dir).map_err(|e| ConvertError::io(dir, e))?;
        for name in shard_names
            .iter()
            .map(String::as_str)
            .chain(["model.safetensors.index.json"])
        {
            let p = dir.join(name);
            if !force && p.exists() {
                return Err(ConvertError::OutputExists { path: p });
            }
        }
        Ok(SafetensorsWriter {
            dir: dir.to_path_buf(),
            force,
            tensors: planned,
            shard_names,
            next: 0,
            open: None,
            open_shard: None,
            done: Vec::new(),
        })
    }

    fn header(&self, shard: usize) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("__metadata__".into(), json!({"format": "pt"}));
        for t in self.tensors.iter().filter(|t| t.shard == shard) {
            m.insert(
                t.name.clone(),
                json!({"dtype": t.dtype, "shape": t.hf_shape, "data_offsets": [t.offset, t.offset + t.size]}),
            );
        }
        let mut h = serde_json::to_vec(&Json::Object(m)).expect("JSON of strings and numbers");
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out
    }

    fn io(&self, e: std::io::Error) -> ConvertError {
        ConvertError::io(&self.dir, e)
    }

    /// Commits every shard and writes the index (when there is more than one shard).
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.next != self.tensors.len() {
            return Err(ConvertError::Invalid {
                what: format!(
                    "safetensors writer: {} of {} tensors written",
                    self.next,
                    self.tensors.len()
                ),
            });
        }
        if let Some((f, _)) = self.open.take() {
            self.done.push(f);
        }
        let mut paths = Vec::new();
        for f in self.done.drain(..) {
            paths.push(f.path().to_path_buf());
            f.commit()?;
        }
        if self.shard_names.len() > 1 {
            let mut wm = Map::new();
            for t in &self.tensors {
                wm.insert(
                    t.name.clone(),
                    Json::String(self.shard_names[t.shard].clone()),
                );
            }
            let total: u64 = self.tensors.iter().map(|t| t.size).sum();
            let idx = json!({"metadata": {"total_size": total}, "weight_map": wm});
            let p = self.dir.join("model.safetensors.index.json");
            let mut f = AtomicFile::create(&p, self.force)?;
            let text = serde_json::to_string_pretty(&idx).expect("JSON");
            f.write_all(text.as_bytes())
                .map_err(|e| ConvertError::io(&p, e))?;
            f.write_all(b"\n").map_err(|e| ConvertError::io(&p, e))?;
            f.commit()?;
            paths.push(p);
        }
        Ok(paths)
    }
}

impl Sink for SafetensorsWriter {
    fn begin_tensor(&mut self, name: &str) -> Result<()> {
        let t = self
            .tensors
            .get(self.next)
            .ok_or_else(|| ConvertError::Invalid {
                what: format!("unexpected tensor {name}"),
            })?;
        if t.name != name {
            return Err(ConvertError::Invalid {
                what: format!("tensor order: expected {}, got {name}", t.name),
            });
        }
        let shard = t.shard;
        if self.open_shard != Some(shard) {
            if let Some((f, _)) = self.open.take() {
                self.done.push(f);
            }
            let p = self.dir.join(&self.shard_names[shard]);
            let mut f = AtomicFile::create(&p, self.force)?;
            let h = self.header(shard);
            f.write_all(&h).map_err(|e| ConvertError::io(&p, e))?;
            self.open = Some((f, 0));
            self.open_shard = Some(shard);
        }
        Ok(())
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let Some((f, n)) = self.open.as_mut() else {
            return Err(ConvertError::Invalid {
                what: "no open shard".into(),
            });
        };
        *n += bytes.len() as u64;
        if let Err(e) = f.write_all(bytes) {
            return Err(self.io(e));
        }
        Ok(())
    }

    fn end_tensor(&mut self) -> Result<()> {
        self.next += 1;
        Ok(())
    }
}
