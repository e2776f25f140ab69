//! Shape checks of the bandwidth probes (no timing assertions).

use std::path::PathBuf;

use outcore_engine::memory::bandwidth::{measure_disk_read_bw, measure_mem_bw};
use outcore_engine::memory::MemoryError;

fn temp_file(name: &str, len: usize) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("outcore-memory-{}-{name}", std::process::id()));
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn disk_read_of_a_whole_file_and_a_prefix() {
    // Not a multiple of 4096: the O_DIRECT path must take the short read at EOF.
    let len = 5 * (1 << 20) + 123;
    let path = temp_file("bw", len);
    let all = measure_disk_read_bw(&path, u64::MAX).unwrap();
    assert_eq!(all.bytes_read, len as u64);
    assert!(all.bytes_per_s > 0.0 && all.bytes_per_s.is_finite());
    assert_eq!(all.direct, all.note.is_none(), "{all:?}");
    let part = measure_disk_read_bw(&path, 1_000_000).unwrap();
    assert_eq!(part.bytes_read, 1_000_000);
    println!("whole: {all:?}\nprefix: {part:?}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn disk_read_of_a_missing_file_names_it() {
    let err =
        measure_disk_read_bw("/nonexistent/outcore-model.gguf".as_ref(), 1 << 20).unwrap_err();
    assert!(matches!(err, MemoryError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/outcore-model.gguf"),
        "{err}"
    );
}

#[test]
fn demo_model_disk_bandwidth_if_present() {
    let path = std::env::var_os("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !path.exists() {
        println!("skipped: no demo model (scripts/fetch-demo-model.sh fetches it)");
        return;
    }
    let bw = measure_disk_read_bw(&path, 64 << 20).unwrap();
    assert!(bw.bytes_read > 0);
    println!(
        "{}: {:.1} MB/s direct={} {:?}",
        path.display(),
        bw.bytes_per_s / 1e6,
        bw.direct,
        bw.note
    );
}

#[test]
fn mem_bandwidth_full_size() {
    let bw = measure_mem_bw();
    assert!(bw.is_finite() && bw > 0.0);
    println!("memory read bandwidth {:.1} GB/s", bw / 1e9);
}
