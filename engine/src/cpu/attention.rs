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
    // One task per (token, KV head): the query heads that share a KV head read each cached
    // key and value once for all of them.
    out[..t_n * q_dim]
        .par_chunks_mut(group * hd)
        .enumerate()
        .for_each_init(
            || Vec::with_capacity(group * s.capacity),
            |scores: &mut Vec<f32>, (i, o)| {
                let (t, kvh) = (i / s.n_kv_heads, i % s.n_kv_heads);
                let (slot, pos) = (step.kv_slots[t] as usize, step.positions[t] as usize);
                let q0 = t * q_dim + kvh * group * hd;
                let heads = Heads {
                    q: &q[q0..q0 + group * hd],
                    group,
                    k_cache,
                    v_cache,
                    first: slot * s.capacity * kv_dim + kvh * hd,
                    stride: kv_dim,
                    len: pos + 1,
                    scale,
                };
                #[cfg(target_arch = "x86_64")]
                if super::avx512::available() {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { attend_avx512(&heads, scores, o) };
                }
                attend(&heads, scores, o)
            },
        );
    Ok(())
}

/// The query heads of one KV head against its cached keys and values.
struct Heads<'a> {
    /// `group` query heads, one after the other.
    q: &'a [f32],
    group: usize,
    k_cache: &'a [f32],
    v_cache: &'a [f32],
    /// Offset of position 0's key (and value) for this KV head in the caches.
    first: usize,
    /// Values between consecutive positions.
    stride: usize,
    /// Positions attended (`0..len`).
    len: usize,
    scale: f32,
}

/// `o[g] = softmax(q[g] . K^T * scale) @ V` for each head `g` of the group; `scores` is
/// scratch (`[group, len]`).
#[inline(always)]
fn attend(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32]) {
    let (hd, n) = (o.len() / h.group, h.len);
    let last = h.first + (n - 1) * h.stride + hd;
    assert!(last <= h.k_cache.len() && last <= h.v_cache.len() && h.q.len() == o.len());
    scores.clear();
    scores.resize(h.group * n, 0.0);
    key_scores(h, hd, scores);
    for row in scores.chunks_mut(n) {
        row.iter_mut().for_each(|x| *x *= h.scale);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        row.iter_mut().for_each(|x| {
            *x = (*x - max).exp();
            sum += *x;
        });
        row.iter_mut().for_each(|x| *x /= sum);
    }
    o.fill(0.0);
    for p in 0..n {
        let at = h.first + p * h.stride;
        let v = &h.v_cache[at..at + hd];
        for (g, og) in o.chunks_mut(hd).enumerate() {
            let w = scores[g * n + p];
            og.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
        }
    }
}

/// `scores[g * len + p] = dot(q[g], key p)`: the register-blocked kernel where the CPU has
/// AVX-512 (each key loaded once for the whole group), else one dot at a time.
#[inline(always)]
fn key_scores(h: &Heads<'_>, hd: usize, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F checked; `q` holds `group` rows of `hd`, the keys `len` rows of
        // `hd` values `stride` apart from `first` (asserted by `attend`), and `scores`
        // `group * len` values.
        return unsafe {
            super::avx512::rows_by_features(
                h.q.as_ptr(),
                hd,
                h.group,
                h.k_cache.as_ptr().add(h.first),
                h.stride,
                h.len,
                hd,
                scores.as_mut_ptr(),
                h.len,
            )
        };
    }
    for (g, row) in scores.chunks_mut(h.len).enumerate() {
        let qg = &h.q[g * hd..(g + 1) * hd];
        for (p, s) in row.iter_mut().enumerate() {
            let at = h.first + p * h.stride;
            *s = dot(qg, &h.k_cache[at..at + hd]);
        }
    }
}

/// [`attend`] compiled for AVX-512 (the value sums run sixteen lanes wide).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_avx512(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32]) {
    attend(h, scores, o)
}
