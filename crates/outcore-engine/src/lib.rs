//! outcore-engine
#![forbid(unsafe_code)]
