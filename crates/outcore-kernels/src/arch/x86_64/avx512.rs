//! AVX-512 kernels (F, BW, VL, VNNI): the 32-element-block dot products use `vpdpbusd`
//! (u8 x i8 -> i32, four products per lane, no i16 intermediate) in place of AVX2's
//! `maddubs` + `madd`; the other types use the AVX2 kernels. Results are bit-identical to the
//! scalar twins, like every level (integer sums are exact, float steps keep the scalar order).
//!
//! Soundness: as in `avx2.rs`, the `unsafe fn`s need the features in their `#[target_feature]`
//! and the safe wrappers are only reachable through [`table`], handed out after [`is_available`].

use std::arch::x86_64::*;

use super::avx2::{block32_kernels, safe_wrappers_x4, AVX2_TABLE};
use crate::dispatch::{CpuLevel, KernelTable};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// Whether this CPU has every feature these kernels use.
pub fn is_available() -> bool {
    super::avx2::is_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Signed x signed bytes -> 8 i32 lanes (|x| as u8 times y with x's sign; exact).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn dot_i8_vnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        _mm256_sign_epi8(x, x),
        _mm256_sign_epi8(y, x),
    )
}

/// Unsigned x signed bytes -> 8 i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn dot_u8_i8_vnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

block32_kernels!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_i8_vnni,
    dot_u8_i8_vnni
);

macro_rules! safe_wrappers {
    ($($name:ident => $imp:ident ($x:ty, $y:ty) -> $ret:ty;)*) => {
        $(
            fn $name(x: $x, y: $y) -> $ret {
                // SAFETY: only reachable through `table()`, which dispatch hands out after
                // `is_available()` confirmed AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
                unsafe { $imp(x, y) }
            }
        )*
    };
}

safe_wrappers! {
    vec_dot_q8_0_q8_0 => vec_dot_q8_0_q8_0_impl(&[BlockQ8_0], &[BlockQ8_0]) -> f32;
    vec_dot_q4_0_q8_0 => vec_dot_q4_0_q8_0_impl(&[BlockQ4_0], &[BlockQ8_0]) -> f32;
    vec_dot_q4_1_q8_1 => vec_dot_q4_1_q8_1_impl(&[BlockQ4_1], &[BlockQ8_1]) -> f32;
    vec_dot_q5_0_q8_0 => vec_dot_q5_0_q8_0_impl(&[BlockQ5_0], &[BlockQ8_0]) -> f32;
    vec_dot_q5_1_q8_1 => vec_dot_q5_1_q8_1_impl(&[BlockQ5_1], &[BlockQ8_1]) -> f32;
}

safe_wrappers_x4! {
    vec_dot_q8_0_q8_0_x4 => vec_dot_q8_0_q8_0_x4_impl(BlockQ8_0, BlockQ8_0);
    vec_dot_q4_0_q8_0_x4 => vec_dot_q4_0_q8_0_x4_impl(BlockQ4_0, BlockQ8_0);
    vec_dot_q4_1_q8_1_x4 => vec_dot_q4_1_q8_1_x4_impl(BlockQ4_1, BlockQ8_1);
    vec_dot_q5_0_q8_0_x4 => vec_dot_q5_0_q8_0_x4_impl(BlockQ5_0, BlockQ8_0);
    vec_dot_q5_1_q8_1_x4 => vec_dot_q5_1_q8_1_x4_impl(BlockQ5_1, BlockQ8_1);
}

static TABLE: KernelTable = KernelTable {
    level: CpuLevel::Avx512,
    q8_0_q8_0: vec_dot_q8_0_q8_0,
    q4_0_q8_0: vec_dot_q4_0_q8_0,
    q4_1_q8_1: vec_dot_q4_1_q8_1,
    q5_0_q8_0: vec_dot_q5_0_q8_0,
    q5_1_q8_1: vec_dot_q5_1_q8_1,
    q8_0_q8_0_x4: Some(vec_dot_q8_0_q8_0_x4),
    q4_0_q8_0_x4: Some(vec_dot_q4_0_q8_0_x4),
    q4_1_q8_1_x4: Some(vec_dot_q4_1_q8_1_x4),
    q5_0_q8_0_x4: Some(vec_dot_q5_0_q8_0_x4),
    q5_1_q8_1_x4: Some(vec_dot_q5_1_q8_1_x4),
    ..AVX2_TABLE
};

/// This level's table (callers check [`is_available`] first).
pub(crate) fn table() -> &'static KernelTable {
    &TABLE
}
