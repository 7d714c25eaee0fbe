//! The RoPE angle table, computed once on the host in f64 (frequency scaling included) so
//! that every backend rotates by exactly the same f32 cos/sin values.

use std::f64::consts::PI;

use crate::config::{Llama3Scaling, ModelConfig, RopeScaling, YarnScaling};

/// Inverse frequencies `1 / theta^(2i/d)` of a model loaded for `positions` positions, scaled
/// as configured (Llama 3's, linear, YaRN, LongRoPE: transformers' `_compute_*_parameters`;
/// LongRoPE's factor set picked by `positions`, see [`crate::config::LongRopeScaling`]), or
/// divided by a GGUF's frequency factors (llama.cpp's `rope_freqs`: ggml's rope divides each
/// frequency by its factor).
pub fn inv_freq(cfg: &ModelConfig, positions: usize) -> Vec<f64> {
    // Over the rotated dimensions only (transformers' `dim = head_dim * partial_rotary_factor`).
    let d = cfg.rotary_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    if let Some(factors) = &cfg.rope_freq_factors {
        return base.iter().zip(factors).map(|(f, s)| f / s).collect();
    }
    match &cfg.rope_scaling {
        None => base,
        Some(RopeScaling::Llama3(s)) => llama3(base, s),
        Some(RopeScaling::Linear { factor }) => base.into_iter().map(|f| f / factor).collect(),
        // Default frequencies within the context it allows (RopeScaling::Dynamic).
        Some(RopeScaling::Dynamic { .. }) => base,
        Some(RopeScaling::Yarn(y)) => yarn(base, y, cfg.rope_theta, d),
        Some(RopeScaling::LongRope(l)) => {
            let factors = l.factors(positions);
            base.iter().zip(factors).map(|(f, s)| f / s).collect()
        }
    }
}

/// Llama 3's: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
fn llama3(base: Vec<f64>, s: &Llama3Scaling) -> Vec<f64> {
    let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

/// YaRN's: frequency `i` is `f / factor` (interpolated) below the ramp's start, `f` above its
/// end, linear between; the ramp runs over the dimensions whose frequencies turn `beta_fast`
/// and `beta_slow` times over the original context (`find_correction_range`).
fn yarn(base: Vec<f64>, y: &YarnScaling, theta: f64, dim: usize) -> Vec<f64> {
    let d = dim as f64;
    let correction_dim = |rotations: f64| {
        d * (y.original_max_position_embeddings / (rotations * 2.0 * PI)).ln() / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (correction_dim(y.beta_fast), correction_dim(y.beta_slow));
    if y.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
    if low == high {
        high += 0.001; // transformers' guard against a zero-width ramp
    }
    base.into_iter()
        .enumerate()
        .map(|(i, f)| {
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation = 1.0 - ramp;
            (f / y.factor) * (1.0 - extrapolation) + f * extrapolation
        })
        .collect()
}

/// The table of NoPE layers (SmolLM3's): `[positions, head_dim/2, 2]` of (1, 0), so that the
/// backends' RoPE leaves the query and key as they are (`x * 1 - y * 0` is `x` in f32 exactly)
/// and every fused RoPE path serves them unchanged. No scaling's attention factor: transformers
/// multiplies it into the rotation these layers skip.
pub fn identity_table(positions: usize, head_dim: usize) -> Vec<f32> {
    [1.0, 0.0].repeat(positions * (head_dim / 2))
}

/// `[positions, head_dim/2, 2]` of (cos, sin) for positions `0..positions`, times the
/// scaling's attention factor (YaRN's and LongRoPE's; transformers multiplies cos and sin by
/// it). Past `rotary_dim / 2` (RoPE on part of each head) the pairs are (1, 0): the dimensions
/// loading put there pass through ([`crate::loader::partial_rotary`]).
pub fn cos_sin_table(cfg: &ModelConfig, positions: usize) -> Vec<f32> {
    let inv = inv_freq(cfg, positions);
    let scale = cfg
        .rope_scaling
        .as_ref()
        .map_or(1.0, |s| s.attention_factor());
    let half = cfg.head_dim / 2;
    let mut t = Vec::with_capacity(positions * half * 2);
    for p in 0..positions {
        for &f in &inv {
            let a = p as f64 * f;
            t.push((a.cos() * scale) as f32);
            t.push((a.sin() * scale) as f32);
        }
        for _ in inv.len()..half {
            t.extend([1.0, 0.0]);
        }
    }
    t
}

/// The queries' table where the model scales its queries by position (Llama 4's attention
/// temperature, Ministral 3's; [`crate::config::AttnTemperature`]): the keys' table `keys`
/// ([`cos_sin_table`]) with row `pos` times the factor at `pos` (the product in f64, one
/// rounding), pass-through pairs included (`(t, 0)` scales what they carry). Rotating by it
/// equals rotating then scaling, as transformers does, since the factor is the same for every
/// pair of the row. `None` where it would equal `keys`: no temperature, or no position at or
/// past its step. (An odd `head_dim`, whose last element no pair would scale, is refused for
/// RoPE by [`ModelConfig::validated`].)
pub fn query_table(cfg: &ModelConfig, keys: &[f32]) -> Option<Vec<f32>> {
    let row = (cfg.head_dim / 2 * 2).max(1);
    let t = cfg.attn_temperature.filter(|t| keys.len() / row > t.step)?;
    let mut q = keys.to_vec();
    for (p, r) in q.chunks_mut(row).enumerate().skip(t.step) {
        let f = t.factor(p);
        r.iter_mut().for_each(|x| *x = (f64::from(*x) * f) as f32);
    }
    Some(q)
}
