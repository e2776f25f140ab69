//! Streamed weights give the same tokens as weights in memory: the demo model (GGUF) and the
//! sharded tiny-llama HF directory, run once over plain mmap and again with a `max_ram` small
//! enough that the planner streams several layers (or every layer, at the least budget that can
//! run), checked token for token and logit for logit; also with units cut into several pieces
//! and with a prompt longer than the streaming prefill micro-batch.

mod support;

use std::path::Path;

use outcore_engine::memory::plan::SAFETY_MARGIN;
use outcore_engine::memory::Strategy;
use outcore_engine::model::{model_sizes, LoadOptions, Model, Streaming, STREAM_UBATCH};
use outcore_engine::residency::{self, PIECE_MIN};
use outcore_engine::sampler::argmax;

const N_CTX: usize = 512;

fn opts(streaming: Streaming, max_ram: Option<u64>, piece_min: u64) -> LoadOptions {
    LoadOptions {
        streaming,
        max_ram,
        n_ctx_hint: N_CTX,
        n_threads: 2,
        stream_piece_min: piece_min,
        ..Default::default()
    }
}

fn load(path: &Path, o: &LoadOptions) -> Model {
    Model::load(path, o).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Greedy decoding: the prompt's last logits, then `n` tokens with the logits of each step.
fn greedy(model: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut state = model.new_state(N_CTX);
    let mut logits = model.forward(&mut state, prompt).unwrap();
    let (mut toks, mut all) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = argmax(&logits);
        toks.push(t);
        all.push(logits);
        logits = model.forward(&mut state, &[t]).unwrap();
    }
    (toks, all)
}

/// The `max_ram` that leaves room for KV cache, scratch (streaming micro-batches), margin, the hot
/// non-layer tensors, the first `resident` layers and `ring` O_DIRECT streaming buffers of the
/// largest piece.
fn max_ram_for(model: &Model, resident: usize, ring: u64, piece_min: u64) -> u64 {
    let s = model_sizes(
        model.source(),
        &model.config,
        &model.weights,
        &opts(Streaming::Force, None, piece_min),
        N_CTX,
        STREAM_UBATCH,
    );
    assert!(s.max_piece_bytes > 0 && s.max_piece_bytes < *s.layer_bytes.iter().max().unwrap());
    s.kv_bytes_per_token * N_CTX as u64
        + s.scratch_bytes
        + SAFETY_MARGIN
        + s.hot_non_layer()
        + s.layer_bytes[..resident].iter().sum::<u64>()
        + residency::window_bytes(s.max_piece_bytes, ring as usize, true)
}

fn streamed_layers(model: &Model) -> std::ops::Range<usize> {
    match &model.plan().strategy {
        Strategy::Stream {
            streamed_layers, ..
        } => streamed_layers.clone(),
        other => panic!(
            "expected a streaming plan, got {other:?}: {}",
            model.plan().summary()
        ),
    }
}

/// Runs `path` in memory and streamed with `k` resident layers and a ring of `ring` buffers (in
/// pieces of at least `piece_min` bytes), and checks tokens and logits agree exactly; returns the
/// streamed model for more checks.
fn check_same(
    path: &Path,
    prompt: &[u32],
    n: usize,
    resident: usize,
    ring: u64,
    piece_min: u64,
) -> Model {
    let plain = load(path, &opts(Streaming::Off, None, piece_min));
    assert!(!plain.residency().is_some_and(|r| r.is_streaming()));
    let want = greedy(&plain, prompt, n);
    let cap = max_ram_for(&plain, resident, ring, piece_min);
    let n_layer = plain.config.n_layer;
    drop(plain);

    let streamed = load(path, &opts(Streaming::Force, Some(cap), piece_min));
    assert_eq!(
        streamed_layers(&streamed),
        resident..n_layer,
        "{}",
        streamed.plan().summary()
    );
    assert_eq!(streamed.plan().window_bytes / ring, {
        let s = model_sizes(
            streamed.source(),
            &streamed.config,
            &streamed.weights,
            &opts(Streaming::Force, None, piece_min),
            N_CTX,
            STREAM_UBATCH,
        );
        s.max_piece_bytes
    });
    let r = streamed.residency().expect("a residency manager");
    assert!(r.is_streaming());
    let got = greedy(&streamed, prompt, n);
    assert_eq!(got.0, want.0, "greedy tokens differ when streaming");
    assert!(got.1 == want.1, "logits differ when streaming");
    let st = r.stats();
    // Every pass read every streamed layer (the prefetcher may be ahead by the ring).
    assert!(
        st.bytes_read >= r.streamed_bytes() * (n as u64 + 1),
        "{st:?}"
    );
    streamed
}

