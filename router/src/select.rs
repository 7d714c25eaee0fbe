//! Turning router probabilities into an adapter mixture: top-p / top-k selection, then fusion
//! weights over the kept set.
//!
//! Order: adapters are ranked by probability, descending, ties to the lower label index (so the
//! result is deterministic). Top-k keeps the first `k`, top-p the smallest prefix whose cumulative
//! probability reaches `p`, `max_adapters` caps the count; every limit that is set applies, and
//! at least one adapter is always kept.

use serde::{Deserialize, Serialize};

/// Slack on the cumulative-probability test, so that `p` given exactly (0.7 over 0.5 + 0.2)
/// is not missed by rounding (`p = 1` has its own rule).
const P_EPS: f32 = 1e-6;

/// How the kept adapters' probabilities become fusion weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionWeights {
    /// `w_i = p_i / sum(kept p)`: the mixture keeps the router's relative confidence.
    #[default]
    Renormalize,
    /// `w_i = softmax(kept p)_i`, as the DLP-LoRA reference code does. Probabilities lie in
    /// 0..1, so this flattens the weights toward uniform (0.9/0.1 becomes about 0.69/0.31).
    Softmax,
}

/// Which adapters to keep and how to weight them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelectConfig {
    /// Keep the smallest prefix whose cumulative probability reaches `top_p` (`None`: no
    /// top-p limit; `1.0` keeps every adapter of non-zero probability).
    pub top_p: Option<f32>,
    /// Keep at most the `top_k` most probable adapters (`None` or 0: no limit).
    pub top_k: Option<usize>,
    /// A hard cap on the number of adapters in one mixture (`None` or 0: no cap).
    pub max_adapters: Option<usize>,
    /// How kept probabilities become weights.
    pub weights: FusionWeights,
}

impl Default for SelectConfig {
    /// The paper's setting: top-p with p = 0.9, renormalised weights.
    fn default() -> Self {
        SelectConfig {
            top_p: Some(0.9),
            top_k: None,
            max_adapters: None,
            weights: FusionWeights::Renormalize,
        }
    }
}

/// Label indices ordered by probability, descending; ties (and NaN, ranked last) keep index order.
pub fn ranked(probs: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let key = |i: usize| {
        if probs[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            probs[i]
        }
    };
    // Stable sort: equal keys stay in ascending index order.
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    idx
}

/// How many of the `ranked` adapters top-p keeps: the smallest prefix whose cumulative
/// probability reaches `p`, at least 1 (so `p <= 0` keeps exactly one); all of them when the
/// total never reaches `p` (`p > 1`, or probabilities that sum to less). `p = 1` keeps every
/// adapter of non-zero probability.
pub fn top_p_len(probs: &[f32], ranked: &[usize], p: f32) -> usize {
    // p = 1 keeps every adapter of non-zero probability, as documented: the slack below had
    // stopped it at 1 - 1e-6, leaving out the least probable ones (7.5 of 14 kept).
    if p == 1.0 {
        let positive = ranked
            .iter()
            .take_while(|&&i| probs[i].is_finite() && probs[i] > 0.0)
            .count();
        return positive.max(1);
    }
    let mut cum = 0.0f32;
    for (n, &i) in ranked.iter().enumerate() {
        cum += if probs[i].is_finite() {
            probs[i].max(0.0)
        } else {
            0.0
        };
        if cum + P_EPS >= p {
            return n + 1;
        }
    }
    ranked.len()
}

/// Selects adapters from one probability vector and returns `(label index, weight)` pairs in
/// rank order; the weights sum to 1. An empty `probs` gives an empty mixture.
pub fn select(probs: &[f32], cfg: &SelectConfig) -> Vec<(usize, f32)> {
    if probs.is_empty() {
        return Vec::new();
    }
    let order = ranked(probs);
    let mut n = order.len();
    if let Some(p) = cfg.top_p {
        n = n.min(top_p_len(probs, &order, p));
    }
    for limit in [cfg.top_k, cfg.max_adapters].into_iter().flatten() {
        if limit > 0 {
            n = n.min(limit);
        }
    }
    let kept = &order[..n.max(1)];
    let p = |i: usize| {
        if probs[i].is_finite() {
            probs[i].max(0.0)
        } else {
            0.0
        }
    };
    let raw: Vec<f32> = match cfg.weights {
        FusionWeights::Renormalize => kept.iter().map(|&i| p(i)).collect(),
        FusionWeights::Softmax => {
            let m = kept.iter().map(|&i| p(i)).fold(f32::NEG_INFINITY, f32::max);
            kept.iter().map(|&i| (p(i) - m).exp()).collect()
        }
    };
    let sum: f32 = raw.iter().sum();
    let uniform = 1.0 / kept.len() as f32;
    kept.iter()
        .zip(raw)
        // All kept probabilities zero (a degenerate router): fall back to equal weights.
        .map(|(&i, r)| (i, if sum > 0.0 { r / sum } else { uniform }))
        .collect()
}

/// Numerically stable softmax of a logit row.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}
