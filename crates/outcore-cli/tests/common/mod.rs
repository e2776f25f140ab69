//! Helpers for the CLI tests: the built `outcore` binary, the demo model, the fixtures, and the
//! peak RSS of a child process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `outcore` as cargo built it for this test run.
pub fn outcore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outcore"))
}

/// The demo model (env OUTCORE_DEMO_MODEL, else ~/.cache/outcore/...); panics naming the script.
pub fn demo_model() -> PathBuf {
    let p = match std::env::var_os("OUTCORE_DEMO_MODEL") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        p.is_file(),
        "demo model not found at {}: run scripts/fetch-demo-model.sh (or set OUTCORE_DEMO_MODEL)",
        p.display()
    );
    p
}

/// `../shared/fixtures` (env OUTCORE_FIXTURES overrides).
pub fn fixtures() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// The tiny f32 llama GGUF from the fixtures.
pub fn tiny_gguf() -> PathBuf {
    let p = fixtures().join("tiny-llama/tiny-llama.f32.gguf");
    assert!(
        p.is_file(),
        "fixture {} missing (set OUTCORE_FIXTURES)",
        p.display()
    );
    p
}

/// A process that panicked exits with 101 and prints "panicked"; a clean error exits 1.
pub fn assert_no_panic(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "{what}: panicked: {stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal ({:?}): {stderr}",
        out.status
    );
}

/// Runs `cmd` under `/usr/bin/time -f %M` and returns (output, peak RSS in KiB). `None` when
/// /usr/bin/time is not installed (the caller prints a notice and skips the RSS check).
pub fn run_with_peak_rss(bin_args: &[&std::ffi::OsStr], dir: &Path) -> Option<(Output, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return None;
    }
    let report = dir.join("rss.txt");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_outcore"))
        .args(bin_args)
        .output()
        .expect("run /usr/bin/time outcore");
    let text = std::fs::read_to_string(&report).expect("rss report");
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no RSS figure in `{text}`"));
    Some((out, kib))
}