#[test]
fn demo_model_streams_half_its_layers_with_the_same_tokens() {
    let path = support::demo_model();
    let m = check_same(&path, &[1, 504, 3458, 282, 4649, 314], 12, 12, 2, PIECE_MIN);
    let r = m.residency().unwrap();
    assert!(r.resident_bytes() > 0 && r.streamed_bytes() > 0);
    // Auto (no --load stream) picks streaming by itself under the same cap.
    let cap = m.plan().max_ram;
    drop(m);
    let auto = load(&path, &opts(Streaming::Auto, cap, PIECE_MIN));
    assert_eq!(streamed_layers(&auto), 12..auto.config.n_layer);
    // Room for one more half layer: layer 12's attention block stays resident too, its
    // feed-forward block streams, and the tokens are the same.
    let (att, ffn) = (
        residency::attention_unit(12),
        residency::feed_forward_unit(12),
    );
    let extra = auto.residency().unwrap().units[att].bytes();
    let streamed_before = auto.residency().unwrap().streamed_bytes();
    drop(auto);
    let half = load(
        &path,
        &opts(Streaming::Force, cap.map(|c| c + extra), PIECE_MIN),
    );
    let r = half.residency().unwrap();
    assert!(
        r.is_resident(att) && !r.is_resident(ffn),
        "{}",
        half.plan().summary()
    );
    assert_eq!(r.streamed_bytes(), streamed_before - extra);
    assert_eq!(half.plan().streamed_bytes, r.streamed_bytes());
    let prompt = [1, 504, 3458, 282];
    let got = greedy(&half, &prompt, 6).0;
    drop(half);
    let plain = load(&path, &opts(Streaming::Off, None, PIECE_MIN));
    assert_eq!(got, greedy(&plain, &prompt, 6).0);
}

#[test]
fn demo_model_streams_in_pieces_and_long_prompts_in_micro_batches() {
    // Pieces of one tensor or so (the smallest cap), so every unit comes in several pieces;
    // and a prompt of 300 tokens: streamed, it is prefilled in micro-batches of STREAM_UBATCH.
    let path = support::demo_model();
    let prompt: Vec<u32> = (0..300u32).map(|i| 1 + (i * 7919) % 40000).collect();
    assert!(prompt.len() > STREAM_UBATCH);
    let m = check_same(&path, &prompt, 6, 10, 2, 0);
    let r = m.residency().unwrap();
    let n_layer = m.config.n_layer;
    for l in 10..n_layer {
        for u in [
            residency::attention_unit(l),
            residency::feed_forward_unit(l),
        ] {
            assert!(r.units[u].pieces.len() > 1, "{}", r.units[u].name);
            assert_eq!(
                r.units[u]
                    .pieces
                    .iter()
                    .map(|p| residency::parts_bytes(p))
                    .sum::<u64>(),
                r.units[u].bytes()
            );
        }
    }
}

#[test]
fn demo_model_runs_at_the_least_budget() {
    // One layer in flight, nothing else resident: the smallest cap the planner accepts.
    let path = support::demo_model();
    let m = check_same(&path, &[1, 504, 3458, 282], 6, 0, 1, PIECE_MIN);
    assert!(m.plan().error.is_none(), "{}", m.plan().summary());
    assert_eq!(m.plan().limit, m.plan().min_required);
}

#[test]
fn sharded_safetensors_stream_like_gguf() {
    let dir = support::fixtures().join("tiny-llama");
    // Three layers: with two ring buffers nothing else fits, so every layer streams.
    let m = check_same(&dir, &[1, 17, 42, 99, 7], 10, 0, 2, PIECE_MIN);
    assert!(m.source().paths().len() > 1, "the fixture is sharded");
}

#[test]
fn plain_mmap_and_an_ample_budget_do_not_stream() {
    let path = support::demo_model();
    let m = load(&path, &opts(Streaming::Off, Some(1), PIECE_MIN));
    assert!(m.residency().is_none());
    assert_eq!(m.plan().strategy, Strategy::Mmap);
    // Forced streaming with room for everything keeps every layer resident.
    let m = load(&path, &opts(Streaming::Force, Some(64 << 30), PIECE_MIN));
    assert!(!m.residency().is_some_and(|r| r.is_streaming()));
    assert!(streamed_layers(&m).is_empty());
}
