//! Element-wise and row ops of the llama forward pass, with ggml's float operation order
//! (`ggml-cpu/ops.cpp`, `ggml-cpu/vec.cpp`).

use half::f16;

use crate::{check_len, KernelError};

/// ggml `rms_norm` fused with the weight `mul`: the sum of squares in f64, `mean` in f32,
/// `scale = 1/sqrtf(mean + eps)`, then `out[i] = x[i] * scale * w[i]`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) -> Result<(), KernelError> {
    check_len("rmsnorm weight", x.len(), w.len())?;
    check_len("rmsnorm output", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let mut sum = 0.0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * w;
    }
    Ok(())
}

/// In-place [`rmsnorm`].
pub fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) -> Result<(), KernelError> {
    check_len("rmsnorm weight", x.len(), w.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let mut sum = 0.0f64;
    for &v in x.iter() {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(w) {
        *v = *v * scale * w;
    }
    Ok(())
}

/// In-place softmax like `ggml_vec_soft_max_f32`: subtract the max, `expf`, sum in f64,
/// multiply by `1/sum` (computed in f64, applied in f32, as ggml's `soft_max` op).
/// `-inf` entries (masked) become 0. An empty row is left alone.
pub fn softmax(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        let e = (*v - max).exp();
        sum += e as f64;
        *v = e;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// ggml `silu`: `x / (1 + expf(-x))`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// In-place SiLU over a row.
pub fn silu_inplace(x: &mut [f32]) {
    for v in x {
        *v = silu(*v);
    }
}

/// SwiGLU of the llama FFN: `gate[i] = silu(gate[i]) * up[i]` (ggml's `swiglu`).
pub fn swiglu_inplace(gate: &mut [f32], up: &[f32]) -> Result<(), KernelError> {
    check_len("swiglu up", gate.len(), up.len())?;
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
    Ok(())
}

/// f32 -> f16 with round-to-nearest-even (ggml `ggml_cpu_fp32_to_fp16`).
pub fn f32_to_f16_row(x: &[f32], out: &mut [f16]) -> Result<(), KernelError> {
    check_len("f16 output", x.len(), out.len())?;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v);
    }
    Ok(())
}

/// f16 -> f32 (exact).
pub fn f16_to_f32_row(x: &[f16], out: &mut [f32]) -> Result<(), KernelError> {
    check_len("f32 output", x.len(), out.len())?;
    for (o, v) in out.iter_mut().zip(x) {
        *o = v.to_f32();
    }
    Ok(())
}

/// Which element pairs RoPE rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// llama / `GGML_ROPE_TYPE_NORMAL`: pairs (i, i+1).
    Normal,
    /// NeoX / qwen2 / `GGML_ROPE_TYPE_NEOX`: pairs (i, i + n_dims/2).
    Neox,
}

/// RoPE parameters (no YaRN: `ext_factor = 0`, `attn_factor = 1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig {
    /// Rotated dims per head (`rope.dimension_count`, usually the head dim).
    pub n_dims: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub mode: RopeMode,
}

/// cos/sin for one position like `ggml_rope_cache_init`: `theta_scale = powf(base, -2/n_dims)`,
/// `theta` starts at `pos` and is multiplied by `theta_scale` per pair, then scaled by
/// `freq_scale`. `cache` gets `n_dims/2` (cos, sin) pairs.
pub fn rope_cache(cfg: &RopeConfig, pos: usize, cache: &mut Vec<(f32, f32)>) {
    cache.clear();
    let theta_scale = cfg.freq_base.powf(-2.0f32 / cfg.n_dims as f32);
    let mut theta = pos as f32;
    for _ in 0..cfg.n_dims / 2 {
        let t = cfg.freq_scale * theta;
        cache.push((t.cos(), t.sin()));
        theta *= theta_scale;
    }
}

/// Rotates every head of `x` (`n_heads * head_dim` values of one token) in place with a
/// [`rope_cache`] for that token's position. Dims past `n_dims` are left as they are.
pub fn rope_apply(
    x: &mut [f32],
    head_dim: usize,
    cfg: &RopeConfig,
    cache: &[(f32, f32)],
) -> Result<(), KernelError> {
    if head_dim == 0 || !x.len().is_multiple_of(head_dim) {
        return Err(KernelError::Length {
            what: "rope input (multiple of head_dim)",
            expected: head_dim,
            got: x.len(),
        });
    }
    if cfg.n_dims > head_dim || !cfg.n_dims.is_multiple_of(2) {
        return Err(KernelError::Length {
            what: "rope n_dims (even, <= head_dim)",
            expected: head_dim,
            got: cfg.n_dims,
        });
    }
    check_len("rope cache", cfg.n_dims / 2, cache.len())?;
    let half = cfg.n_dims / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cache.iter().enumerate() {
            let (a, b) = match cfg.mode {
                RopeMode::Normal => (2 * i, 2 * i + 1),
                RopeMode::Neox => (i, i + half),
            };
            let x0 = head[a];
            let x1 = head[b];
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
    Ok(())
}

/// [`rope_cache`] + [`rope_apply`] for one token at `pos`.
pub fn rope(
    x: &mut [f32],
    head_dim: usize,
    pos: usize,
    cfg: &RopeConfig,
) -> Result<(), KernelError> {
    let mut cache = Vec::with_capacity(cfg.n_dims / 2);
    rope_cache(cfg, pos, &mut cache);
    rope_apply(x, head_dim, cfg, &cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let w = [1.0f32; 4];
        let mut out = [0f32; 4];
        rmsnorm(&x, &w, 0.0, &mut out).unwrap();
        let ms: f32 = out.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((ms - 1.0).abs() < 1e-6);
        let mut y = x;
        rmsnorm_inplace(&mut y, &w, 0.0).unwrap();
        assert_eq!(y, out);
        assert!(rmsnorm(&x, &w[..3], 0.0, &mut out).is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_masks() {
        let mut x = [1.0f32, 2.0, f32::NEG_INFINITY, 3.0];
        softmax(&mut x);
        assert_eq!(x[2], 0.0);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] > x[1] && x[1] > x[0]);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!(silu(-100.0).abs() < 1e-30);
    }

    #[test]
    fn rope_rotates_pairs_and_preserves_norm() {
        let cfg = RopeConfig {
            n_dims: 8,
            freq_base: 10000.0,
            freq_scale: 1.0,
            mode: RopeMode::Normal,
        };
        let x0: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.7).collect();
        let mut x = x0.clone();
        rope(&mut x, 8, 0, &cfg).unwrap();
        assert_eq!(x, x0, "position 0 is the identity");
        rope(&mut x, 8, 5, &cfg).unwrap();
        // pair (0,1) of head 0 rotated by theta = 5.
        let (c, s) = (5f32.cos(), 5f32.sin());
        assert!((x[0] - (x0[0] * c - x0[1] * s)).abs() < 1e-6);
        let n0: f32 = x0.iter().map(|v| v * v).sum();
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
        // NeoX pairs (i, i + 4): the second pair uses theta = 5 * base^(-2/8).
        let cfg = RopeConfig {
            mode: RopeMode::Neox,
            ..cfg
        };
        let mut y = x0.clone();
        rope(&mut y, 8, 5, &cfg).unwrap();
        let t = 5.0 * 10000f32.powf(-2.0 / 8.0);
        assert!((y[1] - (x0[1] * t.cos() - x0[5] * t.sin())).abs() < 1e-6);
        assert!(rope(&mut y, 7, 5, &cfg).is_err());
    }
}
