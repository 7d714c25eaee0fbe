//! The RoPE angle table, computed once on the host in f64 (including Llama-3 frequency
//! scaling) so that every backend rotates by exactly the same f32 cos/sin values.

use std::f64::consts::PI;

use crate::config::ModelConfig;

/// Inverse frequencies `1 / theta^(2i/d)`, with Llama-3 scaling applied when configured
/// (transformers' `_compute_llama3_parameters`), or divided by a GGUF's frequency factors
/// (llama.cpp's `rope_freqs`: ggml's rope divides each frequency by its factor).
pub fn inv_freq(cfg: &ModelConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    if let Some(factors) = &cfg.rope_freq_factors {
        return base.iter().zip(factors).map(|(f, s)| f / s).collect();
    }
    let Some(s) = cfg.rope_llama3 else {
        return base;
    };
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

/// `[positions, head_dim/2, 2]` of (cos, sin) for positions `0..positions`.
pub fn cos_sin_table(cfg: &ModelConfig, positions: usize) -> Vec<f32> {
    let inv = inv_freq(cfg);
    let mut t = Vec::with_capacity(positions * inv.len() * 2);
    for p in 0..positions {
        for &f in &inv {
            let a = p as f64 * f;
            t.push(a.cos() as f32);
            t.push(a.sin() as f32);
        }
    }
    t
}
