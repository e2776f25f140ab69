//! `MemLimits::probe_at` against fake `/proc` + `/sys` trees in `tests/data/memory/`, the live
//! probe on this machine, and (ignored, needs root + cgroup v1) a real memory cgroup.

use std::path::{Path, PathBuf};

use outcore_engine::memory::probe::{CgroupVersion, MemLimits, Source};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/memory")
        .join(name)
}

fn probe(name: &str) -> MemLimits {
    MemLimits::probe_at(&fixture(name)).unwrap_or_else(|e| panic!("probing fixture {name}: {e}"))
}

const MEM_AVAILABLE: u64 = 6_000_000 * 1024;

#[test]
fn meminfo_only() {
    let l = probe("meminfo-only");
    assert_eq!(l.mem_total, 8_000_000 * 1024);
    assert_eq!(l.mem_available, MEM_AVAILABLE);
    assert_eq!(l.cgroup, None);
    assert_eq!((l.rlimit_as, l.rlimit_memlock, l.vm_size), (None, None, 0));
    let e = l.effective();
    assert_eq!((e.source, e.bytes), (Source::MemAvailable, MEM_AVAILABLE));
    assert_eq!(l.figures().len(), 1);
}

#[test]
fn missing_meminfo_is_an_error_naming_the_path() {
    let err = MemLimits::probe_at(&fixture("no-such-tree")).unwrap_err();
    assert!(err.to_string().contains("proc/meminfo"), "{err}");
}

#[test]
fn cgroup_v1_job_limit_walks_up_to_the_root() {
    let l = probe("cgroup-v1");
    let cg = l.cgroup.as_ref().expect("v1 memory cgroup");
    assert_eq!(cg.version, CgroupVersion::V1);
    assert_eq!(cg.path, "/process_api/job1");
    // job1, process_api, the mount point.
    assert_eq!(cg.levels.len(), 3);
    let leaf = &cg.levels[0];
    assert!(
        leaf.dir.ends_with("sys/fs/cgroup/memory/process_api/job1"),
        "{}",
        leaf.dir
    );
    assert_eq!(leaf.limit, Some(1 << 30));
    assert_eq!(
        (leaf.usage, leaf.inactive_file, leaf.file_cache),
        (300_000_000, 100_000_000, 150_000_000)
    );
    // The v1 "unlimited" sentinel reads as no limit.
    assert_eq!(cg.levels[1].limit, None);
    assert_eq!(cg.levels[2].limit, None);
    let e = l.effective();
    assert_eq!(e.source, Source::CgroupV1Limit);
    assert_eq!(e.bytes, (1 << 30) - 200_000_000);
    assert_eq!(l.rlimit_memlock, Some(8 << 20));
    assert_eq!(l.rlimit_as, None);
    assert_eq!(l.vm_size, 200_000 * 1024);
    assert!(!l.cap_ipc_lock);
    assert!(!l.can_mlock(100 << 20));
    let text = l.to_string();
    assert!(
        text.starts_with("available 873.7 MB (cgroup v1 limit)"),
        "{text}"
    );
    assert!(
        text.contains("mlock: up to 8.4 MB (RLIMIT_MEMLOCK)"),
        "{text}"
    );
}

#[test]
fn cgroup_v1_inside_docker_strips_the_mount_root() {
    let l = probe("cgroup-v1-docker");
    let cg = l.cgroup.as_ref().unwrap();
    assert_eq!(cg.levels.len(), 1);
    assert!(
        cg.levels[0].dir.ends_with("sys/fs/cgroup/memory"),
        "{}",
        cg.levels[0].dir
    );
    let e = l.effective();
    assert_eq!(
        (e.source, e.bytes),
        (Source::CgroupV1Limit, 536_870_912 - 120_000_000)
    );
}

#[test]
fn cgroup_v1_hidden_path_falls_back_to_the_mount_point() {
    let l = probe("cgroup-v1-hidden-path");
    let e = l.effective();
    assert_eq!((e.source, e.bytes), (Source::CgroupV1Limit, 1_500_000_000));
}

