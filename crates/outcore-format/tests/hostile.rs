//! Hostile GGUF files: the shared builder that can write lies (`support/hostile_gen.rs`), and one test per lie, each asserting the
//! specific `FormatError` variant. Plus truncation at every byte and random corruption (no panics).
mod common;

use std::path::Path;

use outcore_format::{FormatError, GgufFile, LoadMode};

#[path = "support/hostile_gen.rs"]
mod hostile_gen;

use hostile_gen::{Gguf, F32, Q4_0, T_ARRAY, T_STRING, T_U32, T_U64};

fn parse_bytes(dir: &Path, bytes: &[u8]) -> Result<GgufFile, FormatError> {
    let p = dir.join("h.gguf");
    std::fs::write(&p, bytes).unwrap();
    GgufFile::open(&p, LoadMode::Read)
}

/// Parses and returns the error, looking through the `InFile` wrapper (checking it names the file).
fn err(g: Gguf) -> FormatError {
    let dir = tempfile::tempdir().unwrap();
    match parse_bytes(dir.path(), &g.b) {
        Ok(_) => panic!("hostile file was accepted"),
        Err(FormatError::InFile { path, source }) => {
            assert!(path.ends_with("h.gguf"));
            assert!(!source.to_string().contains('\n'));
            *source
        }
        Err(e) => e,
    }
}

/// A small valid file: 2 KV pairs, 2 tensors (F32 [8] and Q4_0 [32, 2]).
fn valid() -> Gguf {
    hostile_gen::valid_gguf()
}

#[test]
fn valid_baseline_parses() {
    let dir = tempfile::tempdir().unwrap();
    let f = parse_bytes(dir.path(), &valid().b).unwrap();
    assert_eq!(f.tensor_infos().len(), 2);
    assert_eq!(f.tensor("b").unwrap().bytes.len(), 36);
    assert_eq!(f.metadata.get_u32("llama.block_count").unwrap(), 1);
}

#[test]
fn magic_and_version() {
    assert!(matches!(
        err(Gguf::header(b"GGML", 3, 0, 0)),
        FormatError::BadMagic { offset: 0, .. }
    ));
    assert!(matches!(
        err(Gguf::header(b"GGUF", 1, 0, 0)),
        FormatError::UnsupportedVersion { version: 1 }
    ));
    assert!(matches!(
        err(Gguf::header(b"GGUF", 4, 0, 0)),
        FormatError::UnsupportedVersion { version: 4 }
    ));
    assert!(matches!(
        err(Gguf::header(b"GGUF", 3u32.swap_bytes(), 0, 0)),
        FormatError::BigEndian { version: 3 }
    ));
    let e = err(Gguf::header(b"GGUF", 1, 0, 0));
    assert_eq!(
        e.to_string(),
        "GGUF version 1 is not supported (only v2 and v3 are)"
    );
}

#[test]
fn v2_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = valid();
    g.b[4] = 2;
    assert_eq!(parse_bytes(dir.path(), &g.b).unwrap().version, 2);
}

