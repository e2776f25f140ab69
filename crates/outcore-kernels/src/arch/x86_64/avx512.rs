//! AVX-512 (F, BW, VL, VNNI) kernels; types without an AVX-512 kernel use the AVX2 one.

use super::avx2::AVX2_TABLE;
use crate::dispatch::{CpuLevel, KernelTable};

/// Whether this CPU has every feature these kernels use.
pub fn is_available() -> bool {
    super::avx2::is_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

static TABLE: KernelTable = KernelTable {
    level: CpuLevel::Avx512,
    ..AVX2_TABLE
};

/// This level's table (callers check [`is_available`] first).
pub(crate) fn table() -> &'static KernelTable {
    &TABLE
}
