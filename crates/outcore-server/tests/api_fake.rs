//! The HTTP surface against the deterministic fake engine: shapes, streaming, errors, auth,
//! lifecycle (lazy load, idle unload, LRU eviction), batching, queueing and cancellation.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use outcore_server::engine::fake::{FakeLoader, FakeOptions};
use outcore_server::{app, AppState, ModelConfig, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    loader: Arc<FakeLoader>,
    state: AppState,
    app: Router,
}

/// Models named in `models` (name, file size), each tweaked by `model`, server by `server`.
fn fixture(
    models: &[(&str, u64)],
    options: FakeOptions,
    model: impl Fn(&mut ModelConfig),
    server: impl Fn(&mut ServerConfig),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::default();
    for &(name, size) in models {
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let mut m = ModelConfig::new(name, path);
        model(&mut m);
        cfg.models.insert(name.into(), Arc::new(m));
    }
    server(&mut cfg);
    cfg.validate().unwrap();
    let loader = FakeLoader::new(options);
    let state = AppState::new(&cfg, loader.clone()).unwrap();
    Fixture {
        _dir: dir,
        loader,
        app: app(state.clone()),
        state,
    }
}

fn simple() -> Fixture {
    fixture(&[("m", 10)], FakeOptions::default(), |_| {}, |_| {})
}

#[tokio::test]
async fn completion_shape_and_usage() {
    let f = simple();
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "abc"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(v["created"].as_u64().unwrap() > 0);
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["text"], "Hello there!");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // BOS + 3 bytes in; 12 bytes out (the EOS is not counted).
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16,
               "prompt_tokens_details": {"cached_tokens": 0}})
    );
}

#[tokio::test]
async fn max_tokens_and_stop() {
    let f = simple();
    let v = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "max_tokens": 5}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let v = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "max_completion_tokens": 2}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "He");
    let v = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "stop": [" th", "zz"]}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let v = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "stop": "!"}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "Hello there");
}

#[tokio::test]
async fn chat_shape() {
    let f = simple();
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ], "temperature": 0.7, "top_p": 0.9, "seed": 3, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1});
    let r = post(&f.app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello there!"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "<system>be brief\n<user>hi\n<assistant>" is 37 bytes, plus BOS.
    assert_eq!(v["usage"]["prompt_tokens"], 38);
    assert_eq!(v["usage"]["total_tokens"], 50);
}

#[tokio::test]
async fn streaming_completion_with_usage() {
    let f = simple();
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = r.sse();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(text, "Hello there!");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 12, "total_tokens": 14,
               "prompt_tokens_details": {"cached_tokens": 0}})
    );
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "text_completion" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn streaming_chat() {
    let f = simple();
    let r = post(
        &f.app,
        "/v1/chat/completions",
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 3}),
    )
    .await;
    let data = r.sse();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hel");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none()));
}

#[tokio::test]
async fn bad_inputs_are_openai_errors() {
    let f = fixture(
        &[("m", 10)],
        FakeOptions::default(),
        |_| {},
        |s| s.max_body_bytes = 2048,
    );
    let cases: Vec<(&str, String, StatusCode, Option<&str>)> = vec![
        (
            "/v1/completions",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"x","temperature":"hot"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            r#"{"prompt":"x"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"x","n":2}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"x","max_tokens":0}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"x","max_tokens":100000}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            format!(r#"{{"model":"m","prompt":"{}"}}"#, "y".repeat(100)),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":[99999]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            r#"{"model":"nope","prompt":"x"}"#.into(),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            "/v1/completions",
            format!(r#"{{"model":"m","prompt":"{}"}}"#, "z".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"content":"x"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":"hi"}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#.into(),
            StatusCode::BAD_REQUEST,
            Some("stop"),
        ),
    ];
    for (uri, body, status, param) in cases {
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let r = send(&f.app, req).await;
        assert_eq!(r.status, status, "{uri} {body}: {}", r.text());
        let (p, _) = error_fields(&r);
        assert_eq!(p.as_deref(), param, "{uri} {body}: {}", r.text());
        assert_eq!(
            r.json()["error"]["type"],
            "invalid_request_error",
            "{}",
            r.text()
        );
    }
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "y".repeat(100)}),
    )
    .await;
    assert_eq!(
        error_fields(&r).1.as_deref(),
        Some("context_length_exceeded")
    );
    // Unknown endpoints and methods answer in the same shape.
    let r = get(&f.app, "/v1/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    error_fields(&r);
    let r = get(&f.app, "/v1/completions").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    error_fields(&r);
    // None of this loaded the model except the requests that reached tokenization.
    assert!(f.loader.stats.loads.load(Ordering::SeqCst) <= 1);
}

