//! The planner on the demo model's real tensor sizes, under synthetic limits and (ignored,
//! root + cgroup v1) under a real memory cgroup.

use std::path::{Path, PathBuf};

use outcore_engine::memory::plan::{
    kv_cache_bytes, plan, predict_tokens_per_s, scratch_estimate, LoadStrategy, ModelSizes,
    PlanRequest, Strategy,
};
use outcore_engine::memory::probe::{MemLimits, Source};
use outcore_format::gguf::GgufFile;
use outcore_format::mapping::LoadMode;

fn demo_model() -> PathBuf {
    let path = std::env::var_os("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "demo model missing at {}: run scripts/fetch-demo-model.sh",
        path.display()
    );
    path
}

/// What a loader would compute: tensor sizes by name, KV per position from the metadata.
fn sizes_of(path: &Path, n_ctx: usize) -> ModelSizes {
    let f = GgufFile::open(path, LoadMode::Mmap).unwrap();
    let md = &f.metadata;
    let arch = md.get_str("general.architecture").unwrap().to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let n_layers = md.get_u32(&key("block_count")).unwrap() as usize;
    let n_embd = md.get_u32(&key("embedding_length")).unwrap() as usize;
    let n_ff = md.get_u32(&key("feed_forward_length")).unwrap() as usize;
    let n_heads = md.get_u32(&key("attention.head_count")).unwrap() as usize;
    let n_kv = md
        .opt_u32(&key("attention.head_count_kv"))
        .unwrap()
        .unwrap_or(n_heads as u32) as usize;
    let n_vocab = f.tensor_info("token_embd.weight").unwrap().shape[1] as usize;
    let file_bytes = std::fs::metadata(path).unwrap().len();
    ModelSizes::from_tensor_sizes(
        file_bytes,
        f.tensor_infos().iter().map(|t| (t.name.as_str(), t.size)),
        kv_cache_bytes(n_layers, 1, n_kv, n_embd / n_heads, 2),
        scratch_estimate(n_embd, n_ff, n_heads, n_vocab, n_ctx, 1),
    )
}

const MB: u64 = 1_000_000;

#[test]
fn demo_model_plans() {
    let path = demo_model();
    let s = sizes_of(&path, 2048);
    // SmolLM2-135M: 30 blocks, tied embeddings, 3 KV heads of 64 -> 47.2 MB of f16 KV at 2048.
    assert_eq!(s.n_layers(), 30);
    assert_eq!(s.output_bytes, None);
    assert_eq!(s.kv_bytes_per_token * 2048, 47_185_920);
    assert!(s.all_bytes() <= s.file_bytes);
    let req = PlanRequest::new(2048);

    let roomy = plan(&s, &MemLimits::unconstrained(8000 * MB), &req);
    assert_eq!(roomy.strategy, Strategy::Mmap);
    println!("{}", roomy.summary());

    // 200 MB: KV 47 + margin 67 + scratch leaves ~85 MB for a ~98 MB model: stream the tail.
    let tight = plan(&s, &MemLimits::unconstrained(200 * MB), &req);
    let Strategy::Stream {
        resident_layers,
        streamed_layers,
    } = &tight.strategy
    else {
        panic!("expected streaming: {}", tight.summary());
    };
    assert_eq!(resident_layers.start, 0);
    assert_eq!(resident_layers.end, streamed_layers.start);
    assert_eq!(streamed_layers.end, 30);
    assert!(!streamed_layers.is_empty());
    assert!(tight.resident_bytes + tight.window_bytes <= tight.budget);
    assert!(tight.error.is_none(), "{}", tight.summary());
    println!("{}", tight.summary());
    println!(
        "predicted at 8 GB/s RAM, 500 MB/s disk: {:.1} tok/s",
        predict_tokens_per_s(&tight, 8e9, 500e6)
    );

    let hopeless = plan(&s, &MemLimits::unconstrained(100 * MB), &req);
    assert!(hopeless.error.is_some());
    println!("{}", hopeless.summary());
}

#[test]
fn demo_model_on_this_machine() {
    let path = demo_model();
    let limits = MemLimits::probe().unwrap();
    let p = plan(&sizes_of(&path, 2048), &limits, &PlanRequest::new(2048));
    println!("{limits}\n{}", p.summary());
    println!("{}", serde_json::to_string(&p).unwrap());
}

/// Root + cgroup v1: runs a child of this test inside a fresh 160 MB memory cgroup and checks
/// that it plans to stream the demo model because of the cgroup limit.
#[test]
#[ignore = "needs root and cgroup v1; run with --ignored"]
fn live_cgroup_v1_plan_streams() {
    const CHILD_ENV: &str = "OUTCORE_MEMORY_PLAN_CHILD";
    if std::env::var_os(CHILD_ENV).is_some() {
        let p = plan(
            &sizes_of(&demo_model(), 2048),
            &MemLimits::probe().unwrap(),
            &PlanRequest::new(2048),
        );
        println!("\nPLAN-JSON {}", serde_json::to_string(&p).unwrap());
        println!("{}", p.summary());
        return;
    }
    let base = Path::new("/sys/fs/cgroup/memory");
    if !base.join("cgroup.procs").exists() {
        println!("skipped: no cgroup v1 memory hierarchy");
        return;
    }
    let dir = base.join(format!("outcore-plan-test-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("creating a cgroup (root needed)");
    let out = (|| {
        std::fs::write(dir.join("memory.limit_in_bytes"), (160 * MB).to_string())?;
        std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && exec "$2" --exact live_cgroup_v1_plan_streams --ignored --nocapture --test-threads 1"#)
            .arg("sh")
            .arg(&dir)
            .arg(std::env::current_exe()?)
            .env(CHILD_ENV, "1")
            .output()
    })();
    let rm = std::fs::remove_dir(&dir);
    let stdout = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
    println!("{stdout}");
    rm.expect("removing the test cgroup");
    let json = stdout
        .lines()
        .find_map(|l| l.split_once("PLAN-JSON ").map(|(_, j)| j))
        .expect("child printed its plan");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        v["available"]["source"],
        serde_json::to_value(Source::CgroupV1Limit).unwrap()
    );
    assert_eq!(
        v["strategy"]["mode"],
        serde_json::to_value(LoadStrategy::Stream).unwrap()
    );
}
