//! llama2.c's "version 2" int8 checkpoint (karpathy/llama2.c `export.py::version2_export`, read
//! by `runq.c`) and its `tokenizer.bin`.
//!
//! Checkpoint layout (little-endian):
//! - a 256-byte header: `u32` magic 0x616b3432 ("ak42"), `i32` version 2, seven `i32`
//!   (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len), a `u8`
//!   shared-classifier flag, an `i32` group size, zero padding. outcore writes an optional
//!   extension inside the padding (runq.c ignores it): at byte 64, `b"ocx1"`, `f32` rope theta,
//!   `f32` RMSNorm epsilon. Without it the llama2.c constants (10000, 1e-5) apply.
//! - fp32 norms: attention norms of every layer, FFN norms of every layer, the final norm.
//! - int8 tensors, each as `numel` int8 values then `numel / group_size` f32 scales:
//!   token embeddings, wq of every layer, then wk, wv, wo, w1 (gate), w2 (down), w3 (up),
//!   and the classifier when it is not shared with the embeddings.
//!
//! Rows are HF/PyTorch `[out, in]` row-major, which is ggml's `[in, out]` order: row `r` of a
//! matrix is `q[r * in..(r + 1) * in]`. q/k rows follow Meta's interleaved-RoPE layout, the same
//! as llama.cpp's GGUF layout.
//!
//! `tokenizer.bin`: `i32` max_token_length, then per token `f32` score, `i32` length, bytes.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::mapping::{LoadMode, Mapping};
use crate::{FormatError, GgmlType};

pub const MAGIC: u32 = 0x616b_3432;
pub const VERSION: i32 = 2;
pub const HEADER_BYTES: usize = 256;
/// Where outcore's extension lies in the header padding.
const EXT_OFFSET: usize = 64;
const EXT_MAGIC: &[u8; 4] = b"ocx1";
/// llama2.c's hard-coded RoPE base and RMSNorm epsilon.
pub const DEFAULT_ROPE_THETA: f32 = 10000.0;
pub const DEFAULT_RMS_EPS: f32 = 1e-5;

/// Why a llama2.c file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Llama2cError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: bad magic {found:#010x} (expected 0x616b3432 \"ak42\"): not a llama2.c v2 checkpoint", path.display())]
    BadMagic { path: PathBuf, found: u32 },
    #[error("{}: llama2.c version {found} is not supported (only version 2, the int8 export)", path.display())]
    BadVersion { path: PathBuf, found: i32 },
    #[error("{}: header field `{field}` = {value} is invalid ({why})", path.display())]
    BadField {
        path: PathBuf,
        field: &'static str,
        value: i64,
        why: &'static str,
    },
    #[error("{}: the file is {found} bytes, the header describes {expected}", path.display())]
    Size {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{}: token {index} at offset {offset}: {why}", path.display())]
    BadToken {
        path: PathBuf,
        index: usize,
        offset: u64,
        why: &'static str,
    },
}

pub type Result<T, E = Llama2cError> = std::result::Result<T, E>;

/// The header's hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Llama2cConfig {
    pub dim: u32,
    pub hidden_dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub vocab_size: u32,
    pub max_seq_len: u32,
    pub shared_classifier: bool,
    pub group_size: u32,
    /// outcore's extension (rope theta, rms eps); `None` reads as llama2.c's constants.
    pub rope_theta: Option<f32>,
    pub rms_eps: Option<f32>,
}

/// How a tensor is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F32,
    /// int8 values then one f32 scale per group.
    Q8,
}

/// One tensor of the checkpoint, named as in GGUF (`blk.N.attn_q.weight`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Llama2cTensor {
    pub name: String,
    pub kind: Kind,
    /// ggml order: [row length, rows] (rows = 1 for vectors).
    pub shape: [u64; 2],
    /// Byte offset of the data (f32 values, or int8 values for `Q8`).
    pub offset: u64,
    /// Byte offset of the f32 scales (`Q8` only; equal to the end of data for `F32`).
    pub scales_offset: u64,
    /// Offset one past the tensor's last byte.
    pub end: u64,
}

