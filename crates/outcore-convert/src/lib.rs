//! outcore-convert
#![forbid(unsafe_code)]
