//! The one generator of hostile model files, shared by the format tests (`hostile.rs`,
//! `hostile_corpus.rs`) and the CLI tests (`crates/outcore-cli/tests/`, through `#[path]`).
//!
//! [`Gguf`] emits GGUF bytes piece by piece and checks nothing, so it can lie about anything;
//! [`safetensors_bytes`] does the same for safetensors. [`corpus`] names one hostile file per lie,
//! with the error text a reader must give for it. Files are written by [`Case::write`]; the large
//! ones (a 100 MB header) are sparse, so writing the corpus costs a few kilobytes of disk.
#![allow(dead_code)]

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const F32: u32 = 0;
pub const Q4_0: u32 = 2;
pub const T_U32: u32 = 4;
pub const T_STRING: u32 = 8;
pub const T_ARRAY: u32 = 9;
pub const T_U64: u32 = 10;

/// Emits GGUF bytes piece by piece; nothing is checked, so it can lie about anything.
#[derive(Default, Clone)]
pub struct Gguf {
    pub b: Vec<u8>,
}

impl Gguf {
    pub fn header(magic: &[u8; 4], version: u32, n_tensors: u64, n_kv: u64) -> Gguf {
        Gguf::default()
            .raw(magic)
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    pub fn v3(n_tensors: u64, n_kv: u64) -> Gguf {
        Gguf::header(b"GGUF", 3, n_tensors, n_kv)
    }
    pub fn raw(mut self, x: &[u8]) -> Gguf {
        self.b.extend_from_slice(x);
        self
    }
    pub fn u32(self, x: u32) -> Gguf {
        self.raw(&x.to_le_bytes())
    }
    pub fn u64(self, x: u64) -> Gguf {
        self.raw(&x.to_le_bytes())
    }
    pub fn str(self, s: &str) -> Gguf {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    pub fn kv_u32(self, key: &str, v: u32) -> Gguf {
        self.str(key).u32(T_U32).u32(v)
    }
    pub fn kv_str(self, key: &str, v: &str) -> Gguf {
        self.str(key).u32(T_STRING).str(v)
    }
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Gguf {
        let mut g = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            g = g.u64(d);
        }
        g.u32(ty).u64(offset)
    }
    pub fn pad(mut self, align: usize) -> Gguf {
        while self.b.len().rem_euclid(align) != 0 {
            self.b.push(0);
        }
        self
    }
    pub fn zeros(mut self, n: usize) -> Gguf {
        self.b.resize(self.b.len() + n, 0);
        self
    }
}

/// A small valid GGUF: 2 KV pairs, 2 tensors (F32 [8] and Q4_0 [32, 2]).
pub fn valid_gguf() -> Gguf {
    Gguf::v3(2, 2)
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 1)
        .tensor("a", &[8], F32, 0)
        .tensor("b", &[32, 2], Q4_0, 32)
        .pad(32)
        .zeros(32 + 36)
}

/// A safetensors file: the 8-byte length, `header` as is (it may lie), then `data_len` zero bytes.
pub fn safetensors_bytes(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.resize(b.len() + data_len, 0);
    b
}

/// How a hostile file is laid out on disk.
pub enum Body {
    /// These exact bytes.
    Bytes(Vec<u8>),
    /// `prefix`, then a hole up to `len` bytes (a sparse file: no disk, no page cache).
    Sparse { prefix: Vec<u8>, len: u64 },
}

/// One hostile file: its name, its bytes, and what a reader must say about it.
pub struct Case {
    /// Short name, also the file stem.
    pub name: &'static str,
    /// `gguf` or `safetensors`.
    pub ext: &'static str,
    pub body: Body,
    /// Text the error message must contain (the specific failure, in the reader's words).
    pub expect: &'static str,
}

impl Case {
    /// Writes the file into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.{}", self.name, self.ext));
        let mut f = std::fs::File::create(&path).expect("create hostile file");
        match &self.body {
            Body::Bytes(b) => f.write_all(b).expect("write hostile file"),
            Body::Sparse { prefix, len } => {
                f.write_all(prefix).expect("write hostile prefix");
                f.set_len(*len).expect("extend hostile file");
                f.seek(SeekFrom::End(0)).expect("seek");
            }
        }
        path
    }
}

fn gguf(name: &'static str, g: Gguf, expect: &'static str) -> Case {
    Case {
        name,
        ext: "gguf",
        body: Body::Bytes(g.b),
        expect,
    }
}