#[test]
fn cgroup_v2_memory_high_on_the_leaf() {
    let l = probe("cgroup-v2");
    let cg = l.cgroup.as_ref().unwrap();
    assert_eq!(cg.version, CgroupVersion::V2);
    assert_eq!(cg.path, "/user.slice/app.scope");
    // app.scope and user.slice; the root has no memory.max/current/high.
    assert_eq!(cg.levels.len(), 2);
    assert_eq!(
        (cg.levels[0].limit, cg.levels[0].high),
        (None, Some(1_500_000_000))
    );
    assert_eq!(
        (cg.levels[1].limit, cg.levels[1].high),
        (Some(4_000_000_000), None)
    );
    let figs = l.figures();
    let find = |s| figs.iter().find(|f| f.source == s).unwrap().bytes;
    assert_eq!(find(Source::CgroupV2High), 1_500_000_000 - 700_000_000);
    assert_eq!(find(Source::CgroupV2Max), 4_000_000_000 - 2_300_000_000);
    let e = l.effective();
    assert_eq!((e.source, e.bytes), (Source::CgroupV2High, 800_000_000));
}

#[test]
fn cgroup_v2_parent_memory_max_binds() {
    let l = probe("cgroup-v2-max");
    let cg = l.cgroup.as_ref().unwrap();
    assert_eq!(cg.levels.len(), 2);
    assert_eq!((cg.levels[0].limit, cg.levels[0].high), (None, None));
    let e = l.effective();
    assert_eq!(e.source, Source::CgroupV2Max);
    assert_eq!(e.bytes, 2_147_483_648 - (1_800_000_000 - 147_483_648));
    assert!(
        e.detail.contains("kubepods/pod1: memory.max"),
        "{}",
        e.detail
    );
}

#[test]
fn rlimit_as_binds_and_cap_ipc_lock_lifts_memlock() {
    let l = probe("rlimit-as");
    assert_eq!(l.cgroup, None);
    let e = l.effective();
    assert_eq!(
        (e.source, e.bytes),
        (Source::RlimitAs, (4 << 30) - 3_417_968 * 1024)
    );
    assert_eq!(l.rlimit_memlock, Some(65536));
    assert!(l.cap_ipc_lock);
    assert!(l.can_mlock(1 << 40));
}

#[test]
fn live_probe_of_this_machine() {
    let l = MemLimits::probe().expect("probing /proc and /sys");
    assert!(l.mem_total > 0 && l.mem_available <= l.mem_total);
    let e = l.effective();
    assert!(e.bytes <= l.mem_available);
    println!("{l}");
    println!("{}", serde_json::to_string_pretty(&l).unwrap());
}

/// Needs root and a writable cgroup v1 memory hierarchy at /sys/fs/cgroup/memory. Creates
/// `outcore-test-<pid>` with a 256 MiB limit, starts a copy of this test binary inside it
/// (via `sh -c 'echo $$ > cgroup.procs; exec ...'`), checks that the child's probe names the
/// v1 limit, then removes the cgroup.
#[test]
#[ignore = "needs root and cgroup v1; run with --ignored"]
fn live_cgroup_v1_limit() {
    const CHILD_ENV: &str = "OUTCORE_MEMORY_PROBE_CHILD";
    if std::env::var_os(CHILD_ENV).is_some() {
        let l = MemLimits::probe().unwrap();
        println!(
            "\nPROBE-JSON {}",
            serde_json::to_string(&l.effective()).unwrap()
        );
        print!("{l}");
        return;
    }
    let base = Path::new("/sys/fs/cgroup/memory");
    if !base.join("cgroup.procs").exists() {
        println!("skipped: no cgroup v1 memory hierarchy");
        return;
    }
    let dir = base.join(format!("outcore-test-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("creating a cgroup (root needed)");
    let limit: u64 = 256 << 20;
    let run = || -> String {
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && exec "$2" --exact live_cgroup_v1_limit --ignored --nocapture --test-threads 1"#)
            .arg("sh")
            .arg(&dir)
            .arg(&exe)
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = run();
    // The child has exited, so the cgroup is empty and can go.
    let rm = std::fs::remove_dir(&dir);
    println!("{stdout}");
    rm.expect("removing the test cgroup");
    let json = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE-JSON ").map(|(_, json)| json))
        .expect("child printed its probe");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["source"], "cgroup_v1_limit");
    let bytes = v["bytes"].as_u64().unwrap();
    assert!(
        bytes <= limit && bytes > limit / 2,
        "available {bytes} under a {limit} limit"
    );
}
