//! Lifecycle with the real engine (one test in this binary, so process RSS is ours alone):
//! idle unload shows in /metrics and in RSS, the next request reloads, and two models under a
//! RAM budget that fits one evict each other (least recently used first).
#![cfg(feature = "engine")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use outcore_server::engine::outcore::OutcoreLoader;
use outcore_server::engine::Loader;
use outcore_server::metrics::process_rss_bytes;
use outcore_server::{app, AppState, ModelConfig, ServerConfig};
use serde_json::json;

#[tokio::test]
async fn idle_unload_reload_and_lru_eviction() {
    let path = demo_model();
    let file = std::fs::metadata(&path).unwrap().len();
    let mut cfg = ServerConfig::default();
    for name in ["a", "b"] {
        let mut m = ModelConfig::new(name, &path);
        m.n_ctx = Some(128);
        m.unload_after_idle = Some(Duration::from_secs(1));
        cfg.models.insert(name.into(), Arc::new(m));
    }
    let estimate = OutcoreLoader.estimate_bytes(&cfg.models["a"]);
    assert!(
        estimate > file && estimate < file + (64 << 20),
        "estimate {estimate} for a {file}-byte file"
    );
    cfg.max_ram = Some(estimate * 3 / 2);
    let app = app(AppState::new(&cfg, Arc::new(OutcoreLoader)).unwrap());
    let run = |model: &'static str| {
        let app = app.clone();
        async move {
            let r = post(&app, "/v1/completions", json!({"model": model, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
            assert!(text.starts_with(" Paris"), "{text:?}");
        }
    };
    let metrics = || async { get(&app, "/metrics").await.text() };

    let rss0 = process_rss_bytes();
    run("a").await;
    let m = metrics().await;
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"a\"}"),
        Some(1.0)
    );
    let resident = metric(&m, "outcore_model_resident_bytes", "{model=\"a\"}").unwrap();
    assert_eq!(
        metric(&m, "outcore_model_file_backed_bytes", "{model=\"a\"}"),
        Some(file as f64)
    );
    assert!(
        resident > file as f64 / 2.0,
        "a forward pass touches the weights: {resident} of {file}"
    );
    let rss_loaded = process_rss_bytes();
    assert!(rss_loaded > rss0 + file / 2, "RSS {rss0} -> {rss_loaded}");

    eventually("idle unload of a", || async {
        metric(
            &metrics().await,
            "outcore_model_unloads_total",
            "{model=\"a\"}",
        ) == Some(1.0)
    })
    .await;
    let m = metrics().await;
    assert_eq!(
        metric(&m, "outcore_model_resident_bytes", "{model=\"a\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"a\"}"),
        Some(0.0)
    );
    let rss_unloaded = process_rss_bytes();
    assert!(
        rss_unloaded + file / 2 < rss_loaded,
        "RSS after unload {rss_unloaded} vs loaded {rss_loaded}"
    );

    run("a").await;
    assert_eq!(
        metric(
            &metrics().await,
            "outcore_model_loads_total",
            "{model=\"a\"}"
        ),
        Some(2.0)
    );
    // b does not fit beside a: a (idle, least recently used) goes first.
    run("b").await;
    let m = metrics().await;
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"a\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"b\"}"),
        Some(1.0)
    );
    run("a").await;
    let m = metrics().await;
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"a\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"b\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_loads_total", "{model=\"a\"}"),
        Some(3.0)
    );
}
