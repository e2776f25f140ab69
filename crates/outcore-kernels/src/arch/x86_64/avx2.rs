//! AVX2 + FMA + F16C kernels.

use crate::dispatch::{CpuLevel, KernelTable, SCALAR_TABLE};

/// Whether this CPU has every feature these kernels use.
pub fn is_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

static TABLE: KernelTable = KernelTable {
    level: CpuLevel::Avx2,
    ..SCALAR_TABLE
};

/// This level's table (callers check [`is_available`] first).
pub(crate) fn table() -> &'static KernelTable {
    &TABLE
}
