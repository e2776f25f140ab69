//! The hostile corpus (the format crate's `tests/support/hostile_gen.rs`, the one generator)
//! through the binary: `outcore inspect` on each file exits 1 with the specific error on stderr,
//! never panics, and its peak RSS stays under 32 MB while it rejects the file.

mod common;

#[path = "../../outcore-format/tests/support/hostile_gen.rs"]
mod hostile_gen;

use std::ffi::OsStr;

/// Peak RSS allowed for rejecting a hostile file.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

#[test]
fn inspect_rejects_each_hostile_file_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut worst = (0u64, "");
    let mut measured = true;
    for case in hostile_gen::corpus() {
        let path = case.write(dir.path());
        let args = [OsStr::new("inspect"), path.as_os_str()];
        let (out, rss) = match common::run_with_peak_rss(&args, dir.path()) {
            Some((out, rss)) => (out, Some(rss)),
            None => {
                measured = false;
                (common::outcore().args(args).output().unwrap(), None)
            }
        };
        common::assert_no_panic(&out, case.name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.name);
        assert!(
            stderr.contains(case.expect),
            "{}: stderr lacks `{}`: {stderr}",
            case.name,
            case.expect
        );
        if let Some(rss) = rss {
            assert!(
                rss < RSS_LIMIT_KIB,
                "{}: peak RSS {rss} KiB while rejecting",
                case.name
            );
            if rss > worst.0 {
                worst = (rss, case.name);
            }
        }
    }
    if measured {
        eprintln!("worst peak RSS: {} KiB ({})", worst.0, worst.1);
    } else {
        eprintln!("NOTICE: /usr/bin/time not installed; peak RSS not checked");
    }
}

/// A valid GGUF from the same generator is accepted (the corpus fails for its lies, not its form).
#[test]
fn inspect_accepts_the_valid_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.gguf");
    std::fs::write(&p, hostile_gen::valid_gguf().b).unwrap();
    let out = common::outcore().arg("inspect").arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