impl Llama2cTensor {
    pub fn numel(&self) -> u64 {
        self.shape[0] * self.shape[1]
    }
}

fn le_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Llama2cConfig {
    pub fn head_dim(&self) -> u32 {
        self.dim / self.n_heads.max(1)
    }

    pub fn kv_dim(&self) -> u32 {
        self.head_dim() * self.n_kv_heads
    }

    pub fn rope_theta(&self) -> f32 {
        self.rope_theta.unwrap_or(DEFAULT_ROPE_THETA)
    }

    pub fn rms_eps(&self) -> f32 {
        self.rms_eps.unwrap_or(DEFAULT_RMS_EPS)
    }

    /// The 256-byte header.
    pub fn to_header(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&VERSION.to_le_bytes());
        let ints = [
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.max_seq_len,
        ];
        for (i, v) in ints.iter().enumerate() {
            h[8 + 4 * i..12 + 4 * i].copy_from_slice(&(*v as i32).to_le_bytes());
        }
        h[36] = self.shared_classifier as u8;
        h[37..41].copy_from_slice(&(self.group_size as i32).to_le_bytes());
        if self.rope_theta.is_some() || self.rms_eps.is_some() {
            h[EXT_OFFSET..EXT_OFFSET + 4].copy_from_slice(EXT_MAGIC);
            h[EXT_OFFSET + 4..EXT_OFFSET + 8].copy_from_slice(&self.rope_theta().to_le_bytes());
            h[EXT_OFFSET + 8..EXT_OFFSET + 12].copy_from_slice(&self.rms_eps().to_le_bytes());
        }
        h
    }

    /// Parses and validates a header (`bytes` holds at least its 256 bytes).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Llama2cConfig> {
        if bytes.len() < HEADER_BYTES {
            return Err(Llama2cError::Size {
                path: path.to_path_buf(),
                expected: HEADER_BYTES as u64,
                found: bytes.len() as u64,
            });
        }
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != MAGIC {
            return Err(Llama2cError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        let version = le_i32(bytes, 4);
        if version != VERSION {
            return Err(Llama2cError::BadVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        const FIELDS: [&str; 7] = [
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "max_seq_len",
        ];
        let mut v = [0u32; 7];
        for (i, field) in FIELDS.iter().enumerate() {
            let x = le_i32(bytes, 8 + 4 * i);
            if x <= 0 {
                return Err(Llama2cError::BadField {
                    path: path.to_path_buf(),
                    field,
                    value: x as i64,
                    why: "must be positive",
                });
            }
            v[i] = x as u32;
        }
        let gs = le_i32(bytes, 37);
        let bad = |field, value: i64, why| Llama2cError::BadField {
            path: path.to_path_buf(),
            field,
            value,
            why,
        };
        if gs <= 0 {
            return Err(bad("group_size", gs as i64, "must be positive"));
        }
        if bytes[36] > 1 {
            return Err(bad("shared_classifier", bytes[36] as i64, "must be 0 or 1"));
        }
        let (rope_theta, rms_eps) = if &bytes[EXT_OFFSET..EXT_OFFSET + 4] == EXT_MAGIC {
            (
                Some(le_f32(bytes, EXT_OFFSET + 4)),
                Some(le_f32(bytes, EXT_OFFSET + 8)),
            )
        } else {
            (None, None)
        };
        let c = Llama2cConfig {
            dim: v[0],
            hidden_dim: v[1],
            n_layers: v[2],
            n_heads: v[3],
            n_kv_heads: v[4],
            vocab_size: v[5],
            max_seq_len: v[6],
            shared_classifier: bytes[36] == 1,
            group_size: gs as u32,
            rope_theta,
            rms_eps,
        };
        if c.dim % c.n_heads != 0 {
            return Err(bad("n_heads", c.n_heads as i64, "must divide dim"));
        }
        if c.n_heads % c.n_kv_heads != 0 {
            return Err(bad(
                "n_kv_heads",
                c.n_kv_heads as i64,
                "must divide n_heads",
            ));
        }
        if c.dim % c.group_size != 0 || c.hidden_dim % c.group_size != 0 {
            return Err(bad(
                "group_size",
                gs as i64,
                "must divide dim and hidden_dim",
            ));
        }
        Ok(c)
    }

    /// The tensors in file order, with their offsets (the header included).
    pub fn layout(&self) -> Vec<Llama2cTensor> {
        let (d, ff, v) = (
            self.dim as u64,
            self.hidden_dim as u64,
            self.vocab_size as u64,
        );
        let (qd, kvd) = (d, self.kv_dim() as u64);
        let gs = self.group_size as u64;
        let nl = self.n_layers as usize;
        let mut out = Vec::new();
        let mut at = HEADER_BYTES as u64;
        let mut push = |name: String, kind: Kind, shape: [u64; 2]| {
            let n = shape[0] * shape[1];
            let (scales_offset, end) = match kind {
                Kind::F32 => (at + 4 * n, at + 4 * n),
                Kind::Q8 => (at + n, at + n + 4 * (n / gs)),
            };
            out.push(Llama2cTensor {
                name,
                kind,
                shape,
                offset: at,
                scales_offset,
                end,
            });
            at = end;
        };
        for l in 0..nl {
            push(format!("blk.{l}.attn_norm.weight"), Kind::F32, [d, 1]);
        }
        for l in 0..nl {
            push(format!("blk.{l}.ffn_norm.weight"), Kind::F32, [d, 1]);
        }
        push("output_norm.weight".into(), Kind::F32, [d, 1]);
        push("token_embd.weight".into(), Kind::Q8, [d, v]);
        let per_layer: [(&str, [u64; 2]); 7] = [
            ("attn_q", [d, qd]),
            ("attn_k", [d, kvd]),
            ("attn_v", [d, kvd]),
            ("attn_output", [qd, d]),
            ("ffn_gate", [d, ff]),
            ("ffn_down", [ff, d]),
            ("ffn_up", [d, ff]),
        ];
        for (role, shape) in per_layer {
            for l in 0..nl {
                push(format!("blk.{l}.{role}.weight"), Kind::Q8, shape);
            }
        }
        if !self.shared_classifier {
            push("output.weight".into(), Kind::Q8, [d, v]);
        }
        out
    }

    /// Total file size the header implies.
    pub fn file_len(&self) -> u64 {
        self.layout()
            .last()
            .map(|t| t.end)
            .unwrap_or(HEADER_BYTES as u64)
    }
}

/// Quantizes `src` (a multiple of `gs` values) like export.py's `quantize_q80`: per group
/// `scale = max|w| / 127`, `q = round_half_even(w / scale)`. Appends to `q` and `scales`;
/// returns the largest absolute reconstruction error.
pub fn quantize_groups(src: &[f32], gs: usize, q: &mut Vec<i8>, scales: &mut Vec<f32>) -> f32 {
    let mut err = 0f32;
    for g in src.chunks(gs) {
        let wmax = g.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let scale = wmax / 127.0;
        scales.push(scale);
        for &x in g {
            let v = if scale > 0.0 {
                (x / scale).round_ties_even().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            q.push(v as i8);
            err = err.max((v * scale - x).abs());
        }
    }
    err
}

/// A mapped llama2.c checkpoint.
pub struct Llama2cFile {
    mapping: Mapping,
    config: Llama2cConfig,
    tensors: Vec<Llama2cTensor>,
}

/// True when `bytes` starts with the llama2.c v2 magic.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == MAGIC
}

impl Llama2cFile {
    pub fn open(path: impl AsRef<Path>, mode: LoadMode) -> Result<Llama2cFile> {
        let path = path.as_ref();
        let mapping = Mapping::open(path, mode)?;
        let config = Llama2cConfig::parse(&mapping, path)?;
        let expected = config.file_len();
        if mapping.len() as u64 != expected {
            return Err(Llama2cError::Size {
                path: path.to_path_buf(),
                expected,
                found: mapping.len() as u64,
            });
        }
        let tensors = config.layout();
        Ok(Llama2cFile {
            mapping,
            config,
            tensors,
        })
    }

    pub fn config(&self) -> &Llama2cConfig {
        &self.config
    }

    pub fn tensors(&self) -> &[Llama2cTensor] {
        &self.tensors
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    pub fn path(&self) -> &Path {
        self.mapping.path()
    }

    pub fn tensor(&self, name: &str) -> Option<&Llama2cTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor: (data, scales); scales are empty for `F32`.
    pub fn raw(&self, t: &Llama2cTensor) -> (&[u8], &[u8]) {
        let m: &[u8] = &self.mapping;
        (
            &m[t.offset as usize..t.scales_offset as usize],
            &m[t.scales_offset as usize..t.end as usize],
        )
    }

    /// Re-lays a tensor out as ggml blocks, appending to `out`; returns the type written.
    /// `F32` tensors stay F32. `Q8` tensors become Q8_0 blocks (the int8 values unchanged, each
    /// 32-block taking its group's scale rounded to f16) when the group size is a multiple of 32,
    /// otherwise F32 (value times scale).
    pub fn relayout(&self, t: &Llama2cTensor, out: &mut Vec<u8>) -> GgmlType {
        let (data, scales) = self.raw(t);
        let gs = self.config.group_size as usize;
        match t.kind {
            Kind::F32 => {
                out.extend_from_slice(data);
                GgmlType::F32
            }
            Kind::Q8 if gs % 32 == 0 => {
                for (b, qs) in data.chunks_exact(32).enumerate() {
                    let g = b * 32 / gs;
                    let s =
                        f32::from_le_bytes(scales[4 * g..4 * g + 4].try_into().unwrap_or([0; 4]));
                    out.extend_from_slice(&half::f16::from_f32(s).to_le_bytes());
                    out.extend_from_slice(qs);
                }
                GgmlType::Q8_0
            }
            Kind::Q8 => {
                for (i, &q) in data.iter().enumerate() {
                    let g = i / gs;
                    let s =
                        f32::from_le_bytes(scales[4 * g..4 * g + 4].try_into().unwrap_or([0; 4]));
                    out.extend_from_slice(&((q as i8) as f32 * s).to_le_bytes());
                }
                GgmlType::F32
            }
        }
    }
}

/// llama2.c's tokenizer: pieces as raw bytes with a score each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Llama2cVocab {
    pub max_token_length: u32,
    pub scores: Vec<f32>,
    pub pieces: Vec<Vec<u8>>,
}

impl Llama2cVocab {
    pub fn new(pieces: Vec<Vec<u8>>, scores: Vec<f32>) -> Llama2cVocab {
        let max_token_length = pieces.iter().map(|p| p.len()).max().unwrap_or(0) as u32;
        Llama2cVocab {
            max_token_length,
            scores,
            pieces,
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&(self.max_token_length as i32).to_le_bytes())?;
        for (p, s) in self.pieces.iter().zip(&self.scores) {
            w.write_all(&s.to_le_bytes())?;
            w.write_all(&(p.len() as i32).to_le_bytes())?;
            w.write_all(p)?;
        }
        Ok(())
    }

    /// Reads `tokenizer.bin`. llama2.c takes the vocabulary size from the checkpoint; without
    /// one (`None`) tokens are read until the end of the file.
    pub fn read(path: &Path, vocab_size: Option<usize>) -> Result<Llama2cVocab> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| Llama2cError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&bytes, path, vocab_size)
    }

    pub fn parse(bytes: &[u8], path: &Path, vocab_size: Option<usize>) -> Result<Llama2cVocab> {
        let bad = |index, offset: usize, why| Llama2cError::BadToken {
            path: path.to_path_buf(),
            index,
            offset: offset as u64,
            why,
        };
        if bytes.len() < 4 {
            return Err(bad(0, 0, "missing max_token_length"));
        }
        let max = le_i32(bytes, 0);
        if max < 0 {
            return Err(bad(0, 0, "negative max_token_length"));
        }
        let mut v = Llama2cVocab {
            max_token_length: max as u32,
            ..Default::default()
        };
        let mut at = 4usize;
        loop {
            let i = v.pieces.len();
            match vocab_size {
                Some(n) if i == n => break,
                None if at == bytes.len() => break,
                _ => {}
            }
            if bytes.len() - at < 8 {
                return Err(bad(i, at, "truncated score/length"));
            }
            let score = le_f32(bytes, at);
            let len = le_i32(bytes, at + 4);
            if len < 0 || len as u32 > v.max_token_length {
                return Err(bad(i, at + 4, "length outside 0..=max_token_length"));
            }
            let len = len as usize;
            at += 8;
            if bytes.len() - at < len {
                return Err(bad(i, at, "truncated piece"));
            }
            v.scores.push(score);
            v.pieces.push(bytes[at..at + len].to_vec());
            at += len;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Llama2cConfig {
        Llama2cConfig {
            dim: 64,
            hidden_dim: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            vocab_size: 32,
            max_seq_len: 16,
            shared_classifier: false,
            group_size: 32,
            rope_theta: Some(500000.0),
            rms_eps: Some(1e-6),
        }
    }

    #[test]
    fn header_round_trips_and_has_runq_offsets() {
        let c = cfg();
        let h = c.to_header();
        assert_eq!(&h[0..4], b"24ka");
        assert_eq!(le_i32(&h, 8), 64);
        assert_eq!(le_i32(&h, 32), 16);
        assert_eq!(le_i32(&h, 37), 32);
        assert_eq!(Llama2cConfig::parse(&h, Path::new("x")).unwrap(), c);
        let plain = Llama2cConfig {
            rope_theta: None,
            rms_eps: None,
            ..c
        };
        let p = Llama2cConfig::parse(&plain.to_header(), Path::new("x")).unwrap();
        assert_eq!(p.rope_theta(), 10000.0);
        assert_eq!(p.rms_eps(), 1e-5);
    }

    #[test]
    fn bad_headers_name_the_field() {
        let mut h = cfg().to_header();
        h[37..41].copy_from_slice(&48i32.to_le_bytes());
        let e = Llama2cConfig::parse(&h, Path::new("m.bin")).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let mut h = cfg().to_header();
        h[4] = 1;
        assert!(matches!(
            Llama2cConfig::parse(&h, Path::new("m.bin")),
            Err(Llama2cError::BadVersion { found: 1, .. })
        ));
        assert!(Llama2cConfig::parse(&h[..10], Path::new("m.bin")).is_err());
    }

    #[test]
    fn layout_matches_version2_order_and_sizes() {
        let c = cfg();
        let l = c.layout();
        assert_eq!(l[0].name, "blk.0.attn_norm.weight");
        assert_eq!(l[2].name, "blk.0.ffn_norm.weight");
        assert_eq!(l[5].name, "token_embd.weight");
        assert_eq!(l[5].offset, 256 + 4 * 64 * 5);
        assert_eq!(l[6].name, "blk.0.attn_q.weight");
        assert_eq!(l[8].name, "blk.0.attn_k.weight");
        assert_eq!(l.last().unwrap().name, "output.weight");
        let emb = &l[5];
        assert_eq!(emb.end - emb.offset, 64 * 32 + 4 * 64 * 32 / 32);
    }

    #[test]
    fn quantize_groups_is_symmetric_int8() {
        let src: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
        let (mut q, mut s) = (Vec::new(), Vec::new());
        let err = quantize_groups(&src, 32, &mut q, &mut s);
        assert_eq!(s.len(), 2);
        assert_eq!(q[0], -127);
        assert!(err <= s[0] / 2.0 + 1e-6);
        let zeros = [0f32; 32];
        quantize_groups(&zeros, 32, &mut q, &mut s);
        assert!(q[64..].iter().all(|&x| x == 0));
    }

    #[test]
    fn tokenizer_round_trips_and_rejects_truncation() {
        let v = Llama2cVocab::new(
            vec![b"<unk>".to_vec(), vec![0xe2, 0x96], b" the".to_vec()],
            vec![0.0, -1.0, -2.5],
        );
        let mut buf = Vec::new();
        v.write_to(&mut buf).unwrap();
        let p = Path::new("tokenizer.bin");
        assert_eq!(Llama2cVocab::parse(&buf, p, Some(3)).unwrap(), v);
        assert_eq!(Llama2cVocab::parse(&buf, p, None).unwrap(), v);
        for cut in 0..buf.len() {
            assert!(Llama2cVocab::parse(&buf[..cut], p, Some(3)).is_err());
        }
    }
}
