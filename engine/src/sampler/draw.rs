//! The seeded draw at a positive temperature ([`Sampler::draw`]): top-k on the logits, the
//! probabilities, top-p, min-p, then a walk of the running sum in token-id order.
//!
//! A filter that keeps few tokens first narrows the row to a superset of them that one
//! vectorised pass finds (values at least as large as enough chunk maxima), so that the
//! selections sort hundreds of candidates, not the vocabulary; the kept sets are the ones a
//! selection over every token gives.

use std::cmp::Reverse;

use rand::Rng;

use super::probs::{self, exp_neg};
use super::{Sampler, PROB_EPS};

/// Chunks (of [`probs::CHUNK`] tokens) whose maxima bound top-p's first try; each retry takes
/// four times as many.
const NUCLEUS_FIRST_CHUNKS: usize = 16;

/// Tokens that may lie between [`Bracket`]'s thresholds before the nucleus is selected among
/// them, and the most bisection passes spent to get there.
const BOUNDARY_TOKENS: usize = 512;
const BISECTIONS: usize = 24;

/// Sort key, larger first: value (through its order-preserving bits), then lower id. A total
/// order on integers, so selections are cheap and deterministic.
fn rank(c: &(u32, f32)) -> Reverse<u64> {
    let b = c.1.to_bits();
    let ordered = if b >> 31 == 1 { !b } else { b | 1 << 31 };
    Reverse(u64::from(ordered) << 32 | u64::from(!c.0))
}

/// Top-p by weighted quickselect (O(n) expected, no sort): reorders `cand` so its first `k`
/// entries are the `k` best (by [`rank`]) and returns the smallest `k` whose mass reaches
/// `target` (at least 1; all of them if rounding leaves the total short).
pub(super) fn nucleus(cand: &mut [(u32, f32)], target: f64) -> usize {
    // Invariant: cand[..lo] outranks cand[lo..hi], which outranks cand[hi..];
    // mass(cand[..lo]) = cum < target; the answer lies in (lo, hi].
    let (mut lo, mut hi, mut cum) = (0, cand.len(), 0.0);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        cand[lo..hi].select_nth_unstable_by_key(mid - lo, rank);
        let mass = cum + cand[lo..mid].iter().map(|c| f64::from(c.1)).sum::<f64>();
        if mass >= target {
            hi = mid;
        } else {
            (lo, cum) = (mid, mass);
        }
    }
    hi
}

/// Two thresholds around the nucleus of `q` for a `target` mass: every token `>= hi` is in
/// it (their mass, `mass_hi`, is short of the target) and every token of it is `>= lo`.
struct Bracket {
    lo: f32,
    hi: f32,
    mass_hi: f64,
}

/// The [`Bracket`] of `q`'s nucleus: from the chunk maxima (a peaked row's nucleus lies among
/// a few chunks' best), then by bisecting the threshold's bits (the order of positive f32s)
/// until at most [`BOUNDARY_TOKENS`] lie between, one vectorised pass a try.
fn nucleus_bracket(q: &[f32], maxima: &mut Vec<f32>, target: f64) -> Bracket {
    // No token is above 1, the best one's probability; 0 keeps every token.
    let (mut hi, mut mass_hi, mut count_hi) = (1.0f32.next_up(), 0.0, 0);
    let (mut lo, mut count_lo) = (0.0f32, usize::MAX);
    probs::chunk_maxima(q, maxima);
    let mut chunks = NUCLEUS_FIRST_CHUNKS;
    while let Some(tau) = probs::kth_chunk_max(maxima, chunks) {
        let (mass, count) = probs::mass_count_at_least(q, tau);
        if mass >= target {
            (lo, count_lo) = (tau, count);
            break;
        }
        (hi, mass_hi, count_hi) = (tau, mass, count);
        chunks *= 4;
    }
    for _ in 0..BISECTIONS {
        if count_lo.saturating_sub(count_hi) <= BOUNDARY_TOKENS {
            break;
        }
        // Both below 2^30: the sum does not overflow.
        let mid = f32::from_bits((lo.to_bits() + hi.to_bits()) / 2);
        if mid <= lo || mid >= hi {
            break;
        }
        let (mass, count) = probs::mass_count_at_least(q, mid);
        if mass >= target {
            (lo, count_lo) = (mid, count);
        } else {
            (hi, mass_hi, count_hi) = (mid, mass, count);
        }
    }
    Bracket { lo, hi, mass_hi }
}

/// The mass top-p keeps of `sum`: `top_p` less a tolerance, so that a boundary given exactly
/// is not lost to rounding.
fn nucleus_target(top_p: f32, sum: f64) -> f64 {
    (f64::from(top_p) - PROB_EPS) * sum
}

