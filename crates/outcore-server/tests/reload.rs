//! Reloading changed model files on the fake engine (its reply is its file's contents): a file
//! replaced by rename is mapped by `POST /v1/models/{id}/reload`, `POST /v1/reload` and SIGHUP;
//! requests in flight finish on the old engine, which is dropped when the last of them ends; a
//! replacement that fails to load leaves the old one serving; a file truncated in place is
//! refused instead of read.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use outcore_server::engine::fake::{FakeLoader, FakeOptions};
use outcore_server::{app, AppState, ModelConfig, ServerConfig};
use serde_json::json;
use tower::ServiceExt;

struct Fixture {
    dir: tempfile::TempDir,
    loader: Arc<FakeLoader>,
    state: AppState,
    app: Router,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.gguf"))
    }

    /// Replaces a model file the way outcore's writers do: a new file renamed over the old.
    fn replace(&self, name: &str, contents: &str) {
        replace(&self.path(name), contents);
    }

    async fn say(&self, model: &str, max_tokens: usize) -> String {
        let r = post(
            &self.app,
            "/v1/completions",
            json!({"model": model, "prompt": "x", "max_tokens": max_tokens}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["choices"][0]["text"].as_str().unwrap().to_string()
    }
}

fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Models `(name, initial file contents)`; replies repeat the file's contents.
fn fixture(models: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::default();
    for &(name, text) in models {
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, text).unwrap();
        let mut m = ModelConfig::new(name, path);
        m.parallel = 2;
        m.n_ctx = Some(1000);
        cfg.models.insert(name.into(), Arc::new(m));
    }
    cfg.validate().unwrap();
    let loader = FakeLoader::new(FakeOptions {
        reply_from_file: true,
        endless: true,
        step_delay: Duration::from_millis(2),
        ..Default::default()
    });
    let state = AppState::new(&cfg, loader.clone()).unwrap();
    Fixture {
        dir,
        loader,
        app: app(state.clone()),
        state,
    }
}

#[tokio::test]
async fn reload_swaps_in_a_replaced_file_while_old_requests_finish_on_the_old_one() {
    let f = fixture(&[("m", "old.")]);
    assert_eq!(f.say("m", 8).await, "old.old.");
    let inode = get(&f.app, "/v1/models/m").await.json()["file"]["inode"].clone();
    assert!(inode.as_u64().is_some());

    // Nothing changed: nothing happens.
    let r = post(&f.app, "/v1/models/m/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["reloaded"], false);
    assert_eq!(f.loader.stats.loads.load(Ordering::SeqCst), 1);

    // A long streaming request on the old file, read only partly before the swap: its lease
    // keeps the old engine alive.
    let resp = f
        .app
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "m", "prompt": "x", "max_tokens": 200, "stream": true})),
            None,
        ))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut old_stream = Vec::new();
    old_stream.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());

    f.replace("m", "NEW!");
    let r = post(&f.app, "/v1/models/m/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["reloaded"], true, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("replaced"), "{v}");
    assert_eq!(f.loader.stats.loads.load(Ordering::SeqCst), 2);
    assert_eq!(
        f.loader.stats.drops.load(Ordering::SeqCst),
        0,
        "the old engine lives while a request holds it"
    );

    // New requests get the new file; /v1/models shows it.
    assert_eq!(f.say("m", 8).await, "NEW!NEW!");
    let model = get(&f.app, "/v1/models/m").await.json();
    assert_ne!(model["file"]["inode"], inode, "{model}");
    assert_eq!(model["status"], "loaded");

    // The old request ends on the old engine, with the old text throughout.
    while let Some(frame) = body.frame().await {
        old_stream.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let text: String = String::from_utf8(old_stream)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["text"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(text, "old.".repeat(50));
    drop(body);
    eventually("the old engine to be dropped", || async {
        f.loader.stats.drops.load(Ordering::SeqCst) == 1
    })
    .await;

    let m = get(&f.app, "/metrics").await.text();
    assert_eq!(
        metric(&m, "outcore_model_reloads_total", "{model=\"m\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_loads_total", "{model=\"m\"}"),
        Some(2.0)
    );
    let http = metric(
        &m,
        "outcore_http_requests_total",
        "{route=\"/v1/models/{id}/reload\",code=\"200\"}",
    );
    assert_eq!(http, Some(2.0));
}

#[tokio::test]
async fn reload_all_failed_replacement_and_unloaded_models() {
    let f = fixture(&[("a", "aaa"), ("b", "bbb")]);
    assert_eq!(f.say("a", 3).await, "aaa");
    // b is not loaded: a reload has nothing to do, and its next request maps the new file.
    f.replace("b", "BBB");
    f.replace("a", "AAA");
    let r = post(&f.app, "/v1/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"][0]["id"], "a");
    assert_eq!(v["data"][0]["reloaded"], true, "{v}");
    assert_eq!(v["data"][1]["reloaded"], false, "{v}");
    assert!(v["data"][1]["detail"]
        .as_str()
        .unwrap()
        .contains("not loaded"));
    assert_eq!(f.say("a", 3).await, "AAA");
    assert_eq!(f.say("b", 3).await, "BBB");

    // A replacement that does not load: 503 naming the model, and the old file keeps serving.
    f.replace("a", "FAIL");
    let r = post(&f.app, "/v1/models/a/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(error_fields(&r).1.as_deref(), Some("model_reload_failed"));
    assert_eq!(f.say("a", 3).await, "AAA");
    let r = post(&f.app, "/v1/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["failed"], 1);

    // Unknown models are 404s.
    let r = post(&f.app, "/v1/models/nope/reload", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reload_needs_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, "x").unwrap();
    let mut cfg = ServerConfig::default();
    cfg.models
        .insert("m".into(), Arc::new(ModelConfig::new("m", path)));
    cfg.api_key = Some("k".into());
    let app = app(AppState::new(&cfg, FakeLoader::new(FakeOptions::default())).unwrap());
    for uri in ["/v1/models/m/reload", "/v1/reload"] {
        let r = send(&app, request(Method::POST, uri, None, None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        let r = send(&app, request(Method::POST, uri, None, Some("k"))).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
}

#[tokio::test]
async fn a_file_truncated_in_place_is_refused_until_reloaded() {
    let f = fixture(&[("m", "0123456789")]);
    assert_eq!(f.say("m", 3).await, "012");
    // Same inode, fewer bytes: a mapping would fault past the new end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.path("m"))
        .unwrap()
        .set_len(4)
        .unwrap();
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "max_tokens": 3}),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(error_fields(&r).1.as_deref(), Some("model_file_truncated"));
    assert!(r.text().contains("truncated"), "{}", r.text());
    // The operator restores a whole file and reloads.
    f.replace("m", "whole");
    let r = post(&f.app, "/v1/models/m/reload", json!({})).await;
    assert_eq!(r.json()["reloaded"], true, "{}", r.text());
    assert_eq!(f.say("m", 5).await, "whole");
    assert_eq!(
        f.state
            .registry
            .stats("m")
            .unwrap()
            .reloads
            .load(Ordering::SeqCst),
        1
    );
}

/// SIGHUP reloads changed files. This sends SIGHUP to the test process itself, which is safe
/// once tokio's handler is installed (the default action would end the process).
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_changed_files() {
    let f = fixture(&[("m", "one")]);
    let _task = outcore_server::spawn_reload_on_sighup(&f.state.registry).unwrap();
    assert_eq!(f.say("m", 3).await, "one");
    f.replace("m", "two");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stats = f.state.registry.stats("m").unwrap();
    eventually("the SIGHUP reload", || async {
        stats.reloads.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(f.say("m", 3).await, "two");
}
