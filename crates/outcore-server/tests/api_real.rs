//! The server with the real engine and the demo model (SmolLM2-135M Q4_1): greedy output equal
//! to the engine's own greedy decode (and to llama.cpp's where the engine agrees with it), chat,
//! streaming, usage counts, batching, bad inputs, auth.
#![cfg(feature = "engine")]

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use outcore_engine::model::{LoadOptions, Model, Numerics};
use outcore_engine::sampler::argmax;
use outcore_server::engine::outcore::OutcoreLoader;
use outcore_server::{app, AppState, ModelConfig, ServerConfig};
use serde_json::{json, Value};

fn server(parallel: usize, n_ctx: usize, tweak: impl Fn(&mut ServerConfig)) -> Router {
    let mut m = ModelConfig::new("smol", demo_model());
    m.parallel = parallel;
    m.n_ctx = Some(n_ctx);
    let mut cfg = ServerConfig::default();
    cfg.models.insert("smol".into(), Arc::new(m));
    tweak(&mut cfg);
    cfg.validate().unwrap();
    app(AppState::new(&cfg, Arc::new(OutcoreLoader)).unwrap())
}

/// The engine's own greedy continuation (prefill, then one `forward` per token), as text.
/// The server's default numerics (`fast`), for the engine-side references.
fn fast() -> LoadOptions {
    LoadOptions {
        numerics: Numerics::Fast,
        ..LoadOptions::default()
    }
}

fn engine_greedy(prompt: &[u32], n: usize) -> String {
    let model = Model::load(&demo_model(), &fast()).unwrap();
    let mut state = model.new_state(256);
    let mut logits = model.forward(&mut state, prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = argmax(&logits);
        out.push(t);
        logits = model.forward(&mut state, &[t]).unwrap();
    }
    String::from_utf8_lossy(&model.tokenizer().unwrap().detokenize(&out, false)).into_owned()
}

async fn complete(app: &Router, body: Value) -> Value {
    let r = post(app, "/v1/completions", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn greedy_completions_match_the_engine() {
    let app = server(1, 256, |_| {});
    let rows = greedy_rows();
    let row = &rows[0];
    let want = engine_greedy(&row.prompt_ids, 24);
    let v = complete(
        &app,
        json!({"model": "smol", "prompt": row.prompt, "max_tokens": 24, "temperature": 0}),
    )
    .await;
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text, want, "prompt {:?}", row.prompt);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], row.prompt_ids.len());
    assert_eq!(v["usage"]["completion_tokens"], 24);
    // The same prompt as token ids.
    let v = complete(
        &app,
        json!({"model": "smol", "prompt": row.prompt_ids, "max_tokens": 24, "temperature": 0}),
    )
    .await;
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text, want);
    // llama.cpp agrees (at least on the start).
    assert!(
        text.starts_with(" Paris.") && rows[0].text.starts_with(" Paris."),
        "{text:?}"
    );
}

