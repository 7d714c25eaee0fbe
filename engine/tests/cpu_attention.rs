//! The CPU attention against a float64 reference: grouped query heads (1 to 9 per KV head),
//! head dims that are and are not multiples of 16, contexts from 1 to past 300 positions,
//! several sequences in one step, prefill chunks attending to themselves (also in blocks of
//! consecutive tokens, and blocks that straddle two sequences), sliding windows
//! (shorter and longer than the context), and decode steps whose few (token, KV head) tasks
//! are split over their positions and combined by log-sum-exp; Gemma 2's soft-capped scores
//! with a scale of their own (unwindowed and long-window cases). Caches start
//! random, the output is poisoned with NaN. Whichever kernel this CPU runs (AVX-512, AVX2 or
//! the portable loop) is held to the same bound.

use dlp_engine::backend::{AttnShape, StepPlan, NO_ADAPTER};
use dlp_engine::cpu::CpuBackend;
use dlp_engine::Backend;
use rand::{Rng, SeedableRng};

/// One case: `(slot, position)` of each token of the step.
struct Case {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    at: Vec<(u32, u32)>,
    /// Sliding window (0: none).
    window: usize,
    /// `(scale, softcap)` of Gemma 2's scores; `None`: `head_dim^-0.5`, no cap.
    scored: Option<(f32, f32)>,
}

