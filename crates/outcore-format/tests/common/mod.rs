//! Shared helpers for the integration tests: locating the demo model and the fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

/// The demo model (env OUTCORE_DEMO_MODEL, else ~/.cache/outcore/...). Panics with a message naming
/// the fetch script when absent.
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

/// True if `python3 -c "import gguf"` works; prints a notice otherwise.
pub fn have_python_module(module: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: python3 with `{module}` not available; skipping the Python cross-check");
    }
    ok
}
