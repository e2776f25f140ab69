//! Calibration for activation-aware low-rank compression: runs outcore's own forward pass over a
//! text and accumulates, for chosen layers, each linear layer's input covariance X^T X (f64).
//!
//! Layers are observed a group at a time (one pass over the text per group), so the covariances
//! held at once stay within a memory budget however large the model is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

pub use outcore_engine::model::llama::LinearInput;
use outcore_engine::model::llama::Observer;
use outcore_engine::model::{LoadOptions, Model};

use crate::error::{ConvertError, Result};
use crate::lowrank::Covariance;

/// The input a GGUF weight of a llama layer reads (`blk.N.ffn_up.weight` -> `Ffn`).
pub fn input_of(name: &str) -> Option<LinearInput> {
    let role = name.split('.').nth(2)?;
    Some(match role {
        "attn_q" | "attn_k" | "attn_v" => LinearInput::Attn,
        "attn_output" => LinearInput::AttnOut,
        "ffn_gate" | "ffn_up" => LinearInput::Ffn,
        "ffn_down" => LinearInput::FfnDown,
        _ => return None,
    })
}

/// A loaded model and its calibration tokens.
pub struct Calibrator {
    model: Model,
    tokens: Vec<u32>,
    /// Tokens per forward chunk (a fresh context each).
    pub chunk: usize,
}

struct Collect<'a> {
    layers: &'a [usize],
    covs: Mutex<HashMap<(usize, LinearInput), Covariance>>,
}

impl Observer for Collect<'_> {
    fn observe(&self, layer: usize, input: LinearInput, x: &[f32]) {
        if !self.layers.contains(&layer) {
            return;
        }
        let mut covs = self.covs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = covs.get_mut(&(layer, input)) {
            c.add(x);
        }
    }
}

fn engine_err(path: &Path, e: outcore_engine::EngineError) -> ConvertError {
    ConvertError::BadTensor {
        tensor: path.display().to_string(),
        problem: format!("calibration: {e}"),
    }
}

impl Calibrator {
    /// Loads `model` and tokenizes `text` (at most `max_tokens` tokens).
    pub fn new(model: &Path, text: &str, max_tokens: usize, chunk: usize) -> Result<Calibrator> {
        let model_obj =
            Model::load(model, &LoadOptions::default()).map_err(|e| engine_err(model, e))?;
        let tok = model_obj.tokenizer().ok_or_else(|| ConvertError::Missing {
            path: model.to_path_buf(),
            what: "a tokenizer in the model (needed to read the calibration text)",
        })?;
        let mut tokens = tok.encode(text, false, false);
        tokens.truncate(max_tokens);
        if tokens.is_empty() {
            return Err(ConvertError::Missing {
                path: model.to_path_buf(),
                what: "calibration tokens (the text is empty)",
            });
        }
        Ok(Calibrator {
            model: model_obj,
            tokens,
            chunk: chunk.clamp(1, 512),
        })
    }

    /// Loads `model` and calibrates on given token ids (no tokenizer needed).
    pub fn from_tokens(model: &Path, tokens: Vec<u32>, chunk: usize) -> Result<Calibrator> {
        let model_obj =
            Model::load(model, &LoadOptions::default()).map_err(|e| engine_err(model, e))?;
        let nv = model_obj.config.n_vocab;
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= nv) {
            return Err(ConvertError::BadTensor {
                tensor: model.display().to_string(),
                problem: format!("calibration token id {bad} is outside the vocabulary ({nv})"),
            });
        }
        if tokens.is_empty() {
            return Err(ConvertError::Missing {
                path: model.to_path_buf(),
                what: "calibration tokens (none given)",
            });
        }
        Ok(Calibrator {
            model: model_obj,
            tokens,
            chunk: chunk.clamp(1, 512),
        })
    }

    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Input widths of each observed input kind.
    pub fn width(&self, input: LinearInput) -> usize {
        let c = &self.model.config;
        match input {
            LinearInput::Attn | LinearInput::Ffn => c.n_embd,
            LinearInput::AttnOut => c.q_dim(),
            LinearInput::FfnDown => c.n_ff,
        }
    }

    /// Bytes of the four covariances of one layer.
    pub fn layer_bytes(&self) -> u64 {
        [
            LinearInput::Attn,
            LinearInput::AttnOut,
            LinearInput::Ffn,
            LinearInput::FfnDown,
        ]
        .iter()
        .map(|&i| 8 * (self.width(i) as u64).pow(2))
        .sum()
    }

    /// One pass over the text, accumulating the covariances of `layers`.
    pub fn covariances(
        &self,
        layers: &[usize],
    ) -> Result<HashMap<(usize, LinearInput), Covariance>> {
        let mut covs = HashMap::new();
        for &l in layers {
            for i in [
                LinearInput::Attn,
                LinearInput::AttnOut,
                LinearInput::Ffn,
                LinearInput::FfnDown,
            ] {
                covs.insert((l, i), Covariance::new(self.width(i)));
            }
        }
        let obs = Collect {
            layers,
            covs: Mutex::new(covs),
        };
        for chunk in self.tokens.chunks(self.chunk) {
            let mut st = self.model.new_state(chunk.len());
            self.model
                .forward_observed(&mut st, chunk, &obs)
                .map_err(|e| engine_err(self.model.path(), e))?;
        }
        Ok(obs.covs.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}
