//! outcore-kernels: math on ggml blocks (dequantize, quantize, dot products, matmul, ops).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
