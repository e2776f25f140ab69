//! Per-architecture SIMD twins of the scalar kernels in `crate::quant`. Each function is a
//! `#[target_feature] unsafe fn`; `crate::dispatch` only hands out tables whose features the CPU
//! has, which is what makes calling them sound.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
