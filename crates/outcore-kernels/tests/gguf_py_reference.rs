//! Goldens from gguf-py 0.19 (`gguf.quants`), made by `tests/gen_quant_fixtures.py` (fixed seed,
//! committed output in `tests/data/quant/`):
//! - dequantization of random blocks of every type, bit for bit;
//! - Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/F16/BF16 quantization of assorted rows, byte for byte;
//! - dequantization of every tensor of the demo model, by sha256 of the f32 bytes.
//!
//! No tolerance is needed anywhere: gguf-py's numpy code does the same f32 operations in the
//! same order as ggml's C dequantizers (`d * q` or `d * q + m` / `dl * q - ml`, never fused),
//! and its quantizers are written to match `quantize_row_*_ref`.

use std::path::{Path, PathBuf};

use outcore_kernels::{dequantize_row, quantize_row, row_bytes, GgmlType};
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quant")
}

fn read(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with tests/gen_quant_fixtures.py)",
            p.display()
        )
    })
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn dequantize_random_blocks_matches_gguf_py_bit_for_bit() {
    for ty in GgmlType::ALL {
        let raw = read(&format!("blocks_{}.bin", ty.name()));
        let want = f32s(&read(&format!("blocks_{}.f32", ty.name())));
        let mut got = vec![0f32; want.len()];
        dequantize_row(ty, &raw, &mut got).unwrap();
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                same_bits(g, w),
                "{ty} element {i}: got {g:e} ({:#x}), gguf-py {w:e} ({:#x})",
                g.to_bits(),
                w.to_bits()
            );
        }
        // The same bytes at an odd address (a copy path) give the same result.
        let mut shifted = vec![0u8; raw.len() + 1];
        shifted[1..].copy_from_slice(&raw);
        let mut got2 = vec![0f32; want.len()];
        dequantize_row(ty, &shifted[1..], &mut got2).unwrap();
        assert!(
            got.iter().zip(&got2).all(|(a, b)| same_bits(*a, *b)),
            "{ty} misaligned"
        );
    }
}

#[test]
fn quantize_matches_gguf_py_byte_for_byte() {
    let x = f32s(&read("quant_input.f32"));
    let n_per_row = 256;
    assert_eq!(x.len() % n_per_row, 0);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::BF16,
    ] {
        let want = read(&format!("quant_{}.bin", ty.name()));
        let rb = row_bytes(ty, n_per_row).unwrap();
        assert_eq!(want.len(), rb * x.len() / n_per_row);
        for (r, (xr, wr)) in x
            .chunks_exact(n_per_row)
            .zip(want.chunks_exact(rb))
            .enumerate()
        {
            let mut got = vec![0u8; rb];
            quantize_row(ty, xr, &mut got).unwrap();
            if got != wr {
                let bs = ty.type_size();
                let b = got
                    .chunks(bs)
                    .zip(wr.chunks(bs))
                    .position(|(a, b)| a != b)
                    .unwrap();
                panic!(
                    "{ty} row {r} block {b}: got {:?}\n gguf-py {:?}",
                    &got[b * bs..(b + 1) * bs],
                    &wr[b * bs..(b + 1) * bs]
                );
            }
        }
    }
}

fn demo_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTCORE_DEMO_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn dequantize_demo_model_matches_gguf_py() {
    let path = demo_model_path();
    let file = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "demo model {}: {e}; run scripts/fetch-demo-model.sh (or set OUTCORE_DEMO_MODEL)",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_slice(&read("demo_model_dequant.json")).unwrap();
    let tensors = json["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    let mut f32_bytes = Vec::new();
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let ty = GgmlType::from_name(t["type"].as_str().unwrap()).unwrap();
        let n: u64 = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .product();
        let off = t["offset"].as_u64().unwrap() as usize;
        let len = t["n_bytes"].as_u64().unwrap() as usize;
        assert_eq!(ty.tensor_bytes(n), Some(len as u64), "{name}");
        let src = &file[off..off + len];
        let mut out = vec![0f32; n as usize];
        dequantize_row(ty, src, &mut out).unwrap();
        f32_bytes.clear();
        f32_bytes.extend(out.iter().flat_map(|v| v.to_le_bytes()));
        let got = hex(&Sha256::digest(&f32_bytes));
        assert_eq!(got, t["sha256"].as_str().unwrap(), "{name} ({ty})");
    }
}
