//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

pub fn request(
    method: Method,
    uri: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .unwrap()
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn post(app: &Router, uri: &str, body: Value) -> Reply {
    send(app, request(Method::POST, uri, Some(&body), None)).await
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, request(Method::GET, uri, None, None)).await
}

/// A metric's value for `labels` (e.g. `{model="a"}`), from the Prometheus text.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `cond` every 20 ms for up to 20 s (a bound against hangs, not a timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Checks the OpenAI error shape and returns (param, code).
pub fn error_fields(r: &Reply) -> (Option<String>, Option<String>) {
    let v = r.json();
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {v}"
    );
    assert!(e["type"].is_string(), "no type: {v}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "param/code keys missing: {v}"
    );
    (
        e["param"].as_str().map(str::to_string),
        e["code"].as_str().map(str::to_string),
    )
}

/// The demo model (env OUTCORE_DEMO_MODEL, else the default download path).
pub fn demo_model() -> std::path::PathBuf {
    let path = std::env::var_os("OUTCORE_DEMO_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home).join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "demo model {} is missing: run scripts/fetch-demo-model.sh",
        path.display()
    );
    path
}

/// One row of `shared/fixtures/smollm2-135m-q4_1/greedy.jsonl` (llama.cpp's greedy continuations).
pub struct Greedy {
    pub prompt: String,
    pub chat_user_message: Option<String>,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub text: String,
}

pub fn fixtures_dir() -> std::path::PathBuf {
    match std::env::var_os("OUTCORE_FIXTURES") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

pub fn greedy_rows() -> Vec<Greedy> {
    let path = fixtures_dir().join("smollm2-135m-q4_1/greedy.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let ids = |k: &str| {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            };
            Greedy {
                prompt: v["prompt"].as_str().unwrap().to_string(),
                chat_user_message: v["chat_user_message"].as_str().map(str::to_string),
                prompt_ids: ids("prompt_ids"),
                greedy_ids: ids("greedy_ids"),
                text: v["text"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}