/// The least probability min-p keeps, the best token's being 1: the ratio to the best does
/// not depend on normalisation. Never above 1, so the best token stays.
fn min_p_threshold(min_p: f32) -> f64 {
    (f64::from(min_p) - PROB_EPS).min(1.0)
}

impl Sampler {
    /// A seeded draw from the penalised, sanitised logits in `work` (their max is `max`) at a
    /// positive temperature, through top-k, top-p and min-p.
    pub(super) fn draw(&mut self, max: f32) -> u32 {
        let p = &self.params;
        let temp = p.temperature;
        let floor = max + probs::MIN_EXPONENT * temp;
        let work = &mut self.work;
        let cand = &mut self.cand;
        cand.clear();
        if p.top_k > 0 && p.top_k < work.len() {
            // The k best are among the values at least the k-th largest chunk maximum.
            probs::chunk_maxima(work, &mut self.maxima);
            let least = probs::kth_chunk_max(&mut self.maxima, p.top_k);
            probs::gather(
                work,
                least.map_or(floor, |m| m.max(floor)),
                f32::NEG_INFINITY,
                cand,
            );
            if p.top_k < cand.len() {
                cand.select_nth_unstable_by_key(p.top_k - 1, rank);
                cand.truncate(p.top_k);
            }
            // The best token survives every filter and gets exactly exp(0) = 1.
            let mut sum = 0.0f64;
            for c in cand.iter_mut() {
                c.1 = exp_neg((c.1 - max) / temp);
                sum += f64::from(c.1);
            }
            if p.top_p < 1.0 {
                let keep = nucleus(cand, nucleus_target(p.top_p, sum));
                cand.truncate(keep);
            }
            return self.draw_among();
        }
        if p.top_p >= 1.0 && p.min_p <= 0.0 {
            let u = self.rng.random::<f64>();
            return probs::draw_plain(work, max, temp, u, &mut self.blocks);
        }
        probs::probabilities(work, max, temp, floor, &mut self.blocks);
        let sum: f64 = self.blocks.iter().sum();
        if p.top_p < 1.0 {
            let target = nucleus_target(p.top_p, sum);
            let b = nucleus_bracket(work, &mut self.maxima, target);
            probs::gather(work, b.lo, 0.0, cand);
            // The tokens from `hi` up are in; the nucleus completes among the others, moved
            // to the front.
            let mut below = 0;
            for i in 0..cand.len() {
                if cand[i].1 < b.hi {
                    cand.swap(i, below);
                    below += 1;
                }
            }
            let keep = nucleus(&mut cand[..below], target - b.mass_hi);
            cand.drain(keep..below);
            return self.draw_among();
        }
        // min-p: a superset, gathered in id order; `draw_among` applies the exact threshold.
        let least = min_p_threshold(p.min_p) as f32;
        probs::gather(work, least.next_down(), 0.0, cand);
        self.draw_among()
    }

