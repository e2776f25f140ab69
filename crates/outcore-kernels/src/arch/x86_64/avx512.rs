//! AVX-512 kernels (F, BW, VL, VNNI): the 32-element-block dot products use `vpdpbusd`
//! (u8 x i8 -> i32, four products per lane, no i16 intermediate) in place of AVX2's
//! `maddubs` + `madd`; with VBMI, Q4_K/Q5_K/Q6_K have their own kernels (`kquant` for Q4_K and
//! Q6_K, zmm-wide, one and four rows at a time); Q4_1 and Q8_0 have their four-row kernels (1 to 4
//! tokens) in `q4_1_rows` and `q8_0_rows`; the other types use the AVX2 kernels. Results
//! are bit-identical to the scalar twins, like every level (integer sums are exact, float steps
//! keep the scalar order). `q4_1_r16` and `q8_0_r16` are the sixteen-row kernels of the fast
//! arithmetic (`crate::rows16`), bit-identical to their own scalar twins there.
//!
//! Soundness: as in `avx2.rs`, the `unsafe fn`s need the features in their `#[target_feature]`
//! and the safe wrappers are only reachable through [`table`], handed out after [`is_available`].

use std::arch::x86_64::*;

use super::avx2::{block32_kernels, k45_kernels, safe_wrappers_x4, AVX2_TABLE};
use crate::dispatch::{CpuLevel, KernelTable};
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ8K, BlockQ8_0, BlockQ8_1, R4Tokens,
    QK_K,
};

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

/// One 32-element sub-block with its scale into the 8 lanes (lane = index % 8): `vpermb` puts
/// elements (l, l+8, l+16, l+24) next to each other so one `vpdpbusd` gives lane l's sum.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
fn sub32_vbmi(acc: __m256i, w: __m256i, a: __m256i, scale: i32) -> __m256i {
    let idx = _mm256_setr_epi8(
        0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27, 4, 12, 20, 28, 5, 13, 21, 29, 6,
        14, 22, 30, 7, 15, 23, 31,
    );
    let dp = _mm256_dpbusd_epi32(
        _mm256_setzero_si256(),
        _mm256_permutexvar_epi8(idx, w),
        _mm256_permutexvar_epi8(idx, a),
    );
    _mm256_add_epi32(acc, _mm256_mullo_epi32(dp, _mm256_set1_epi32(scale)))
}

/// The k-quant kernels below need VBMI on top of this level's features.
mod vbmi {
    use std::arch::x86_64::*;

    use super::{k45_kernels, sub32_vbmi, BlockQ5K, BlockQ8K, QK_K};

    k45_kernels!(
        q5: "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi",
        sub32_vbmi
    );

    pub(super) fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
        // SAFETY: only reachable through TABLE_VBMI, which `table()` returns only after
        // `is_available()` and a VBMI check.
        unsafe { vec_dot_q5_k_q8_k_impl(x, y) }
    }
}

mod kquant;
mod q4_1_r16;
mod q4_1_rows;
mod q8_0_r16;
mod q8_0_rows;
mod r16;

/// The VBMI Q4_K/Q6_K kernels of [`kquant`]; like [`vbmi`], only reachable through `TABLE_VBMI`.
mod kquant_entry {
    use super::kquant::{q4_k_rows, q6_k_rows};
    use crate::quant::{BlockQ4K, BlockQ6K, BlockQ8K};

    pub(super) fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
        // SAFETY: only reachable through TABLE_VBMI, which `table()` returns only after
        // `is_available()` and a VBMI check.
        unsafe { q4_k_rows::<1>([x], y)[0] }
    }

    pub(super) fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
        // SAFETY: as above.
        unsafe { q6_k_rows::<1>([x], y)[0] }
    }

    pub(super) fn vec_dot_q4_k_q8_k_r4(xs: [&[BlockQ4K]; 4], y: &[BlockQ8K]) -> [f32; 4] {
        // SAFETY: as above.
        unsafe { q4_k_rows::<4>(xs, y) }
    }

    pub(super) fn vec_dot_q6_k_q8_k_r4(xs: [&[BlockQ6K]; 4], y: &[BlockQ8K]) -> [f32; 4] {
        // SAFETY: as above.
        unsafe { q6_k_rows::<4>(xs, y) }
    }
}

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

