//! outcore-kernels: math on ggml blocks (dequantize, quantize, dot products, matmul, ops).
//!
//! - [`quant`]: one file per ggml type with its `#[repr(C)]` block, dequantizer, reference
//!   quantizer and scalar dot product (the definition).
//! - [`arch`]: SIMD twins; [`dispatch`] picks a [`dispatch::KernelTable`] once per process.
//! - [`matmul`]: weight x activations with llama.cpp's activation quantization.
//! - [`rows16`]: the fast (batch-invariant, not llama.cpp-exact) arithmetic's sixteen-row products.
//! - [`ops`]: rmsnorm, rope, softmax, silu, f16 row conversions.
//!
//! The byte-level functions below take raw tensor bytes (as they lie in a GGUF mapping) and check
//! every length; a mismatch is a [`KernelError`], never a panic.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::borrow::Cow;

pub use outcore_format::GgmlType;

pub mod arch;
pub mod dispatch;
pub mod matmul;
pub mod ops;
pub mod quant;
pub mod rows16;

pub use dispatch::{kernels, CpuLevel, KernelTable};
pub use matmul::{matmul, matmul_arith, matvec};
use quant::GgmlBlock;
pub use rows16::Arith;

/// Errors of the kernel entry points: shapes and lengths that do not fit the type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{ty}: {n} elements is not a multiple of the block size {block}")]
    NotBlockMultiple {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{ty}: {what} is {got} bytes, expected {expected} for {n} elements")]
    ByteLength {
        ty: GgmlType,
        what: &'static str,
        n: usize,
        expected: usize,
        got: usize,
    },
    #[error("{what}: length {got}, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("tensor {tensor:?} ({ty}): shape {shape:?} does not fit: {reason}")]
    TensorShape {
        tensor: String,
        ty: GgmlType,
        shape: Vec<u64>,
        reason: &'static str,
    },
    #[error("{ty} has no reference quantizer")]
    QuantizeUnsupported { ty: GgmlType },
}

/// Runs `$body` with `$B` bound to the block type of `$ty`.
macro_rules! with_block {
    ($ty:expr, $B:ident => $body:expr) => {
        match $ty {
            $crate::GgmlType::F32 => {
                type $B = f32;
                $body
            }
            $crate::GgmlType::F16 => {
                type $B = ::half::f16;
                $body
            }
            $crate::GgmlType::BF16 => {
                type $B = ::half::bf16;
                $body
            }
            $crate::GgmlType::Q4_0 => {
                type $B = $crate::quant::BlockQ4_0;
                $body
            }
            $crate::GgmlType::Q4_1 => {
                type $B = $crate::quant::BlockQ4_1;
                $body
            }
            $crate::GgmlType::Q5_0 => {
                type $B = $crate::quant::BlockQ5_0;
                $body
            }
            $crate::GgmlType::Q5_1 => {
                type $B = $crate::quant::BlockQ5_1;
                $body
            }
            $crate::GgmlType::Q8_0 => {
                type $B = $crate::quant::BlockQ8_0;
                $body
            }
            $crate::GgmlType::Q8_1 => {
                type $B = $crate::quant::BlockQ8_1;
                $body
            }
            $crate::GgmlType::Q2_K => {
                type $B = $crate::quant::BlockQ2K;
                $body
            }
            $crate::GgmlType::Q3_K => {
                type $B = $crate::quant::BlockQ3K;
                $body
            }
            $crate::GgmlType::Q4_K => {
                type $B = $crate::quant::BlockQ4K;
                $body
            }
            $crate::GgmlType::Q5_K => {
                type $B = $crate::quant::BlockQ5K;
                $body
            }
            $crate::GgmlType::Q6_K => {
                type $B = $crate::quant::BlockQ6K;
                $body
            }
            $crate::GgmlType::Q8_K => {
                type $B = $crate::quant::BlockQ8K;
                $body
            }
        }
    };
}
pub(crate) use with_block;

/// Number of blocks for `n` elements of `ty`, or an error if `n` is not a whole number of blocks.
pub(crate) fn n_blocks(ty: GgmlType, n: usize) -> Result<usize, KernelError> {
    let block = ty.block_size();
    if !n.is_multiple_of(block) {
        return Err(KernelError::NotBlockMultiple { ty, n, block });
    }
    Ok(n / block)
}

/// Views `bytes` as `nb` blocks of `B`: zero-copy when aligned (always true for GGUF data and
/// our own buffers), else an aligned copy.
pub(crate) fn cast_blocks<'a, B: GgmlBlock>(
    what: &'static str,
    n: usize,
    nb: usize,
    bytes: &'a [u8],
) -> Result<Cow<'a, [B]>, KernelError> {
    let expected = nb * size_of::<B>();
    if bytes.len() != expected {
        return Err(KernelError::ByteLength {
            ty: B::TYPE,
            what,
            n,
            expected,
            got: bytes.len(),
        });
    }
    Ok(match bytemuck::try_cast_slice::<u8, B>(bytes) {
        Ok(b) => Cow::Borrowed(b),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    })
}

