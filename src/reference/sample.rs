//! The sampling kernel's algorithm in f64: repetition penalty, greedy argmax, or
//! temperature + top-k + top-p and an inverse-CDF draw with the kernel's hash RNG.

use crate::kernels::sample::SamplingConfig;

/// The kernel's counter-based hash (PCG output permutation).
pub fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336930);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (w >> 22) ^ w
}

/// Uniform in [0, 1) for draw number `step` of `seed`.
pub fn uniform(seed: u64, step: u32) -> f64 {
    let h = pcg(seed as u32 ^ pcg((seed >> 32) as u32 ^ pcg(step)));
    (h >> 8) as f64 / 16_777_216.0
}

/// Scores after the repetition penalty.
pub fn penalized(logits: &[f32], seen: &[bool], penalty: f32) -> Vec<f32> {
    logits
        .iter()
        .zip(seen)
        .map(|(&l, &s)| if s && penalty != 1.0 { if l > 0.0 { l / penalty } else { l * penalty } } else { l })
        .collect()
}

/// The kept set (true = may be sampled) after top-k and top-p, as transformers'
/// `TopKLogitsWarper` (ties with the k-th score kept) and `TopPLogitsWarper` (a token stays
/// if the probability mass strictly above it is below `top_p`) define it.
pub fn kept(scores: &[f32], cfg: &SamplingConfig) -> Vec<bool> {
    let n = scores.len();
    let mut keep = vec![true; n];
    if cfg.top_k > 0 && (cfg.top_k as usize) < n {
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[cfg.top_k as usize - 1];
        for (k, s) in keep.iter_mut().zip(scores) {
            *k = *s >= kth;
        }
    }
    if cfg.top_p < 1.0 {
        let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let t = cfg.temperature as f64;
        let p: Vec<f64> = scores.iter().zip(&keep).map(|(&s, &k)| if k { ((s as f64 - m) / t).exp() } else { 0.0 }).collect();
        let z: f64 = p.iter().sum();
        let new: Vec<bool> = (0..n)
            .map(|i| keep[i] && p.iter().zip(scores).filter(|(_, &s)| s > scores[i]).map(|(q, _)| q).sum::<f64>() < cfg.top_p as f64 * z)
            .collect();
        keep = new;
    }
    keep
}

/// The token the kernel picks: greedy (lowest index among equal maxima) when
/// `temperature <= 0`, else the first kept token in vocabulary order whose running
/// probability mass exceeds `uniform(seed, step)`.
pub fn sample(logits: &[f32], seen: &[bool], cfg: &SamplingConfig, step: u32) -> u32 {
    let scores = penalized(logits, seen, cfg.repetition_penalty);
    if cfg.temperature <= 0.0 {
        let mut best = 0;
        for (i, &s) in scores.iter().enumerate() {
            if s > scores[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let keep = kept(&scores, cfg);
    let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = scores
        .iter()
        .zip(&keep)
        .map(|(&s, &k)| if k { ((s as f64 - m) / cfg.temperature as f64).exp() } else { 0.0 })
        .collect();
    let mut r = uniform(cfg.seed, step) * w.iter().sum::<f64>();
    let mut last = 0;
    for (i, &wi) in w.iter().enumerate() {
        if wi > 0.0 {
            last = i;
            r -= wi;
            if r < 0.0 {
                return i as u32;
            }
        }
    }
    last as u32
}
