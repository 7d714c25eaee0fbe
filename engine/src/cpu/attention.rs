//! `attention`: causal grouped-query attention over the KV cache.
//!
//! The cache is `[slots, capacity, n_kv_heads * head_dim]` for K and for V. The step's new keys
//! and values are stored first, so a prefill chunk attends to itself causally through the cache.

use rayon::prelude::*;

use super::{check_len, dot};
use crate::backend::{AttnShape, StepPlan};
use crate::error::{Error, Result};

/// See the module docs and [`crate::Backend::attention`].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    step: &StepPlan,
    s: AttnShape,
    out: &mut [f32],
) -> Result<()> {
    let (t_n, hd) = (s.n_tokens, s.head_dim);
    let kv_dim = s.n_kv_heads * hd;
    let q_dim = s.n_heads * hd;
    let group = s.n_heads / s.n_kv_heads;
    check_len("attention", "q", q.len(), t_n * q_dim)?;
    check_len("attention", "k", k.len(), t_n * kv_dim)?;
    check_len("attention", "v", v.len(), t_n * kv_dim)?;
    check_len("attention", "out", out.len(), t_n * q_dim)?;
    let slots = k_cache.len() / (s.capacity * kv_dim).max(1);
    for t in 0..t_n {
        let (slot, pos) = (step.kv_slots[t] as usize, step.positions[t] as usize);
        if slot >= slots || pos >= s.capacity {
            return Err(Error::invalid(format!(
                "attention: token {t} at (slot {slot}, position {pos}) is outside the KV cache ({slots} slots x {} positions)",
                s.capacity
            )));
        }
        let at = (slot * s.capacity + pos) * kv_dim;
        k_cache[at..at + kv_dim].copy_from_slice(&k[t * kv_dim..(t + 1) * kv_dim]);
        v_cache[at..at + kv_dim].copy_from_slice(&v[t * kv_dim..(t + 1) * kv_dim]);
    }
    let (k_cache, v_cache) = (&*k_cache, &*v_cache);
    let scale = 1.0 / (hd as f32).sqrt();
    out[..t_n * q_dim]
        .par_chunks_mut(hd)
        .enumerate()
        .for_each_init(
            || Vec::with_capacity(s.capacity),
            |scores: &mut Vec<f32>, (i, o)| {
                let (t, h) = (i / s.n_heads, i % s.n_heads);
                let (slot, pos) = (step.kv_slots[t] as usize, step.positions[t] as usize);
                let kvh = h / group;
                let qv = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                let base = slot * s.capacity;
                scores.clear();
                scores.extend((0..=pos).map(|p| {
                    let at = (base + p) * kv_dim + kvh * hd;
                    dot(qv, &k_cache[at..at + hd]) * scale
                }));
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                scores.iter_mut().for_each(|x| {
                    *x = (*x - max).exp();
                    sum += *x;
                });
                o.fill(0.0);
                for (p, &w) in scores.iter().enumerate() {
                    let at = (base + p) * kv_dim + kvh * hd;
                    let w = w / sum;
                    o.iter_mut()
                        .zip(&v_cache[at..at + hd])
                        .for_each(|(o, v)| *o += w * v);
                }
            },
        );
    Ok(())
}
