//! The demo model's metadata, loaded once per fuzz process (env OUTCORE_DEMO_MODEL, else
//! ~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf from scripts/fetch-demo-model.sh).

use std::path::PathBuf;
use std::sync::OnceLock;

use outcore_format::{GgufFile, LoadMode};

pub fn demo_model() -> &'static GgufFile {
    static FILE: OnceLock<GgufFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::var_os("OUTCORE_DEMO_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
            });
        GgufFile::open(&path, LoadMode::Mmap).unwrap_or_else(|e| {
            panic!("{e}: run scripts/fetch-demo-model.sh (or set OUTCORE_DEMO_MODEL)")
        })
    })
}
