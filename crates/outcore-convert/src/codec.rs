//! Rows of any supported type <-> f32. Floats are converted here (round-to-nearest-even, as torch
//! and gguf-py do); quantized types go through `outcore-kernels`' reference quantizers.

use half::{bf16, f16};
use outcore_format::GgmlType;

use crate::error::{ConvertError, Result};

/// Decodes one row (`dst.len()` elements) of type `ty` from `src`.
pub fn decode_row(ty: GgmlType, src: &[u8], dst: &mut [f32], tensor: &str) -> Result<()> {
    let need = ty.row_bytes(dst.len() as u64).unwrap_or(u64::MAX);
    if src.len() as u64 != need {
        return Err(ConvertError::BadTensor {
            tensor: tensor.to_string(),
            problem: format!("row of {} {ty} elements has {} bytes", dst.len(), src.len()),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        _ => kernels::dequantize(ty, src, dst).map_err(|problem| ConvertError::Kernel {
            tensor: tensor.to_string(),
            ty,
            problem,
        })?,
    }
    Ok(())
}

/// Encodes one row of f32 into `dst` (exactly `ty.row_bytes(src.len())` bytes).
pub fn encode_row(ty: GgmlType, src: &[f32], dst: &mut [u8], tensor: &str) -> Result<()> {
    let need = ty.row_bytes(src.len() as u64);
    if need != Some(dst.len() as u64) {
        return Err(ConvertError::BadRowLength {
            tensor: tensor.to_string(),
            ty,
            n_cols: src.len() as u64,
            block: ty.block_size(),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (c, &x) in dst.chunks_exact_mut(4).zip(src) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (c, &x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&f16::from_f32(x).to_bits().to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (c, &x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&bf16::from_f32(x).to_bits().to_le_bytes());
            }
        }
        _ => kernels::quantize(ty, src, dst).map_err(|problem| ConvertError::Kernel {
            tensor: tensor.to_string(),
            ty,
            problem,
        })?,
    }
    Ok(())
}

/// Whether this build can write `ty`.
pub fn can_encode(ty: GgmlType) -> bool {
    ty.is_float() || kernels::has_quantizer(ty)
}

/// The quantized types, through `outcore-kernels`' reference quantizers (ggml's `quantize_row_*_ref`).
mod kernels {
    use outcore_format::GgmlType;

    pub fn has_quantizer(ty: GgmlType) -> bool {
        let n = ty.block_size();
        let mut dst = vec![0u8; ty.type_size()];
        outcore_kernels::quantize_row(ty, &vec![0.0; n], &mut dst).is_ok()
    }

    pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), String> {
        outcore_kernels::quantize_row(ty, src, dst).map_err(|e| e.to_string())
    }

    pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), String> {
        outcore_kernels::dequantize_row(ty, src, dst).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_roundtrips_are_exact() {
        let xs = [0.0f32, -1.5, 3.140625, 65504.0, 1e-8, -2.0e-3];
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let mut bytes = vec![0u8; ty.row_bytes(xs.len() as u64).unwrap() as usize];
            encode_row(ty, &xs, &mut bytes, "t").unwrap();
            let mut back = vec![0f32; xs.len()];
            decode_row(ty, &bytes, &mut back, "t").unwrap();
            let mut again = vec![0u8; bytes.len()];
            encode_row(ty, &back, &mut again, "t").unwrap();
            assert_eq!(bytes, again, "{ty}");
        }
        // bf16 rounds to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1.
        let mut b = [0u8; 2];
        encode_row(GgmlType::BF16, &[1.0 + 1.0 / 256.0], &mut b, "t").unwrap();
        assert_eq!(u16::from_le_bytes(b), 0x3f80);
    }
}