fn st(name: &'static str, bytes: Vec<u8>, expect: &'static str) -> Case {
    Case {
        name,
        ext: "safetensors",
        body: Body::Bytes(bytes),
        expect,
    }
}

/// The hostile corpus: one file per lie the issue lists, plus a few neighbours.
pub fn corpus() -> Vec<Case> {
    let one = |dims: &[u64], ty: u32, offset: u64| {
        Gguf::v3(1, 0)
            .tensor("t", dims, ty, offset)
            .pad(32)
            .zeros(256)
    };
    // 100 MB + 1 of declared JSON header in a 100 MB + 9 byte sparse file.
    let big_header = 100_000_001u64;
    vec![
        gguf(
            "tensor_count_2p60",
            Gguf::v3(1 << 60, 0),
            "tensor count 1152921504606846976",
        ),
        gguf(
            "metadata_count_max",
            Gguf::v3(0, u64::MAX),
            "metadata count 18446744073709551615",
        ),
        gguf(
            "key_len_4g",
            Gguf::v3(0, 1).u64(4 << 30).raw(b"abc").zeros(16),
            "string length 4294967296",
        ),
        gguf(
            "string_value_len_4g",
            Gguf::v3(0, 1).str("k").u32(T_STRING).u64(4 << 30).zeros(16),
            "string length 4294967296",
        ),
        gguf(
            "array_len_2p40",
            Gguf::v3(0, 1)
                .str("k")
                .u32(T_ARRAY)
                .u32(T_U32)
                .u64(1 << 40)
                .zeros(64),
            "array element count 1099511627776",
        ),
        gguf(
            "dims_product_overflow",
            one(&[1 << 32, 1 << 32, 1 << 32], F32, 0),
            "element count or byte size overflows",
        ),
        gguf(
            "bytes_overflow",
            one(&[u64::MAX / 2, 3], F32, 0),
            "element count or byte size overflows",
        ),
        gguf(
            "data_past_eof",
            one(&[1000], F32, 0),
            "lies past the end of the data section",
        ),
        gguf(
            "offset_wraps",
            one(&[4], F32, u64::MAX - 31),
            "lies past the end of the data section",
        ),
        gguf(
            "overlapping_tensors",
            Gguf::v3(2, 0)
                .tensor("a", &[16], F32, 0)
                .tensor("b", &[16], F32, 32)
                .pad(32)
                .zeros(256),
            "tensors `a` and `b` overlap",
        ),
        gguf(
            "misaligned_offset",
            one(&[4], F32, 16),
            "offset 16 is not a multiple of the alignment 32",
        ),
        gguf(
            "row_not_block_multiple",
            one(&[33, 2], Q4_0, 0),
            "row length 33 is not a multiple of the Q4_0 block size 32",
        ),
        gguf(
            "unknown_tensor_type",
            one(&[32], 999, 0),
            "type id 999 is unknown",
        ),
        gguf(
            "arrays_nested_deep",
            {
                let mut g = Gguf::v3(0, 1).str("k").u32(T_ARRAY);
                for _ in 0..10 {
                    g = g.u32(T_ARRAY).u64(1);
                }
                g.u32(T_U32).u64(0).zeros(64)
            },
            "arrays nested deeper than",
        ),
        gguf(
            "truncated_header",
            Gguf::default().raw(&valid_gguf().b[..20]),
            "reading metadata count",
        ),
        Case {
            name: "header_100mb",
            ext: "safetensors",
            body: Body::Sparse {
                prefix: big_header.to_le_bytes().to_vec(),
                len: 8 + big_header + 8,
            },
            expect: "safetensors header length 100000001 exceeds the limit of 100000000",
        },
        st(
            "header_len_past_eof",
            {
                let mut b = safetensors_bytes("{}", 0);
                b[..8].copy_from_slice(&1_000_000u64.to_le_bytes());
                b
            },
            "safetensors header length 1000000 exceeds",
        ),
        st(
            "offsets_past_eof",
            safetensors_bytes(
                r#"{"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}"#,
                16,
            ),
            "tensor data does not cover the file exactly",
        ),
        st(
            "offsets_disagree_with_shape",
            safetensors_bytes(
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
                8,
            ),
            "a tensor's byte range does not match its dtype and shape",
        ),
        st(
            "offsets_overlap",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                24,
            ),
            "tensor `b` has offsets that are not contiguous",
        ),
        st(
            "header_not_json",
            safetensors_bytes("{\"a\": [1, 2,", 0),
            "header is not valid safetensors JSON",
        ),
    ]
}
