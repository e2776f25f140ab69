//! Sampling: greedy, or the chain repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw,
//! in llama.cpp's order, with a seeded RNG so a fixed seed gives identical output run after run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below) means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
    cand: Vec<(u32, f32)>,
    weights: Vec<f64>,
}

/// Index of the largest value, lowest index on ties (llama.cpp's greedy).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            cand: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// Picks the next token from `logits` given the tokens so far (`history`, for the penalty).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l <= 0.0 {
                            *l * p.repeat_penalty
                        } else {
                            *l / p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.is_greedy() {
            return argmax(logits);
        }
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (i as u32, v)),
        );
        if cand.is_empty() {
            return argmax(logits);
        }
        // Only a head of the candidates sorted by logit can survive the chain; find how long a
        // head is needed and sort only that (a full sort of a 49k vocabulary per token cost more
        // than the demo model's whole decode step in the server's batched steps).
        let n = cand.len();
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let (head, top_p_norm) = if p.top_k > 0 && p.top_k < n {
            (p.top_k, None)
        } else {
            head_without_top_k(cand, p.top_p, p.min_p)
        };
        let truncates = head < n || p.top_p < 1.0 || p.min_p > 0.0;
        if !truncates {
            // Nothing is cut (the OpenAI defaults): draw from the whole distribution in index
            // order, no sort; still one uniform draw per token from the seeded stream.
            return self.draw(None);
        }
        if head < n {
            cand.select_nth_unstable_by(head - 1, by_logit);
            cand.truncate(head);
        }
        cand.sort_unstable_by(by_logit);
        // Probabilities at temperature 1 for top-p and min-p, as llama.cpp's samplers see them
        // (summed in f64: a cumulative f32 sum over tens of thousands of tail tokens drifts);
        // `norm` is the sum of exp(logit - max) over the set they are normalised over when that
        // set is larger than `c` (top-p without top-k: the whole vocabulary).
        let probs = |c: &[(u32, f32)], norm: Option<f64>| -> Vec<f64> {
            let max = c[0].1;
            let e: Vec<f64> = c.iter().map(|x| f64::from((x.1 - max).exp())).collect();
            let s: f64 = norm.unwrap_or_else(|| e.iter().sum());
            e.into_iter().map(|x| x / s).collect()
        };
        if p.top_p < 1.0 {
            let pr = probs(cand, top_p_norm);
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, q) in pr.iter().enumerate() {
                cum += q;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let pr = probs(cand, None);
            let thr = pr[0] * f64::from(p.min_p);
            let keep = pr.iter().take_while(|&&q| q >= thr).count();
            cand.truncate(keep.max(1));
        }
        let max = cand[0].1;
        self.draw(Some(max))
    }

    /// Draws from the candidates at the temperature (`max`: their largest logit, when known).
    fn draw(&mut self, max: Option<f32>) -> u32 {
        let cand = &self.cand;
        let t = self.params.temperature;
        let max = max.unwrap_or_else(|| cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max));
        let w = &mut self.weights;
        w.clear();
        w.extend(cand.iter().map(|x| f64::from(((x.1 - max) / t).exp())));
        let total: f64 = w.iter().sum();
        let mut r = self.rng.gen::<f64>() * total;
        for (i, wi) in w.iter().enumerate() {
            if r < *wi {
                return cand[i].0;
            }
            r -= wi;
        }
        cand[cand.len() - 1].0
    }
}

