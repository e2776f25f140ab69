//! The float types F32, F16 and BF16 as one-element "blocks".
//!
//! Conversions follow ggml: f16 round-to-nearest-even (`ggml_compute_fp32_to_fp16`, F16C), bf16
//! `ggml_compute_fp32_to_bf16` from `ggml-impl.h` (round-to-nearest-even, NaN forced quiet).
//! The dots follow `ggml_vec_dot_{f32,f16,bf16}` in `ggml-cpu/vec.cpp` without SIMD: each
//! product rounded to f32, summed in f64 (`ggml_float`). One deviation so the SIMD twins can be
//! bit-identical: the f64 sum runs in 8 lanes (element i into lane i % 8), added up in lane
//! order at the end ([`lane_sum_f64`]). It is at least as accurate as ggml's sequential f64
//! sum, and more accurate than ggml's SIMD path, which accumulates in f32.

use half::{bf16, f16};

use super::{GgmlBlock, VecDotFn};
use crate::dispatch::KernelTable;
use outcore_format::GgmlType;

/// ggml's `ggml_compute_fp32_to_bf16`.
#[inline(always)]
pub fn f32_to_bf16(s: f32) -> bf16 {
    let u = s.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        // NaN: keep the sign and top payload bits, force quiet.
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// Sums f32 products in 8 f64 lanes (lane = index % 8), then adds the lanes in order.
#[inline(always)]
pub(crate) fn lane_sum_f64(n: usize, prod: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f64; 8];
    for i in 0..n {
        acc[i % 8] += prod(i) as f64;
    }
    finish_lanes(&acc)
}

/// The fixed final order of [`lane_sum_f64`].
#[inline(always)]
pub(crate) fn finish_lanes(acc: &[f64; 8]) -> f32 {
    let mut s = 0.0f64;
    for a in acc {
        s += a;
    }
    s as f32
}

/// ggml's `ggml_compute_bf16_to_fp32` (exact).
#[inline(always)]
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}

impl GgmlBlock for f32 {
    const TYPE: GgmlType = GgmlType::F32;
    const BLOCK: usize = 1;
    type Dot = f32;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        y.copy_from_slice(x);
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        y.copy_from_slice(x);
    }

    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        lane_sum_f64(x.len().min(y.len()), |i| x[i] * y[i])
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, Self> {
        k.f32_f32
    }
}

impl GgmlBlock for f16 {
    const TYPE: GgmlType = GgmlType::F16;
    const BLOCK: usize = 1;
    type Dot = f16;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y = x.to_f32();
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f16::from_f32(x);
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        lane_sum_f64(x.len().min(y.len()), |i| x[i].to_f32() * y[i].to_f32())
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, Self> {
        k.f16_f16
    }

    fn quantize_activation_fn(k: &KernelTable) -> super::QuantizeFn<Self> {
        k.quantize_f16
    }
}

impl GgmlBlock for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const BLOCK: usize = 1;
    type Dot = bf16;

    fn dequantize(x: &[Self], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = bf16_to_f32(x);
        }
    }

    fn quantize(x: &[f32], y: &mut [Self]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f32_to_bf16(x);
        }
    }

    fn vec_dot_scalar(x: &[Self], y: &[Self]) -> f32 {
        lane_sum_f64(x.len().min(y.len()), |i| {
            bf16_to_f32(x[i]) * bf16_to_f32(y[i])
        })
    }

    fn vec_dot_fn(k: &KernelTable) -> VecDotFn<Self, Self> {
        k.bf16_bf16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_ggml() {
        // Round to nearest even at the 16-bit boundary.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
        // NaN stays NaN and is quiet; infinities stay infinite.
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::from_bits(0xff81_0000)).to_bits(), 0xffc1);
        assert_eq!(f32_to_bf16(f32::INFINITY).to_bits(), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX).to_bits(), 0x7f80);
        assert_eq!(bf16_to_f32(f32_to_bf16(-1.5)), -1.5);
    }
}
