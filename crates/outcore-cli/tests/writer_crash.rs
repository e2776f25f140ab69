//! Crash safety of outcore's writers: `kill -9` at random points during `convert`, `quantize`
//! and `export` never leaves a file at the output path that is not complete and valid (it is
//! either absent, the previous file, or byte-identical to a clean run's output, and GGUF
//! outputs pass `outcore inspect`). A clean run leaves no temporary file behind.
//!
//! The kill loop is slow (it runs each writer a few dozen times), so it is `#[ignore]`:
//! `cargo test -p outcore --test writer_crash -- --ignored --nocapture` (env OUTCORE_KILLS sets
//! the number of kills per writer, default 24). The clean-run test is fast and always runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Writer {
    name: &'static str,
    /// Extra files the writer produces besides `out` (llama2c's tokenizer.bin).
    side: &'static [&'static str],
    gguf: bool,
    args: fn(out: &Path) -> Command,
}

fn writers() -> Vec<Writer> {
    vec![
        Writer {
            name: "convert",
            side: &[],
            gguf: true,
            args: |out| {
                let mut c = common::outcore();
                c.arg("convert")
                    .arg(common::fixtures().join("tiny-llama"))
                    .arg("-o")
                    .arg(out)
                    .args(["--type", "q8_0", "--force", "-t", "1", "--no-tokenizer"]);
                c
            },
        },
        Writer {
            name: "quantize",
            side: &[],
            gguf: true,
            args: |out| {
                let mut c = common::outcore();
                c.arg("quantize")
                    .arg(common::demo_model())
                    .arg(out)
                    .args(["--type", "q8_0", "--force", "-t", "1"]);
                c
            },
        },
        Writer {
            name: "export",
            side: &["tokenizer.bin"],
            gguf: false,
            args: |out| {
                let mut c = common::outcore();
                c.args(["export", "--format", "llama2c", "--force", "-m"])
                    .arg(common::tiny_gguf())
                    .arg("-o")
                    .arg(out);
                c
            },
        },
    ]
}

/// Names in `dir` that are not `keep` (temporary files left behind).
fn strays(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

fn out_name(w: &Writer) -> &'static str {
    if w.gguf {
        "out.gguf"
    } else {
        "out.bin"
    }
}

/// A clean run: exit 0, a valid output, and nothing else in the directory.
fn clean_run(w: &Writer, dir: &Path) -> (Vec<u8>, Duration) {
    let out = dir.join(out_name(w));
    let t = Instant::now();
    let o = (w.args)(&out).output().unwrap();
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "{}: {}",
        w.name,
        String::from_utf8_lossy(&o.stderr)
    );
    let mut keep = vec![out_name(w)];
    keep.extend_from_slice(w.side);
    assert_eq!(
        strays(dir, &keep),
        Vec::<String>::new(),
        "{}: temp files left",
        w.name
    );
    if w.gguf {
        let i = common::outcore().arg("inspect").arg(&out).output().unwrap();
        assert!(i.status.success(), "{}: output does not inspect", w.name);
    }
    (std::fs::read(&out).unwrap(), took)
}

#[test]
fn clean_runs_leave_no_temp_files() {
    for w in writers() {
        let dir = tempfile::tempdir().unwrap();
        clean_run(&w, dir.path());
    }
}

#[test]
#[ignore = "kills each writer OUTCORE_KILLS times (default 24); about a minute per writer"]
fn kill_9_never_leaves_a_partial_output() {
    let kills: usize = std::env::var("OUTCORE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut rng = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for w in writers() {
        let dir = tempfile::tempdir().unwrap();
        let (reference, took) = clean_run(&w, dir.path());
        let out: PathBuf = dir.path().join(out_name(&w));
        let (mut absent, mut old, mut complete, mut temps) = (0, 0, 0, 0);
        for i in 0..kills {
            // Odd iterations start with a previous output in place (the --force overwrite case).
            let prev = i % 2 == 1;
            if prev {
                std::fs::write(&out, b"previous output").unwrap();
            } else {
                let _ = std::fs::remove_file(&out);
            }
            let delay = Duration::from_micros(next() % (took.as_micros() as u64 + 1));
            let mut child = (w.args)(&out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            match std::fs::read(&out) {
                Err(_) => {
                    assert!(!prev, "{}: kill {i} removed the previous output", w.name);
                    absent += 1;
                }
                Ok(b) if prev && b == b"previous output" => old += 1,
                Ok(b) => {
                    assert!(
                        b == reference,
                        "{}: kill {i} after {delay:?} left {} bytes that are not the complete output",
                        w.name,
                        b.len()
                    );
                    if w.gguf {
                        let o = common::outcore().arg("inspect").arg(&out).output().unwrap();
                        assert!(
                            o.status.success(),
                            "{}: kill {i}: output does not inspect",
                            w.name
                        );
                    }
                    complete += 1;
                }
            }
            // A killed writer cannot remove its temp file; count and clear them.
            let mut keep = vec![out_name(&w)];
            keep.extend_from_slice(w.side);
            for s in strays(dir.path(), &keep) {
                assert!(s.contains(".tmp."), "{}: unexpected file {s}", w.name);
                temps += 1;
                std::fs::remove_file(dir.path().join(s)).unwrap();
            }
        }
        eprintln!(
            "{}: {kills} kills over a {took:?} clean run: {absent} absent, {old} previous kept, \
             {complete} complete; {temps} temp files left by killed runs (removed)",
            w.name
        );
    }
}