/// Without top-k: how many of the highest-logit candidates can survive top-p and min-p (a
/// little more than needed, never less), and the top-p normaliser over all candidates. Grows a
/// selected head until it holds `top_p` of the probability mass; min-p bounds it by a logit
/// threshold. Leaves `cand` permuted.
fn head_without_top_k(cand: &mut [(u32, f32)], top_p: f32, min_p: f32) -> (usize, Option<f64>) {
    let n = cand.len();
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut head = n;
    if min_p > 0.0 {
        // min-p keeps tokens with exp(l - max) >= min_p (relative to the top token); the slack
        // covers rounding in the normalised comparison it really makes.
        let floor = min_p * 0.999;
        head = cand
            .iter()
            .filter(|c| (c.1 - max).exp() >= floor)
            .count()
            .max(1);
    }
    if top_p >= 1.0 {
        return (head, None);
    }
    let total: f64 = cand.iter().map(|c| f64::from((c.1 - max).exp())).sum();
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut k = 64.min(n);
    while k < head {
        cand.select_nth_unstable_by(k - 1, by_logit);
        let mass: f64 = cand[..k].iter().map(|c| f64::from((c.1 - max).exp())).sum();
        if mass >= f64::from(top_p) * total * 1.001 {
            break;
        }
        k = (k * 4).min(n);
    }
    (head.min(k), Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_lowest_index_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, 0.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 42,
            ..Default::default()
        };
        let draw = || {
            let mut s = Sampler::new(params.clone());
            (0..20)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(params);
        for _ in 0..10 {
            assert_eq!(s.sample(&mut [0.1, 0.5, 0.2], &[]), 1);
        }
    }

    #[test]
    fn repeat_penalty_discourages_seen_tokens() {
        let params = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(params);
        assert_eq!(s.sample(&mut [1.0, 1.5, 0.0], &[1]), 0);
    }
    /// The chain as first written: sort everything, then cut. The head selection must draw the
    /// same tokens.
    fn sample_full_sort(p: &SamplingParams, rng: &mut StdRng, logits: &[f32]) -> u32 {
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let probs = |c: &[(u32, f32)]| -> Vec<f64> {
            let e: Vec<f64> = c.iter().map(|x| f64::from((x.1 - c[0].1).exp())).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        };
        if p.top_p < 1.0 {
            let pr = probs(&cand);
            let (mut cum, mut keep) = (0.0, cand.len());
            for (i, q) in pr.iter().enumerate() {
                cum += q;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let pr = probs(&cand);
            let keep = pr
                .iter()
                .take_while(|&&q| q >= pr[0] * f64::from(p.min_p))
                .count();
            cand.truncate(keep.max(1));
        }
        let w: Vec<f64> = cand
            .iter()
            .map(|x| f64::from(((x.1 - cand[0].1) / p.temperature).exp()))
            .collect();
        let mut r = rng.gen::<f64>() * w.iter().sum::<f64>();
        for (i, wi) in w.iter().enumerate() {
            if r < *wi {
                return cand[i].0;
            }
            r -= wi;
        }
        cand[cand.len() - 1].0
    }

    #[test]
    fn head_selection_draws_what_a_full_sort_draws() {
        let mut gen = StdRng::seed_from_u64(7);
        // A vocabulary-sized row with a peaked head and a long flat tail, like real logits.
        let logits: Vec<f32> = (0..49152)
            .map(|i| {
                let x: f32 = gen.gen_range(-4.0..4.0);
                if i % 997 == 0 {
                    x + 12.0
                } else {
                    x
                }
            })
            .collect();
        for (top_k, top_p, min_p, temperature) in [
            (40, 0.95, 0.05, 0.8),
            (0, 0.95, 0.05, 0.8),
            (0, 0.9, 0.0, 1.0),
            (0, 1.0, 0.05, 1.5),
            (0, 0.999, 0.0, 2.0),
            (100, 1.0, 0.0, 1.0),
        ] {
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                seed: 11,
                ..Default::default()
            };
            let mut s = Sampler::new(params.clone());
            let mut rng = StdRng::seed_from_u64(params.seed);
            for _ in 0..50 {
                let want = sample_full_sort(&params, &mut rng, &logits);
                assert_eq!(s.sample(&mut logits.clone(), &[]), want, "{params:?}");
            }
        }
    }
    #[test]
    fn uncut_distribution_is_drawn_by_probability() {
        // No top-k/top-p/min-p (the OpenAI defaults): drawn in index order without sorting.
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 3,
            ..Default::default()
        };
        let logits = [0.0f32, 2f32.ln(), 3f32.ln(), f32::NEG_INFINITY];
        let mut s = Sampler::new(params);
        let mut count = [0usize; 4];
        let n = 60_000;
        for _ in 0..n {
            count[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0, 0.0].iter().enumerate() {
            let got = count[i] as f64 / n as f64;
            assert!((got - want).abs() < 0.01, "token {i}: {got} vs {want}");
        }
    }
}