#[test]
fn absurd_counts() {
    assert!(
        matches!(err(Gguf::v3(1 << 60, 0)), FormatError::CountTooLarge { what: "tensor", count, .. } if count == 1 << 60)
    );
    assert!(matches!(
        err(Gguf::v3(0, u64::MAX)),
        FormatError::CountTooLarge {
            what: "metadata",
            ..
        }
    ));
    // An array of 2^40 u32 needs 4 TiB.
    let g = Gguf::v3(0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(T_U32)
        .u64(1 << 40)
        .zeros(64);
    assert!(
        matches!(err(g), FormatError::CountTooLarge { what: "array element", count, .. } if count == 1 << 40)
    );
    // N strings need at least 8N bytes even when N bytes remain.
    let g = Gguf::v3(0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(T_STRING)
        .u64(64)
        .zeros(64 * 8 - 1);
    assert!(matches!(
        err(g),
        FormatError::CountTooLarge {
            what: "array element",
            count: 64,
            ..
        }
    ));
    // Nested arrays need at least 12 bytes each; an overflowing N * size is caught too.
    let g = Gguf::v3(0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(T_ARRAY)
        .u64(10)
        .zeros(100);
    assert!(matches!(
        err(g),
        FormatError::CountTooLarge { count: 10, .. }
    ));
    let g = Gguf::v3(0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(T_U64)
        .u64(u64::MAX / 4)
        .zeros(100);
    assert!(matches!(err(g), FormatError::CountTooLarge { .. }));
}

#[test]
fn huge_strings() {
    // A 4 GB key length.
    let g = Gguf::v3(0, 1).u64(4 << 30).raw(b"abc").zeros(16);
    assert!(
        matches!(err(g), FormatError::StringTooLong { offset: 24, len, remaining: 19 } if len == 4 << 30)
    );
    // A 4 GB string value.
    let g = Gguf::v3(0, 1).str("k").u32(T_STRING).u64(4 << 30).zeros(16);
    assert!(matches!(err(g), FormatError::StringTooLong { .. }));
    // A u64::MAX tensor name length.
    let g = Gguf::v3(1, 0).u64(u64::MAX).zeros(40);
    assert!(matches!(err(g), FormatError::StringTooLong { .. }));
}

#[test]
fn value_types_and_keys() {
    let g = Gguf::v3(0, 1).str("k").u32(13).zeros(16);
    assert!(matches!(
        err(g),
        FormatError::UnknownValueType { id: 13, .. }
    ));
    let g = Gguf::v3(0, 1)
        .str("k")
        .u32(T_ARRAY)
        .u32(99)
        .u64(0)
        .zeros(16);
    assert!(matches!(
        err(g),
        FormatError::UnknownValueType { id: 99, .. }
    ));
    let g = Gguf::v3(0, 2).kv_u32("k", 1).kv_u32("k", 2).zeros(16);
    assert!(matches!(err(g), FormatError::DuplicateKey { key } if key == "k"));
    let g = Gguf::v3(0, 1)
        .u64(2)
        .raw(&[0xff, 0xfe])
        .u32(T_U32)
        .u32(0)
        .zeros(16);
    assert!(matches!(err(g), FormatError::InvalidUtf8 { offset: 24 }));
    // Arrays nested 10 deep.
    let mut g = Gguf::v3(0, 1).str("k").u32(T_ARRAY);
    for _ in 0..10 {
        g = g.u32(T_ARRAY).u64(1);
    }
    let g = g.u32(T_U32).u64(0).zeros(64);
    assert!(matches!(err(g), FormatError::NestingTooDeep { .. }));
}

#[test]
fn bad_alignment() {
    for a in [0u32, 48, 3] {
        let g = Gguf::v3(0, 1).kv_u32("general.alignment", a).zeros(16);
        assert!(
            matches!(err(g), FormatError::BadAlignment { .. }),
            "alignment {a}"
        );
    }
    // Right value, wrong type (u64).
    let g = Gguf::v3(0, 1)
        .str("general.alignment")
        .u32(T_U64)
        .u64(32)
        .zeros(16);
    assert!(matches!(err(g), FormatError::BadAlignment { .. }));
    // A valid non-default alignment is honoured.
    let g = Gguf::v3(1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("a", &[4], F32, 0)
        .pad(64)
        .zeros(64);
    let dir = tempfile::tempdir().unwrap();
    let f = parse_bytes(dir.path(), &g.b).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
}

#[test]
fn tensor_info_lies() {
    let one = |dims: &[u64], ty: u32, offset: u64| {
        Gguf::v3(1, 0)
            .tensor("t", dims, ty, offset)
            .pad(32)
            .zeros(256)
    };
    assert!(matches!(
        err(one(&[32], 16, 0)),
        FormatError::UnknownTensorType {
            id: 16,
            known_name: Some("IQ2_XXS"),
            ..
        }
    ));
    assert_eq!(
        err(one(&[32], 16, 0)).to_string(),
        "tensor `t`: type id 16 is IQ2_XXS, which is not supported"
    );
    assert!(matches!(
        err(one(&[32], 999, 0)),
        FormatError::UnknownTensorType {
            id: 999,
            known_name: None,
            ..
        }
    ));
    assert!(matches!(
        err(one(&[1, 1, 1, 1, 1], F32, 0)),
        FormatError::TooManyDims { n: 5, .. }
    ));
    assert!(matches!(
        err(one(&[], F32, 0)),
        FormatError::TooManyDims { n: 0, .. }
    ));
    assert!(matches!(
        err(one(&[4, 0], F32, 0)),
        FormatError::ZeroDim { dim: 1, .. }
    ));
    assert!(matches!(
        err(one(&[1 << 32, 1 << 32, 1 << 32], F32, 0)),
        FormatError::ShapeOverflow { .. }
    ));
    assert!(matches!(
        err(one(&[u64::MAX / 2, 3], F32, 0)),
        FormatError::ShapeOverflow { .. }
    ));
    assert!(matches!(
        err(one(&[33, 2], Q4_0, 0)),
        FormatError::RowNotBlockMultiple {
            ne0: 33,
            block: 32,
            ..
        }
    ));
    assert!(matches!(
        err(one(&[1000], F32, 0)),
        FormatError::TensorOutOfBounds { size: 4000, .. }
    ));
    assert!(matches!(
        err(one(&[4], F32, u64::MAX - 31)),
        FormatError::TensorOutOfBounds { .. }
    ));
    assert!(matches!(
        err(one(&[4], F32, 16)),
        FormatError::Misaligned {
            offset: 16,
            alignment: 32,
            ..
        }
    ));

    let two = |off_b: u64| {
        Gguf::v3(2, 0)
            .tensor("a", &[16], F32, 0)
            .tensor("b", &[16], F32, off_b)
            .pad(32)
            .zeros(256)
    };
    assert!(matches!(err(two(32)), FormatError::Overlap { a, b } if a == "a" && b == "b"));
    let dir = tempfile::tempdir().unwrap();
    assert!(parse_bytes(dir.path(), &two(64).b).is_ok());
    let g = Gguf::v3(2, 0)
        .tensor("a", &[4], F32, 0)
        .tensor("a", &[4], F32, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(err(g), FormatError::DuplicateTensor { name } if name == "a"));
}

/// Every proper prefix of a valid file is rejected with a truncation-type error, never a panic.
#[test]
fn truncated_at_every_byte() {
    let full = valid().b;
    let dir = tempfile::tempdir().unwrap();
    let header_end = {
        let f = parse_bytes(dir.path(), &full).unwrap();
        f.data_offset() as usize
    };
    for cut in 0..full.len() {
        let e = parse_bytes(dir.path(), &full[..cut]).expect_err("truncated file accepted");
        let e = e.kind();
        let ok = match e {
            FormatError::EmptyFile { .. } => cut == 0,
            FormatError::Truncated { .. }
            | FormatError::CountTooLarge { .. }
            | FormatError::StringTooLong { .. } => cut < header_end,
            FormatError::TensorOutOfBounds { .. } => cut >= header_end - 28,
            _ => false,
        };
        assert!(ok, "cut at {cut}: unexpected {e:?}");
    }
}

/// Cuts at specific boundaries give specific errors.
#[test]
fn truncated_at_header_boundaries() {
    let full = valid().b;
    let cut = |n: usize| Gguf::default().raw(&full[..n]);
    assert!(matches!(
        err(cut(3)),
        FormatError::Truncated {
            what: "magic",
            need: 4,
            have: 3,
            ..
        }
    ));
    assert!(matches!(
        err(cut(4)),
        FormatError::Truncated {
            what: "version",
            offset: 4,
            ..
        }
    ));
    assert!(matches!(
        err(cut(8)),
        FormatError::Truncated {
            what: "tensor count",
            ..
        }
    ));
    assert!(matches!(
        err(cut(16)),
        FormatError::Truncated {
            what: "metadata count",
            ..
        }
    ));
    assert!(matches!(
        err(cut(24)),
        FormatError::CountTooLarge {
            what: "metadata",
            count: 2,
            ..
        }
    ));
    // A file with one KV pair and no tensors, so the count checks pass and the cut is reached.
    let meta_only = Gguf::v3(0, 1).kv_str("general.architecture", "llama").b;
    let cut = |n: usize| Gguf::default().raw(&meta_only[..n]);
    // After the first key, before its value type.
    let key_end = 24 + 8 + "general.architecture".len();
    assert!(matches!(
        err(cut(key_end)),
        FormatError::Truncated {
            what: "value type",
            ..
        }
    ));
    // Inside the first value string.
    assert!(matches!(
        err(cut(key_end + 4 + 8 + 2)),
        FormatError::StringTooLong {
            len: 5,
            remaining: 2,
            ..
        }
    ));
}

/// Random single-byte corruptions of a valid file never panic (deterministic LCG).
#[test]
fn random_corruption_never_panics() {
    let full = valid().b;
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let header_len = 180.min(full.len());
    for _ in 0..400 {
        let mut b = full.clone();
        for _ in 0..1 + next() % 3 {
            let i = next() % header_len;
            b[i] = next() as u8;
        }
        let _ = parse_bytes(dir.path(), &b);
    }
}

/// The in-memory parser (what the fuzz targets drive): many random corruptions, any position,
/// never a panic, and whatever is accepted lies within the buffer.
#[test]
fn in_memory_random_corruption() {
    use outcore_format::gguf::GgufHeader;
    let full = valid().b;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    for _ in 0..20_000 {
        let mut b = full.clone();
        for _ in 0..1 + next() % 4 {
            let i = next() % b.len();
            b[i] = next() as u8;
        }
        let len = if next() % 4 == 0 {
            next() % b.len()
        } else {
            b.len()
        };
        if let Ok(h) = GgufHeader::parse(&b[..len]) {
            for t in &h.tensors {
                assert!(h.data_offset + t.offset + t.size <= len as u64);
            }
        }
    }
}