impl Case {
    fn id(&self) -> String {
        format!(
            "attention(heads={},kv_heads={},head_dim={},at={:?},window={},scored={:?})",
            self.heads, self.kv_heads, self.head_dim, self.at, self.window, self.scored
        )
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (heads, kv_heads) in [(1, 1), (4, 2), (9, 3), (8, 2), (5, 1), (9, 1), (12, 4)] {
        for head_dim in [8, 12, 16, 24, 64, 80, 128] {
            for at in [
                vec![(0, 0)],
                vec![(0, 16)],
                vec![(1, 70), (0, 3)],
                vec![(2, 301)],
                // Few tasks at long context: split over positions (one part of the second
                // token's single position is empty), into more parts further on.
                vec![(2, 301), (1, 0)],
                vec![(2, 700)],
                // A prefill chunk: each token sees the ones before it in this step.
                vec![(0, 5), (0, 6), (0, 7), (0, 8)],
                // Prefills of two sequences in one step, long enough to be run in blocks of
                // consecutive tokens (for up to 5 threads): one block straddles the two
                // sequences, one is cut short by the end of the step.
                (250..271)
                    .map(|p| (0, p))
                    .chain((0..22).map(|p| (1, p)))
                    .collect(),
            ] {
                // 300: a window long enough to be split, starting past position 0.
                for window in [0, 1, 5, 64, 300] {
                    // A cap of 2.5 bites: the scaled scores spread over several units.
                    let scored = match window {
                        0 | 300 => vec![None, Some((0.2, 2.5))],
                        _ => vec![None],
                    };
                    for scored in scored {
                        cases.push(Case {
                            heads,
                            kv_heads,
                            head_dim,
                            at: at.clone(),
                            window,
                            scored,
                        });
                    }
                }
            }
        }
    }
    cases
}

/// Float64 causal attention of the step's tokens over the caches after this step's writes.
fn reference(c: &Case, q: &[f32], kc: &[f32], vc: &[f32], cap: usize) -> Vec<f64> {
    let (hd, kv_dim) = (c.head_dim, c.kv_heads * c.head_dim);
    let group = c.heads / c.kv_heads;
    let mut out = vec![0f64; c.at.len() * c.heads * hd];
    for (t, &(slot, pos)) in c.at.iter().enumerate() {
        for h in 0..c.heads {
            let kvh = h / group;
            let qh = &q[(t * c.heads + h) * hd..][..hd];
            // With a window w, position `pos` sees `pos - w < p <= pos`.
            let first = if c.window > 0 {
                (pos as usize + 1).saturating_sub(c.window)
            } else {
                0
            };
            let row = |p: usize| (slot as usize * cap + first + p) * kv_dim + kvh * hd;
            let (scale, softcap) = match c.scored {
                Some((s, cap)) => (s as f64, Some(cap as f64)),
                None => (1.0 / (hd as f64).sqrt(), None),
            };
            let scores: Vec<f64> = (first..=pos as usize)
                .map(|p| p - first)
                .map(|p| {
                    let k = &kc[row(p)..][..hd];
                    let s = qh
                        .iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale;
                    // transformers' Gemma 2: s / cap, tanh, * cap.
                    softcap.map_or(s, |cap| cap * (s / cap).tanh())
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let o = &mut out[(t * c.heads + h) * hd..][..hd];
            for (p, w) in e.iter().enumerate() {
                for (o, v) in o.iter_mut().zip(&vc[row(p)..][..hd]) {
                    *o += w / sum * *v as f64;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_f64_reference() {
    let be = CpuBackend::new();
    let (cap, slots) = (704, 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_a77e);
    let mut worst = 0f64;
    let all = cases();
    for c in &all {
        let (t_n, hd) = (c.at.len(), c.head_dim);
        let kv_dim = c.kv_heads * hd;
        // Uniform in [-2, 2): scores then spread over several units, so the softmax is not
        // flat.
        let mut rand = |n: usize| {
            (0..n)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect::<Vec<f32>>()
        };
        let (q, k, v) = (
            rand(t_n * c.heads * hd),
            rand(t_n * kv_dim),
            rand(t_n * kv_dim),
        );
        let (mut kc, mut vc) = (rand(slots * cap * kv_dim), rand(slots * cap * kv_dim));
        // The reference reads the caches as the op leaves them: the step's keys and values
        // written at their positions first.
        for (t, &(slot, pos)) in c.at.iter().enumerate() {
            let at = (slot as usize * cap + pos as usize) * kv_dim;
            kc[at..at + kv_dim].copy_from_slice(&k[t * kv_dim..][..kv_dim]);
            vc[at..at + kv_dim].copy_from_slice(&v[t * kv_dim..][..kv_dim]);
        }
        let want = reference(c, &q, &kc, &vc, cap);
        let plan = StepPlan {
            token_ids: vec![0; t_n],
            positions: c.at.iter().map(|a| a.1).collect(),
            kv_slots: c.at.iter().map(|a| a.0).collect(),
            segment_of_token: vec![0; t_n],
            mix_k: 1,
            mix_slots: vec![NO_ADAPTER],
            mix_weights: vec![0.0],
            logit_rows: vec![],
            pick_args: Vec::new(),
        };
        let step = be.upload_step(&plan, None).unwrap();
        let (qb, kb, vb) = (
            be.upload(&q).unwrap(),
            be.upload(&k).unwrap(),
            be.upload(&v).unwrap(),
        );
        let (mut kcb, mut vcb) = (be.upload(&kc).unwrap(), be.upload(&vc).unwrap());
        let mut out = be.upload(&vec![f32::NAN; want.len()]).unwrap();
        let shape = AttnShape {
            n_tokens: t_n,
            n_heads: c.heads,
            n_kv_heads: c.kv_heads,
            head_dim: hd,
            capacity: cap,
            window: c.window,
            scale: c.scored.map_or(AttnShape::head_scale(hd), |s| s.0),
            softcap: c.scored.map_or(0.0, |s| s.1),
        };
        be.attention(&qb, &kb, &vb, &mut kcb, &mut vcb, &step, shape, &mut out)
            .unwrap();
        let got = be.download(&out, want.len()).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (*g as f64 - w).abs();
            assert!(
                g.is_finite() && err <= 2e-6 * (1.0 + w.abs()),
                "{}: output {i} is {g}, float64 reference {w}",
                c.id()
            );
            worst = worst.max(err);
        }
    }
    println!(
        "{} attention cases within 2e-6 of the float64 reference (worst {worst:.2e})",
        all.len()
    );
}
