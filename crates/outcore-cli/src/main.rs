//! The `outcore` command.
#![forbid(unsafe_code)]
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