/// Single-token products take the `T = 1` case of the batched kernels: fewer vector operations
/// per block than the AVX2 four-row kernels with `vpdpbusd` (four rows of 4608 in L1, thread CPU
/// time: Q4_1 963 -> 630 ns, Q8_0 705 -> 492 ns; demo model decode step, one thread, Q4_1
/// 6.79 -> 5.71 ms, Q8_0 the same, bound by memory).
fn vec_dot_q8_0_q8_0_r4(xs: [&[BlockQ8_0]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
    // SAFETY: only reachable through `table()`, handed out after `is_available()`.
    unsafe { q8_0_rows::q8_0_r4xt::<1>(xs, [y]) }.map(|o| o[0])
}

fn vec_dot_q4_1_q8_1_r4(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
    // SAFETY: as above.
    unsafe { q4_1_rows::q4_1_r4xt::<1>(xs, [y]) }.map(|o| o[0])
}

fn vec_dot_q4_1_q8_1_r4xt<const T: usize>(
    xs: [&[BlockQ4_1]; 4],
    ys: [&[BlockQ8_1]; T],
) -> [[f32; T]; 4] {
    // SAFETY: as above.
    unsafe { q4_1_rows::q4_1_r4xt::<T>(xs, ys) }
}

fn vec_dot_q8_0_q8_0_r4xt<const T: usize>(
    xs: [&[BlockQ8_0]; 4],
    ys: [&[BlockQ8_0]; T],
) -> [[f32; T]; 4] {
    // SAFETY: as above.
    unsafe { q8_0_rows::q8_0_r4xt::<T>(xs, ys) }
}

fn q4_1_q8_1_r16(
    w: &[BlockQ4_1],
    nb: usize,
    act: &[BlockQ8_1],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    // SAFETY: as above.
    unsafe { q4_1_r16::q4_1_r16(w, nb, act, scales, n_tokens, out) }
}

fn q8_0_q8_0_r16(
    w: &[BlockQ8_0],
    nb: usize,
    act: &[BlockQ8_0],
    scales: &[[f32; 2]],
    n_tokens: usize,
    out: &mut [f32],
) {
    // SAFETY: as above.
    unsafe { q8_0_r16::q8_0_r16(w, nb, act, scales, n_tokens, out) }
}

static TABLE: KernelTable = TABLE_FIELDS;

/// [`TABLE`] plus the VBMI k-quant kernels (Zen 4, Ice Lake and later): Q5_K here, Q4_K and
/// Q6_K (single- and four-row) in `kquant`.
static TABLE_VBMI: KernelTable = KernelTable {
    q4_k_q8_k: kquant_entry::vec_dot_q4_k_q8_k,
    q5_k_q8_k: vbmi::vec_dot_q5_k_q8_k,
    q6_k_q8_k: kquant_entry::vec_dot_q6_k_q8_k,
    q4_k_q8_k_r4: Some(kquant_entry::vec_dot_q4_k_q8_k_r4),
    q6_k_q8_k_r4: Some(kquant_entry::vec_dot_q6_k_q8_k_r4),
    ..TABLE_FIELDS
};

const TABLE_FIELDS: KernelTable = KernelTable {
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
    q8_0_q8_0_r4: Some(vec_dot_q8_0_q8_0_r4),
    q4_1_q8_1_r4: Some(vec_dot_q4_1_q8_1_r4),
    q4_1_q8_1_r4xt: R4Tokens {
        t2: Some(vec_dot_q4_1_q8_1_r4xt::<2>),
        t3: Some(vec_dot_q4_1_q8_1_r4xt::<3>),
        t4: Some(vec_dot_q4_1_q8_1_r4xt::<4>),
    },
    q8_0_q8_0_r4xt: R4Tokens {
        t2: Some(vec_dot_q8_0_q8_0_r4xt::<2>),
        t3: Some(vec_dot_q8_0_q8_0_r4xt::<3>),
        t4: Some(vec_dot_q8_0_q8_0_r4xt::<4>),
    },
    q4_1_q8_1_r16: Some(q4_1_q8_1_r16),
    q8_0_q8_0_r16: Some(q8_0_q8_0_r16),
    ..AVX2_TABLE
};

/// This level's table (callers check [`is_available`] first).
pub(crate) fn table() -> &'static KernelTable {
    if is_x86_feature_detected!("avx512vbmi") {
        &TABLE_VBMI
    } else {
        &TABLE
    }
}