#[tokio::test]
async fn api_key() {
    let f = fixture(
        &[("m", 10)],
        FakeOptions::default(),
        |_| {},
        |s| s.api_key = Some("sekrit".into()),
    );
    let body = json!({"model": "m", "prompt": "x"});
    for key in [None, Some("wrong")] {
        for (method, uri, b) in [
            (Method::GET, "/v1/models", None),
            (Method::GET, "/metrics", None),
            (Method::POST, "/v1/completions", Some(&body)),
            (Method::POST, "/v1/models/m/unload", None),
        ] {
            let r = send(&f.app, request(method, uri, b, key)).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri} {key:?}");
            assert_eq!(error_fields(&r).1.as_deref(), Some("invalid_api_key"));
        }
    }
    assert_eq!(get(&f.app, "/health").await.status, StatusCode::OK);
    let r = send(
        &f.app,
        request(Method::POST, "/v1/completions", Some(&body), Some("sekrit")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        send(
            &f.app,
            request(Method::GET, "/v1/models", None, Some("sekrit"))
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_first_requests_share_one_load() {
    let opts = FakeOptions {
        load_delay: Duration::from_millis(100),
        ..Default::default()
    };
    let f = fixture(&[("m", 10)], opts, |m| m.parallel = 4, |_| {});
    let v = get(&f.app, "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "m");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["status"], "unloaded");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = f.app.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &app,
                "/v1/completions",
                json!({"model": "m", "prompt": "x"}),
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["choices"][0]["text"], "Hello there!");
    }
    assert_eq!(f.loader.stats.loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        get(&f.app, "/v1/models").await.json()["data"][0]["status"],
        "loaded"
    );
}

#[tokio::test]
async fn continuous_batching_and_no_crosstalk() {
    let opts = FakeOptions {
        step_delay: Duration::from_millis(10),
        ..Default::default()
    };
    let f = fixture(&[("m", 10)], opts, |m| m.parallel = 4, |_| {});
    let mut tasks = Vec::new();
    for i in 0..6 {
        let app = f.app.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &app,
                "/v1/completions",
                json!({"model": "m", "prompt": "x".repeat(i + 1), "max_tokens": 12 - i}),
            )
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let v = t.await.unwrap().json();
        assert_eq!(
            v["choices"][0]["text"].as_str().unwrap(),
            &"Hello there!"[..12 - i]
        );
        assert_eq!(v["usage"]["prompt_tokens"], i + 2);
    }
    let live = f.loader.stats.live_sequences.load(Ordering::SeqCst);
    assert!(live <= 4, "{live} sequence states for 4 slots");
    assert_eq!(f.loader.stats.resets.load(Ordering::SeqCst) + live, 6);
    let max = f.loader.stats.max_batch.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "max batch {max}");
}

