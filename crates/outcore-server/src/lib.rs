//! outcore-server
#![forbid(unsafe_code)]