    /// The draw among the candidates in `cand` (`(id, probability)`, unnormalised, after top-k
    /// and top-p): id order, min-p, then the walk.
    fn draw_among(&mut self) -> u32 {
        let p = &self.params;
        let (work, cand) = (&mut self.work, &mut self.cand);
        if p.top_k > 0 || p.top_p < 1.0 {
            // Draw in token-id order. Quickselect leaves the kept tokens in an order that
            // hangs on the logits' last bits, which differ by ~1e-5 between a request alone
            // and in a batch; a seeded draw walking that order picked other tokens. A few kept
            // tokens (the usual case) are sorted; many are placed by id in one pass.
            if cand.len() * 16 < work.len() {
                cand.sort_unstable_by_key(|c| c.0);
            } else {
                work.fill(-1.0);
                for &(id, q) in cand.iter() {
                    work[id as usize] = q;
                }
                cand.clear();
                cand.extend((0..).zip(work.iter().copied()).filter(|c| c.1 >= 0.0));
            }
        }
        if p.min_p > 0.0 {
            let threshold = min_p_threshold(p.min_p);
            cand.retain(|c| f64::from(c.1) >= threshold);
        }
        let total: f64 = cand.iter().map(|c| f64::from(c.1)).sum();
        let r = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        for &(id, q) in cand.iter() {
            acc += f64::from(q);
            if r < acc {
                return id;
            }
        }
        // The best token is always a candidate, so `cand` is not empty.
        cand.last().map_or(0, |c| c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SamplingParams, PROB_EPS};
    use super::probs::{exp_neg, MIN_EXPONENT};
    use super::Sampler;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The filters by their definitions, over every token, by a full sort: the kept
    /// `(id, probability)` in id order (every usable token where no filter is on).
    fn kept_by_sorting(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = max + MIN_EXPONENT * p.temperature;
        let mut v: Vec<(u32, f32)> = (0..)
            .zip(logits.iter().copied())
            .filter(|&(_, l)| l >= floor && l > f32::NEG_INFINITY)
            .collect();
        let by_rank = |v: &mut Vec<(u32, f32)>| {
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        };
        by_rank(&mut v);
        if p.top_k > 0 {
            v.truncate(p.top_k);
        }
        for c in &mut v {
            c.1 = exp_neg((c.1 - max) / p.temperature);
        }
        by_rank(&mut v);
        if p.top_p < 1.0 {
            let sum: f64 = v.iter().map(|c| f64::from(c.1)).sum();
            let target = (f64::from(p.top_p) - PROB_EPS) * sum;
            let mut cum = 0.0;
            let keep = 1 + v
                .iter()
                .take_while(|c| {
                    cum += f64::from(c.1);
                    cum < target
                })
                .count();
            v.truncate(keep.min(v.len()));
        }
        v.sort_by_key(|c| c.0);
        let threshold = (f64::from(p.min_p) - PROB_EPS).min(1.0);
        if p.min_p > 0.0 {
            v.retain(|c| f64::from(c.1) >= threshold);
        }
        v
    }

    /// Rows of `n` logits: a peaked one (a bell of width 2.5 and five tokens far above it,
    /// as language models give), flat noise, values on a grid of 0.5 (many ties at every
    /// boundary), and half the tokens `-inf`.
    fn rows(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
        let mut r = StdRng::seed_from_u64(seed);
        let mut bell: Vec<f32> = (0..n)
            .map(|_| (0..4).map(|_| r.random_range(-1.0f32..1.0)).sum::<f32>() * 2.2)
            .collect();
        for j in 0..5.min(n) {
            let i = r.random_range(0..n);
            bell[i] = 12.0 + j as f32;
        }
        let flat: Vec<f32> = (0..n).map(|_| r.random_range(-8.0f32..8.0)).collect();
        let grid: Vec<f32> = flat.iter().map(|l| (l * 2.0).round() / 2.0).collect();
        let holes: Vec<f32> = (flat.iter().enumerate())
            .map(|(i, &l)| if i % 2 == 1 { f32::NEG_INFINITY } else { l })
            .collect();
        vec![
            ("bell", bell),
            ("flat", flat),
            ("grid", grid),
            ("holes", holes),
        ]
    }

    /// Every path of the draw keeps what the definitions keep, with the same probabilities,
    /// and draws what a walk of them in id order draws from the same seed.
    #[test]
    fn draws_keep_and_pick_what_a_full_sort_does() {
        let sp = |temperature, top_k, top_p, min_p| SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            ..Default::default()
        };
        let params = [
            sp(1.0, 0, 1.0, 0.0),
            sp(0.3, 0, 1.0, 0.0),
            sp(1.0, 0, 0.9, 0.0),
            sp(1.0, 0, 0.99, 0.0),
            sp(2.5, 0, 0.5, 0.0),
            sp(0.7, 0, 0.95, 0.05),
            sp(1.0, 0, 1.0, 0.05),
            sp(1.0, 0, 1.0, 1e-9),
            sp(0.7, 1, 1.0, 0.0),
            sp(0.7, 50, 1.0, 0.0),
            sp(1.0, 50, 0.9, 0.0),
            sp(1.3, 3000, 0.95, 0.01),
            sp(1.0, 40_000, 1.0, 0.0),
        ];
        for (n, seed) in [(3, 1), (100, 2), (5000, 3), (70_000, 4)] {
            for (name, row) in rows(n, seed) {
                for p in &params {
                    let want = kept_by_sorting(&row, p);
                    let filtered = (p.top_k > 0 && p.top_k < n) || p.top_p < 1.0 || p.min_p > 0.0;
                    for seed in 0..12 {
                        let mut s = Sampler::new(SamplingParams { seed, ..p.clone() });
                        let got = s.try_sample(&row, &[]).expect("a usable row");
                        let case = format!("n {n} {name} {p:?} seed {seed}");
                        if filtered {
                            assert_eq!(s.cand.len(), want.len(), "{case}: kept");
                            for (g, w) in s.cand.iter().zip(&want) {
                                assert_eq!(g.0, w.0, "{case}: kept ids");
                                assert_eq!(g.1.to_bits(), w.1.to_bits(), "{case}: q");
                            }
                        }
                        let total: f64 = want.iter().map(|c| f64::from(c.1)).sum();
                        let r = StdRng::seed_from_u64(seed).random::<f64>() * total;
                        let mut acc = 0.0;
                        let pick = want.iter().find(|c| {
                            acc += f64::from(c.1);
                            r < acc
                        });
                        assert_eq!(Some(got), pick.map(|c| c.0), "{case}: pick");
                    }
                }
            }
        }
    }
}