#[tokio::test]
async fn queue_full_is_429_with_retry_after() {
    let opts = FakeOptions {
        endless: true,
        step_delay: Duration::from_millis(5),
        ..Default::default()
    };
    let f = fixture(
        &[("m", 10)],
        opts,
        |m| m.n_ctx = Some(100_000),
        |s| s.max_queue = 1,
    );
    // Occupy the only slot with an endless stream.
    let busy = f
        .app
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "m", "prompt": "x", "stream": true})),
            None,
        ))
        .await
        .unwrap();
    let mut busy_body = busy.into_body();
    busy_body.frame().await.unwrap().unwrap();
    // The next one waits in the queue...
    let app = f.app.clone();
    let waiting = tokio::spawn(async move {
        post(
            &app,
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "max_tokens": 2}),
        )
        .await
    });
    let app = f.app.clone();
    eventually("one queued request", || {
        let app = app.clone();
        async move {
            metric(
                &get(&app, "/metrics").await.text(),
                "outcore_queue_depth",
                "{model=\"m\"}",
            ) == Some(1.0)
        }
    })
    .await;
    // ...and one more is refused.
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(error_fields(&r).1.as_deref(), Some("queue_full"));
    // Dropping the stream cancels it and frees the slot for the waiting request.
    drop(busy_body);
    let r = waiting.await.unwrap();
    assert_eq!(r.json()["choices"][0]["text"], "He");
    let m = get(&f.app, "/metrics").await.text();
    assert_eq!(
        metric(
            &m,
            "outcore_http_requests_total",
            "{route=\"/v1/completions\",code=\"429\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn disconnect_cancels_generation() {
    let opts = FakeOptions {
        endless: true,
        step_delay: Duration::from_millis(2),
        ..Default::default()
    };
    let f = fixture(&[("m", 10)], opts, |m| m.n_ctx = Some(1_000_000), |_| {});
    let resp = f
        .app
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/chat/completions",
            Some(&json!({"model": "m", "stream": true, "max_tokens": 500000,
            "messages": [{"role": "user", "content": "go"}]})),
            None,
        ))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    let stats = f.state.registry.stats("m").unwrap();
    assert_eq!(stats.active.load(Ordering::SeqCst), 1);
    drop(body);
    eventually("the sequence to be cancelled", || {
        let s = stats.clone();
        async move { s.active.load(Ordering::SeqCst) == 0 }
    })
    .await;
    // The slot is free again.
    let v = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x", "max_tokens": 3}),
    )
    .await
    .json();
    assert_eq!(v["choices"][0]["text"], "Hel");
    // A non-streaming request whose future is dropped is cancelled too.
    let app = f.app.clone();
    let t = tokio::spawn(async move {
        post(
            &app,
            "/v1/completions",
            json!({"model": "m", "prompt": "x"}),
        )
        .await
    });
    // Started: its slot was reset for it (the first request's sequence may still count as active
    // for a moment after its response, so `active == 1` alone can be the wrong one).
    let fake = f.loader.stats.clone();
    eventually("the second sequence to start", || {
        let (s, fake) = (stats.clone(), fake.clone());
        async move {
            s.active.load(Ordering::SeqCst) == 1 && fake.resets.load(Ordering::SeqCst) == 2
        }
    })
    .await;
    t.abort();
    eventually("the second sequence to be cancelled", || {
        let s = stats.clone();
        async move { s.active.load(Ordering::SeqCst) == 0 }
    })
    .await;
    // One slot, so one sequence state, reused each time.
    assert_eq!(f.loader.stats.live_sequences.load(Ordering::SeqCst), 1);
    assert_eq!(f.loader.stats.resets.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_unload_then_reload() {
    let f = fixture(
        &[("m", 10)],
        FakeOptions::default(),
        |m| m.unload_after_idle = Some(Duration::from_millis(300)),
        |_| {},
    );
    assert_eq!(
        post(
            &f.app,
            "/v1/completions",
            json!({"model": "m", "prompt": "x"})
        )
        .await
        .status,
        StatusCode::OK
    );
    let m = get(&f.app, "/metrics").await.text();
    assert_eq!(
        metric(&m, "outcore_model_loaded", "{model=\"m\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_resident_bytes", "{model=\"m\"}"),
        Some(4096.0)
    );
    let app = f.app.clone();
    eventually("idle unload", || {
        let app = app.clone();
        async move {
            metric(
                &get(&app, "/metrics").await.text(),
                "outcore_model_unloads_total",
                "{model=\"m\"}",
            ) == Some(1.0)
        }
    })
    .await;
    let m = get(&f.app, "/metrics").await.text();
    assert_eq!(
        metric(&m, "outcore_model_resident_bytes", "{model=\"m\"}"),
        Some(0.0)
    );
    assert_eq!(
        f.loader.stats.drops.load(Ordering::SeqCst),
        1,
        "the engine was dropped"
    );
    assert_eq!(
        post(
            &f.app,
            "/v1/completions",
            json!({"model": "m", "prompt": "x"})
        )
        .await
        .status,
        StatusCode::OK
    );
    let m = get(&f.app, "/metrics").await.text();
    assert_eq!(
        metric(&m, "outcore_model_loads_total", "{model=\"m\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "outcore_model_unloads_total", "{model=\"m\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "outcore_completion_tokens_total", "{model=\"m\"}"),
        Some(24.0)
    );
    assert_eq!(
        metric(&m, "outcore_prompt_tokens_total", "{model=\"m\"}"),
        Some(4.0)
    );
}

#[tokio::test]
async fn lru_eviction_under_the_budget() {
    let f = fixture(
        &[("a", 600), ("b", 600), ("c", 300)],
        FakeOptions::default(),
        |_| {},
        |s| s.max_ram = Some(1000),
    );
    let run = |model: &'static str| {
        let app = f.app.clone();
        async move {
            let r = post(
                &app,
                "/v1/completions",
                json!({"model": model, "prompt": "x", "max_tokens": 1}),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
    };
    let loaded = || async {
        let v = get(&f.app, "/v1/models").await.json();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == "loaded")
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    run("a").await;
    run("c").await;
    assert_eq!(loaded().await, ["a", "c"]);
    run("b").await; // 600 + 300 + 600 > 1000: evict the least recently used (a), then 300 + 600 fits
    assert_eq!(loaded().await, ["b", "c"]);
    run("c").await;
    run("a").await; // evicts b (LRU), not c
    assert_eq!(loaded().await, ["a", "c"]);
    assert_eq!(f.loader.stats.loads.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn busy_model_is_not_evicted() {
    let opts = FakeOptions {
        endless: true,
        step_delay: Duration::from_millis(2),
        ..Default::default()
    };
    let f = fixture(
        &[("a", 600), ("b", 600)],
        opts,
        |m| m.n_ctx = Some(1_000_000),
        |s| s.max_ram = Some(1000),
    );
    let resp = f
        .app
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "a", "prompt": "x", "stream": true})),
            None,
        ))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    let app = f.app.clone();
    let b = tokio::spawn(async move {
        post(
            &app,
            "/v1/completions",
            json!({"model": "b", "prompt": "x", "max_tokens": 2}),
        )
        .await
    });
    // While a streams, b cannot load.
    for _ in 0..5 {
        body.frame().await.unwrap().unwrap();
        let v = get(&f.app, "/v1/models").await.json();
        assert_eq!(v["data"][0]["status"], "loaded");
        assert_ne!(v["data"][1]["status"], "loaded");
    }
    drop(body);
    let r = b.await.unwrap();
    assert_eq!(r.json()["choices"][0]["text"], "He");
    let v = get(&f.app, "/v1/models").await.json();
    assert_eq!(v["data"][0]["status"], "unloaded");
    assert_eq!(v["data"][1]["status"], "loaded");
}

#[tokio::test]
async fn unload_endpoint() {
    let f = simple();
    let r = send(
        &f.app,
        request(Method::POST, "/v1/models/m/unload", None, None),
    )
    .await;
    assert_eq!(r.json()["unloaded"], false);
    post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x"}),
    )
    .await;
    let r = send(
        &f.app,
        request(Method::POST, "/v1/models/m/unload", None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["unloaded"], true);
    assert_eq!(f.loader.stats.drops.load(Ordering::SeqCst), 1);
    let r = send(
        &f.app,
        request(Method::POST, "/v1/models/zzz/unload", None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&f.app, "/v1/models/m").await.json()["status"],
        "unloaded"
    );
    assert_eq!(
        get(&f.app, "/v1/models/zzz").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn engine_panic_is_a_500_and_the_server_lives_on() {
    let f = simple();
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "PANIC"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{}",
        r.text()
    );
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "fine"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_load_is_503() {
    let f = fixture(
        &[("m", 10)],
        FakeOptions {
            fail_load: true,
            ..Default::default()
        },
        |_| {},
        |_| {},
    );
    let r = post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(error_fields(&r).1.as_deref(), Some("model_load_failed"));
}

#[tokio::test]
async fn health_and_metrics() {
    let f = simple();
    assert_eq!(get(&f.app, "/health").await.json()["status"], "ok");
    post(
        &f.app,
        "/v1/completions",
        json!({"model": "m", "prompt": "x"}),
    )
    .await;
    post(&f.app, "/v1/completions", json!({"model": "m"})).await;
    let r = get(&f.app, "/metrics").await;
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = r.text();
    for family in [
        "outcore_model_loaded",
        "outcore_model_loads_total",
        "outcore_model_resident_bytes",
        "outcore_model_file_backed_bytes",
        "outcore_prompt_tokens_total",
        "outcore_completion_tokens_total",
        "outcore_tokens_per_second",
        "outcore_queue_depth",
        "outcore_http_requests_total",
        "outcore_process_resident_bytes",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{m}"
        );
    }
    assert_eq!(
        metric(
            &m,
            "outcore_http_requests_total",
            "{route=\"/v1/completions\",code=\"200\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "outcore_http_requests_total",
            "{route=\"/v1/completions\",code=\"400\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&m, "outcore_tokens_per_second", "{model=\"m\"}").unwrap() > 0.0);
    assert!(metric(&m, "outcore_process_resident_bytes", "").unwrap() > 0.0);
    drop(f.state);
}

#[tokio::test]
async fn serves_on_an_ephemeral_port_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = simple();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(outcore_server::serve_on(
        listener,
        f.state.clone(),
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));
    let body = json!({"model": "m", "prompt": "x"}).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("Hello there!"), "{out}");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(
        f.loader.stats.drops.load(Ordering::SeqCst),
        1,
        "models are unloaded at shutdown"
    );
}

#[tokio::test]
async fn shutdown_deadline_ends_open_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opts = FakeOptions {
        endless: true,
        step_delay: Duration::from_millis(2),
        ..Default::default()
    };
    let f = fixture(&[("m", 10)], opts, |m| m.n_ctx = Some(1_000_000), |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(outcore_server::serve_on(
        listener,
        f.state.clone(),
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_millis(200),
    ));
    let body = json!({"model": "m", "prompt": "x", "stream": true}).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The stream never ends by itself; shutdown waits for it only until the deadline.
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The worker ended the open generation, so its request lets go of the model.
    let stats = f.loader.stats.clone();
    eventually("the engine to be dropped", || {
        let s = stats.clone();
        async move { s.drops.load(Ordering::SeqCst) == 1 }
    })
    .await;
}
