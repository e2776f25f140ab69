//! Reload with the real engine: a copy of the demo model is replaced by rename (with its final
//! norm negated, so greedy decoding picks other tokens) while a streaming request runs; after
//! `POST /v1/models/{id}/reload` new requests get the new weights, `/v1/models` shows the new
//! inode, and the request that was running finishes with exactly the old model's tokens.
#![cfg(feature = "engine")]

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use outcore_format::gguf::GgufFile;
use outcore_format::mapping::LoadMode;
use outcore_server::engine::outcore::OutcoreLoader;
use outcore_server::{app, AppState, ModelConfig, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const PROMPT: &str = "The capital of France is";
const N: usize = 24;

/// The demo model with `output_norm.weight` (f32) negated: the logits change sign.
fn write_negated_copy(src: &Path, dst: &Path) {
    let (start, len) = {
        let f = GgufFile::open(src, LoadMode::Mmap).unwrap();
        let t = f.tensor("output_norm.weight").expect("output_norm.weight");
        assert_eq!(t.ty.name(), "F32", "the demo model's output norm is f32");
        let info = f.tensor_info("output_norm.weight").unwrap();
        ((f.data_offset() + info.offset) as usize, t.bytes.len())
    };
    let mut bytes = std::fs::read(src).unwrap();
    for v in bytes[start..start + len].chunks_exact_mut(4) {
        v[3] ^= 0x80;
    }
    let tmp = dst.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

async fn greedy(app: &Router) -> String {
    let r = post(
        app,
        "/v1/completions",
        json!({"model": "smol", "prompt": PROMPT, "max_tokens": N, "temperature": 0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["choices"][0]["text"].as_str().unwrap().to_string()
}

fn sse_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["text"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[tokio::test]
async fn reload_serves_a_replaced_file_and_running_requests_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smol.gguf");
    std::fs::copy(demo_model(), &path).unwrap();
    let mut m = ModelConfig::new("smol", &path);
    m.parallel = 2;
    m.n_ctx = Some(128);
    let mut cfg = ServerConfig::default();
    cfg.models.insert("smol".into(), Arc::new(m));
    cfg.validate().unwrap();
    let app = app(AppState::new(&cfg, Arc::new(OutcoreLoader)).unwrap());

    let old = greedy(&app).await;
    assert!(old.starts_with(" Paris"), "{old:?}");
    let inode = get(&app, "/v1/models/smol").await.json()["file"]["inode"].clone();

    let resp = app
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "smol", "prompt": PROMPT, "max_tokens": N,
                         "temperature": 0, "stream": true})),
            None,
        ))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut streamed = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
        .to_vec();

    write_negated_copy(&demo_model(), &path);
    let r = post(&app, "/v1/models/smol/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["reloaded"], true, "{}", r.text());

    let new = greedy(&app).await;
    assert_ne!(new, old, "the replaced weights must decode differently");
    let model = get(&app, "/v1/models/smol").await.json();
    assert_ne!(model["file"]["inode"], inode, "{model}");

    while let Some(frame) = body.frame().await {
        streamed.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(
        sse_text(&streamed),
        old,
        "the running request kept the old file"
    );

    let m = get(&app, "/metrics").await.text();
    assert_eq!(
        metric(&m, "outcore_model_reloads_total", "{model=\"smol\"}"),
        Some(1.0)
    );
}
