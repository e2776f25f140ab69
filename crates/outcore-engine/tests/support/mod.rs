//! Shared helpers for the engine's golden tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The demo model (SmolLM2-135M-Instruct Q4_1): `OUTCORE_DEMO_MODEL` or the fetch script's cache path.
pub fn demo_model() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_DEMO_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "demo model missing: run scripts/fetch-demo-model.sh (or set OUTCORE_DEMO_MODEL)"
    );
    p
}

/// `../shared/fixtures` beside the repository (or `OUTCORE_FIXTURES`).
pub fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(p.is_dir(), "fixtures missing at {}", p.display());
    p
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
