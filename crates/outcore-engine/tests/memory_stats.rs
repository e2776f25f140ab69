//! `ProcessStats` against the live `/proc/self` of the test process.

use outcore_engine::memory::stats::{pss_file, ProcessStats};

#[test]
fn live_snapshot_sees_an_allocation_and_a_read() {
    let before = ProcessStats::now().expect("reading /proc/self");
    assert!(before.mem.vm_rss > 0);
    assert!(before.mem.vm_hwm >= before.mem.vm_rss);

    // Touch 64 MB of fresh anonymous memory: RSS must grow by roughly that much.
    let block = vec![1u8; 64 << 20];
    let text = std::fs::read(env!("CARGO_MANIFEST_DIR").to_string() + "/Cargo.toml").unwrap();
    let after = ProcessStats::now().unwrap();
    let d = after.delta(&before);
    std::hint::black_box(&block);
    assert!(
        d.vm_rss >= 48 << 20,
        "rss grew by only {} bytes: {d}",
        d.vm_rss
    );
    if let Some(anon) = d.rss_anon {
        assert!(anon >= 48 << 20, "{d}");
    }
    assert!(d.minflt > 0, "touching 64 MB must fault: {d}");
    if let Some(rchar) = d.rchar {
        assert!(rchar >= text.len() as u64, "{d}");
    }
    println!("before: {before}\ndelta:  {d}");
}

#[test]
fn live_pss() {
    // smaps_rollup exists on every kernel this project targets (4.14+), but don't insist.
    if let Some(p) = pss_file().expect("reading smaps_rollup") {
        assert!(p.pss > 0);
        println!("pss {} pss_file {:?}", p.pss, p.pss_file);
    } else {
        println!("no /proc/self/smaps_rollup on this kernel");
    }
}