#[tokio::test]
async fn greedy_chat_renders_like_llama_cpp() {
    let app = server(1, 256, |_| {});
    let rows = greedy_rows();
    let row = rows.iter().find(|r| r.chat_user_message.is_some()).unwrap();
    let body = json!({"model": "smol", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": row.chat_user_message}]});
    let r = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    // The rendered prompt has llama.cpp's token count, and the answer is the engine's greedy one
    // for llama.cpp's prompt ids.
    assert_eq!(v["usage"]["prompt_tokens"], row.prompt_ids.len());
    assert_eq!(
        v["choices"][0]["message"]["content"],
        engine_greedy(&row.prompt_ids, 16).as_str()
    );
    assert_eq!(v["usage"]["total_tokens"], row.prompt_ids.len() + 16);
}

#[tokio::test]
async fn streaming_equals_non_streaming() {
    let app = server(1, 256, |_| {});
    let msgs = json!([{"role": "user", "content": "Write a haiku about the ocean."}]);
    let v = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "smol", "messages": msgs, "max_tokens": 12, "temperature": 0}),
    )
    .await
    .json();
    let whole = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "smol", "messages": msgs, "max_tokens": 12, "temperature": 0, "stream": true,
            "stream_options": {"include_usage": true}}),
    )
    .await;
    let data = r.sse();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|c| c["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, whole);
    // The second request found the first one's prompt in the slot: the same text from a KV
    // cache it did not compute again (all but the last prompt token).
    let (u1, u2) = (&v["usage"], &chunks.last().unwrap()["usage"]);
    assert_eq!(u1["prompt_tokens"], u2["prompt_tokens"]);
    assert_eq!(u1["completion_tokens"], u2["completion_tokens"]);
    assert_eq!(u1["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        u2["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            + 1,
        u2["prompt_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn stop_strings_and_seeded_sampling() {
    let app = server(1, 256, |_| {});
    let v = complete(
        &app,
        json!({"model": "smol", "prompt": "1, 2, 3, 4, 5,", "stop": [","], "temperature": 0}),
    )
    .await;
    assert_eq!(v["choices"][0]["text"], " 6");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let body = json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.9, "seed": 42,
        "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1});
    let a = complete(&app, body.clone()).await;
    let b = complete(&app, body).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
}

/// Sequences decoded together in one batch give the same tokens as alone.
#[tokio::test]
async fn batched_sequences_match_single_decoding() {
    let app = server(3, 256, |_| {});
    let rows = greedy_rows();
    let mut tasks = Vec::new();
    for i in [0usize, 1, 3] {
        let app = app.clone();
        let prompt = rows[i].prompt.clone();
        tasks.push(tokio::spawn(async move {
            complete(
                &app,
                json!({"model": "smol", "prompt": prompt, "max_tokens": 16, "temperature": 0}),
            )
            .await
        }));
    }
    for (t, i) in tasks.into_iter().zip([0usize, 1, 3]) {
        let v = t.await.unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 16);
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert_eq!(text, engine_greedy(&rows[i].prompt_ids, 16), "row {i}");
    }
}

/// With four requests in flight on four slots, every sequence advances in one batched forward
/// step per token (`Model::forward_mixed`): /metrics counts steps by batch size.
#[tokio::test]
async fn four_streams_decode_in_one_batched_step() {
    let app = server(4, 256, |_| {});
    let rows = greedy_rows();
    let mut tasks = Vec::new();
    for i in [0usize, 2, 5, 6] {
        let app = app.clone();
        let prompt = rows[i].prompt.clone();
        tasks.push(tokio::spawn(async move {
            complete(
                &app,
                json!({"model": "smol", "prompt": prompt, "max_tokens": 32, "temperature": 0}),
            )
            .await
        }));
    }
    let mut generated = 0.0;
    for t in tasks {
        generated += t.await.unwrap()["usage"]["completion_tokens"]
            .as_f64()
            .unwrap();
    }
    let m = get(&app, "/metrics").await.text();
    let steps = metric(&m, "outcore_decode_steps_total", "{model=\"smol\"}").unwrap();
    let tokens = metric(&m, "outcore_decode_tokens_total", "{model=\"smol\"}").unwrap();
    // Every token is sampled from a batched step (the first from the step that fed the last
    // prompt chunk; a step that ends a sequence with EOS counts a token the usage does not).
    assert!(
        tokens >= generated - 4.0,
        "{tokens} decoded, {generated} generated"
    );
    let four = metric(
        &m,
        "outcore_decode_batch_steps_total",
        "{model=\"smol\",batch=\"4\"}",
    )
    .unwrap_or(0.0);
    assert!(
        four > 0.0,
        "no step decoded all four sequences together:\n{m}"
    );
    assert!(
        steps < tokens,
        "{steps} steps for {tokens} tokens: sequences were not batched"
    );
    println!("decode: {tokens} tokens in {steps} steps ({four} steps of 4)");
}

#[tokio::test]
async fn bad_inputs_with_the_real_tokenizer() {
    let app = server(1, 64, |c| c.api_key = Some("k".into()));
    let long = "word ".repeat(200);
    let r = send(
        &app,
        request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "smol", "prompt": long})),
            Some("k"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_fields(&r),
        (
            Some("prompt".into()),
            Some("context_length_exceeded".into())
        )
    );
    let body =
        json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65});
    let r = send(
        &app,
        request(Method::POST, "/v1/chat/completions", Some(&body), Some("k")),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&r).0.as_deref(), Some("max_tokens"));
    let r = send(
        &app,
        request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "smol", "prompt": [49152]})),
            Some("k"),
        ),
    )
    .await;
    assert_eq!(error_fields(&r).0.as_deref(), Some("prompt"));
    let r = send(
        &app,
        request(
            Method::POST,
            "/v1/completions",
            Some(&json!({"model": "smol", "prompt": "x"})),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A prompt that leaves little room finishes with "length" at the context's end.
    let body = json!({"model": "smol", "prompt": "word ".repeat(58), "temperature": 0});
    let r = send(
        &app,
        request(Method::POST, "/v1/completions", Some(&body), Some("k")),
    )
    .await;
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 64);
}

/// A long prompt admitted while another request decodes is fed in chunks inside the running
/// stream's steps (no stall: /metrics counts the mixed steps) and both answers equal the
/// engine's own greedy decoding of each alone.
#[tokio::test]
async fn prompt_admitted_mid_decode_joins_the_step_and_matches_alone() {
    let app = server(2, 512, |_| {});
    let rows = greedy_rows();
    let long: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.prompt_ids.iter().copied())
        .cycle()
        .take(300)
        .collect();
    let want_long = {
        let model = Model::load(&demo_model(), &fast()).unwrap();
        let mut state = model.new_state(512);
        let mut logits = model.forward(&mut state, &long).unwrap();
        let mut out = Vec::new();
        for _ in 0..16 {
            let t = argmax(&logits);
            out.push(t);
            logits = model.forward(&mut state, &[t]).unwrap();
        }
        String::from_utf8_lossy(&model.tokenizer().unwrap().detokenize(&out, false)).into_owned()
    };
    let first = {
        let app = app.clone();
        let prompt = rows[0].prompt.clone();
        tokio::spawn(async move {
            complete(
                &app,
                json!({"model": "smol", "prompt": prompt, "max_tokens": 64, "temperature": 0}),
            )
            .await
        })
    };
    eventually("the first request decodes", || async {
        let m = get(&app, "/metrics").await.text();
        metric(&m, "outcore_decode_tokens_total", "{model=\"smol\"}").unwrap_or(0.0) >= 2.0
    })
    .await;
    let v = complete(
        &app,
        json!({"model": "smol", "prompt": long, "max_tokens": 16, "temperature": 0}),
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 300);
    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), want_long);
    let a = first.await.unwrap();
    assert_eq!(
        a["choices"][0]["text"].as_str().unwrap(),
        engine_greedy(&rows[0].prompt_ids, 64)
    );
    let m = get(&app, "/metrics").await.text();
    let mixed = metric(&m, "outcore_mixed_steps_total", "{model=\"smol\"}").unwrap();
    assert!(
        mixed >= 2.0,
        "{mixed} mixed steps for a 300-token prompt:\n{m}"
    );
}