/// Runs `f` on `bytes` viewed as `nb` mutable blocks (through an aligned scratch copy if needed).
fn with_blocks_mut<B: GgmlBlock>(
    what: &'static str,
    n: usize,
    nb: usize,
    bytes: &mut [u8],
    f: impl FnOnce(&mut [B]),
) -> Result<(), KernelError> {
    let expected = nb * size_of::<B>();
    if bytes.len() != expected {
        return Err(KernelError::ByteLength {
            ty: B::TYPE,
            what,
            n,
            expected,
            got: bytes.len(),
        });
    }
    match bytemuck::try_cast_slice_mut::<u8, B>(bytes) {
        Ok(b) => f(b),
        Err(_) => {
            let mut tmp = vec![B::zeroed(); nb];
            f(&mut tmp);
            bytes.copy_from_slice(bytemuck::cast_slice(&tmp));
        }
    }
    Ok(())
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected != got {
        return Err(KernelError::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Dequantizes one row: `src` holds `dst.len()` elements of `ty` (ggml's `to_float`).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let n = dst.len();
    let nb = n_blocks(ty, n)?;
    with_block!(ty, B => {
        let blocks = cast_blocks::<B>("source", n, nb, src)?;
        B::dequantize(&blocks, dst);
        Ok(())
    })
}

/// Whether [`quantize_row`] supports `ty` (every type outcore knows has a reference quantizer).
pub fn supports_quantize(ty: GgmlType) -> bool {
    GgmlType::ALL.contains(&ty)
}

/// Quantizes one row with ggml's reference quantizer (`quantize_row_*_ref`), the one model
/// files are written with. `dst` must hold exactly `src.len()` elements of `ty`.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    if !supports_quantize(ty) {
        return Err(KernelError::QuantizeUnsupported { ty });
    }
    let n = src.len();
    let nb = n_blocks(ty, n)?;
    with_block!(ty, B => with_blocks_mut::<B>("destination", n, nb, dst, |b| B::quantize(src, b)))
}

/// The type llama.cpp quantizes activations to before a dot product with weights of `ty`.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    with_block!(ty, B => <B as GgmlBlock>::Dot::TYPE)
}

/// Quantizes an activation row to `vd_ty` the way llama.cpp's CPU backend does (`from_float`),
/// with this CPU's kernel.
pub fn quantize_activation(vd_ty: GgmlType, x: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    quantize_activation_with(kernels(), vd_ty, x, dst)
}

/// [`quantize_activation`] with an explicit kernel table.
pub fn quantize_activation_with(
    k: &KernelTable,
    vd_ty: GgmlType,
    x: &[f32],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    let n = x.len();
    let nb = n_blocks(vd_ty, n)?;
    with_block!(vd_ty, B => {
        let q = B::quantize_activation_fn(k);
        with_blocks_mut::<B>("destination", n, nb, dst, |b| q(x, b))
    })
}

/// Dot product of a weight row of type `ty` with an activation row already quantized to
/// `vec_dot_type(ty)`, both `n` elements, with this CPU's kernel.
pub fn vec_dot(ty: GgmlType, n: usize, w_row: &[u8], act: &[u8]) -> Result<f32, KernelError> {
    vec_dot_with(kernels(), ty, n, w_row, act)
}

/// [`vec_dot`] with an explicit kernel table (tests compare levels with it).
pub fn vec_dot_with(
    k: &KernelTable,
    ty: GgmlType,
    n: usize,
    w_row: &[u8],
    act: &[u8],
) -> Result<f32, KernelError> {
    let nb = n_blocks(ty, n)?;
    with_block!(ty, B => {
        let w = cast_blocks::<B>("weight row", n, nb, w_row)?;
        let a = cast_blocks::<<B as GgmlBlock>::Dot>("activation row", n, nb, act)?;
        Ok(B::vec_dot_fn(k)(&w, &a))
    })
}

/// Bytes of a row of `n` elements of `ty`, or an error if `n` is not a whole number of blocks.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, KernelError> {
    Ok(n_blocks(ty, n)? * ty.type_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_format_table() {
        for ty in GgmlType::ALL {
            let (size, block) = with_block!(ty, B => (size_of::<B>(), B::BLOCK));
            assert_eq!(size, ty.type_size(), "{ty}");
            assert_eq!(block, ty.block_size(), "{ty}");
            assert_eq!(with_block!(ty, B => B::TYPE), ty);
            let vd = vec_dot_type(ty);
            assert_eq!(vd.block_size(), ty.block_size(), "{ty} -> {vd}");
        }
        assert_eq!(vec_dot_type(GgmlType::Q4_1), GgmlType::Q8_1);
        assert_eq!(vec_dot_type(GgmlType::Q5_0), GgmlType::Q8_0);
        assert_eq!(vec_dot_type(GgmlType::Q6_K), GgmlType::Q8_K);
        assert_eq!(vec_dot_type(GgmlType::BF16), GgmlType::BF16);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut out = vec![0f32; 33];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0; 18], &mut out),
            Err(KernelError::NotBlockMultiple { .. })
        ));
        let mut out = vec![0f32; 32];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0; 17], &mut out),
            Err(KernelError::ByteLength { .. })
        ));
        assert!(quantize_row(GgmlType::Q8_0, &[0.0; 32], &mut [0u8; 33]).is_err());
        assert!(vec_dot(GgmlType::Q4_K, 256, &[0; 144], &[0; 291]).is_err());
        assert!(vec_dot(GgmlType::Q4_K, 255, &[0; 144], &[0; 292]).is_err());
    }

    #[test]
    fn misaligned_buffers_still_work() {
        let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut buf = vec![0u8; 293];
        quantize_row(GgmlType::Q8_K, &x, &mut buf[1..]).unwrap();
        let mut aligned = vec![0u8; 292];
        quantize_row(GgmlType::Q8_K, &x, &mut aligned).unwrap();
        assert_eq!(&buf[1..], &aligned[..]);
        let mut a = vec![0f32; 256];
        let mut b = vec![0f32; 256];
        dequantize_row(GgmlType::Q8_K, &buf[1..], &mut a).unwrap();
        dequantize_row(GgmlType::Q8_K, &aligned, &mut b).unwrap();
        assert_eq!(a, b);
    }
}
