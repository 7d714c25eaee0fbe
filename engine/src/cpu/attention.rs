//! `attention`: causal grouped-query attention over the KV cache.
//!
//! The cache is `[slots, capacity, n_kv_heads * head_dim]` for K and for V. The step's new keys
//! and values are stored first, so a prefill chunk attends to itself causally through the cache.
//! Work is split by (token, KV head); when a step has fewer such tasks than twice the threads
//! (a decode step) and a long context, each task is also split over its positions and the parts
//! combined by their log-sum-exp (flash-decoding), so every core works.

use rayon::prelude::*;

use super::{check_len, dot};
use crate::backend::{AttnShape, StepPlan};
use crate::error::Result;

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
    step.check_kv_positions(
        t_n,
        k_cache.len() / (s.capacity * kv_dim).max(1),
        s.capacity,
    )?;
    for t in 0..t_n {
        let (slot, pos) = (step.kv_slots[t] as usize, step.positions[t] as usize);
        let at = (slot * s.capacity + pos) * kv_dim;
        k_cache[at..at + kv_dim].copy_from_slice(&k[t * kv_dim..(t + 1) * kv_dim]);
        v_cache[at..at + kv_dim].copy_from_slice(&v[t * kv_dim..(t + 1) * kv_dim]);
    }
    let (k_cache, v_cache) = (&*k_cache, &*v_cache);
    let scale = 1.0 / (hd as f32).sqrt();
    // The positions token `t` attends, `from .. to`: a sliding window drops the oldest.
    let span = |t: usize| {
        let pos = step.positions[t] as usize;
        let from = if s.window > 0 {
            (pos + 1).saturating_sub(s.window)
        } else {
            0
        };
        (from, pos + 1)
    };
    // The query heads of token `t` that share KV head `kvh`, against positions `from .. to`.
    let heads = |t: usize, kvh: usize, (from, to): (usize, usize)| {
        let q0 = t * q_dim + kvh * group * hd;
        Heads {
            q: &q[q0..q0 + group * hd],
            group,
            k_cache,
            v_cache,
            first: (step.kv_slots[t] as usize * s.capacity + from) * kv_dim + kvh * hd,
            stride: kv_dim,
            len: to - from,
            scale,
        }
    };
    // One task per (token, KV head): the query heads that share a KV head read each cached
    // key and value once for all of them. A decode step has few such tasks (SmolLM2: 3 per
    // sequence); at long context each is then split over its positions, so every core works.
    let tasks = t_n * s.n_kv_heads;
    let threads = rayon::current_num_threads();
    let longest = (0..t_n).map(span).map(|(from, to)| to - from).max();
    let longest = longest.unwrap_or(0);
    let parts = if tasks > 0 && tasks < 2 * threads {
        (4 * threads).div_ceil(tasks).min(longest / PART_MIN)
    } else {
        1
    };
    let out = &mut out[..t_n * q_dim];
    if parts >= 2 {
        split_over_positions(out, parts, (tasks, group, hd), |i, part| {
            let (t, kvh) = (i / s.n_kv_heads, i % s.n_kv_heads);
            let (from, to) = span(t);
            let len = to - from;
            let (a, b) = (from + len * part / parts, from + len * (part + 1) / parts);
            (a < b).then(|| heads(t, kvh, (a, b)))
        });
        return Ok(());
    }
    out.par_chunks_mut(group * hd).enumerate().for_each_init(
        || (Vec::with_capacity(group * s.capacity), vec![0f32; group]),
        |(scores, lse), (i, o)| {
            let (t, kvh) = (i / s.n_kv_heads, i % s.n_kv_heads);
            attend_any(&heads(t, kvh, span(t)), scores, o, lse);
        },
    );
    Ok(())
}

/// Fewest positions in one part of a split task: below this the part's fixed costs (its own
/// softmax, its output rows, the combination) outweigh the cores it brings.
const PART_MIN: usize = 128;

/// Attention of `tasks` (token, KV head) tasks, each split into `parts` runs of positions
/// (flash-decoding): each part's output is its own softmax over its positions, and the parts
/// combine weighted by their share of the whole softmax, `exp(lse_part - lse_all)` with `lse`
/// the log-sum-exp of the scaled scores. `heads(task, part)` is the part's heads, `None` for an
/// empty part. `out` is `[tasks, group, hd]` as the unsplit loop writes it.
fn split_over_positions<'a>(
    out: &mut [f32],
    parts: usize,
    (tasks, group, hd): (usize, usize, usize),
    heads: impl Fn(usize, usize) -> Option<Heads<'a>> + Sync,
) {
    let width = group * hd;
    // Reused across steps (a decode step splits every layer's attention): taken out of the
    // thread's buffer and put back, so no borrow is held while rayon runs other work here.
    let mut buf = SPLIT_BUF.with(|b| b.take());
    buf.clear();
    buf.resize(tasks * parts * width, 0.0);
    buf.resize(tasks * parts * (width + group), f32::NEG_INFINITY);
    let (partial, lses) = buf.split_at_mut(tasks * parts * width);
    partial
        .par_chunks_mut(width)
        .zip(lses.par_chunks_mut(group))
        .enumerate()
        .for_each_init(Vec::new, |scores, (j, (o, lse))| {
            // An empty part keeps lse -inf: weight 0.
            if let Some(h) = heads(j / parts, j % parts) {
                attend_any(&h, scores, o, lse);
            }
        });
    for (i, o) in out.chunks_mut(width).enumerate() {
        for (g, og) in o.chunks_mut(hd).enumerate() {
            let at = |p: usize| (i * parts + p) * group + g;
            let all = (0..parts)
                .map(|p| lses[at(p)])
                .fold(f32::NEG_INFINITY, f32::max);
            // Each part's log-sum-exp becomes its unnormalised weight, in place.
            let mut total = 0.0;
            for p in 0..parts {
                lses[at(p)] = (lses[at(p)] - all).exp();
                total += lses[at(p)];
            }
            og.fill(0.0);
            for p in 0..parts {
                let w = lses[at(p)] / total;
                let part = &partial[at(p) * hd..][..hd];
                og.iter_mut().zip(part).for_each(|(o, x)| *o += w * x);
            }
        }
    }
    SPLIT_BUF.with(|b| b.replace(buf));
}

thread_local! {
    /// [`split_over_positions`]'s part outputs and log-sum-exps, kept between calls.
    static SPLIT_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`attend`] by the fastest kernel this CPU runs.
fn attend_any(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32], lse: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { attend_avx512(h, scores, o, lse) };
    }
    #[cfg(target_arch = "x86_64")]
    if super::packed_dot::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { attend_avx2(h, scores, o, lse) };
    }
    attend(h, scores, o, lse)
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

impl Heads<'_> {
    /// Head width and positions for the outputs `o`; panics unless every key and value read
    /// lies in the caches and `q` matches `o`.
    fn dims(&self, o: &[f32]) -> (usize, usize) {
        let (hd, n) = (o.len() / self.group, self.len);
        let last = self.first + (n - 1) * self.stride + hd;
        assert!(
            last <= self.k_cache.len() && last <= self.v_cache.len() && self.q.len() == o.len()
        );
        (hd, n)
    }
}

/// `o[g] = softmax(q[g] . K^T * scale) @ V` for each head `g` of the group, and `lse[g]` the
/// log-sum-exp of its scaled scores (what combines the parts of a split task); `scores` is
/// scratch (`[group, len]`).
#[inline(always)]
fn attend(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32], lse: &mut [f32]) {
    let (hd, n) = h.dims(o);
    key_scores(h, hd, scores);
    softmax_rows(scores, n, h.scale, lse);
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

/// Each row of `n` scores (one per head) scaled by `scale` and made its softmax; `lse` gets
/// each row's log-sum-exp of the scaled scores.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], n: usize, scale: f32, lse: &mut [f32]) {
    for (row, lse) in scores.chunks_mut(n).zip(lse) {
        row.iter_mut().for_each(|x| *x *= scale);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        row.iter_mut().for_each(|x| {
            *x = (*x - max).exp();
            sum += *x;
        });
        *lse = max + sum.ln();
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

/// [`attend`] for AVX2 and FMA: scores eight keys at a time ([`key_scores_avx2`]), the
/// softmax with a vector `exp` ([`super::avx2::exp8`]), then value sums kept in registers, up to two heads x 32 dims at a time, across every position (the portable loop
/// loads and stores its outputs once per position, which bounds it at long context). Head
/// dims that are not a multiple of 8 take the portable loop compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32], lse: &mut [f32]) {
    let (hd, n) = h.dims(o);
    if !hd.is_multiple_of(8) {
        return attend(h, scores, o, lse);
    }
    key_scores_avx2(h, hd, scores);
    super::avx2::softmax_rows(scores, n, h.scale, lse);
    for g0 in (0..h.group).step_by(2) {
        for c0 in (0..hd).step_by(32) {
            let at = (g0, c0, n, hd);
            // SAFETY: AVX2 and FMA; the values at `first + p * stride + c0 ..` for `p < n`
            // lie in the cache (`Heads::dims` asserted), `scores` holds `group * n` weights,
            // `o` holds `group * hd` outputs, and `g0 + G <= group`, `c0 + 8 * C <= hd`.
            unsafe {
                match ((h.group - g0).min(2), ((hd - c0) / 8).min(4)) {
                    (1, 1) => value_sums_avx2::<1, 1>(h, scores, at, o),
                    (1, 2) => value_sums_avx2::<1, 2>(h, scores, at, o),
                    (1, 3) => value_sums_avx2::<1, 3>(h, scores, at, o),
                    (1, _) => value_sums_avx2::<1, 4>(h, scores, at, o),
                    (_, 1) => value_sums_avx2::<2, 1>(h, scores, at, o),
                    (_, 2) => value_sums_avx2::<2, 2>(h, scores, at, o),
                    (_, 3) => value_sums_avx2::<2, 3>(h, scores, at, o),
                    (_, _) => value_sums_avx2::<2, 4>(h, scores, at, o),
                }
            }
        }
    }
}

/// [`key_scores`] for AVX2 and FMA: two heads of the group at a time against four keys, or the
/// last head against eight, each (head, key) pair in its own accumulator (one dot's FMAs form a
/// chain of dependent adds; eight chains side by side keep the FMA units busy, and a key loaded
/// once serves both heads), reduced into one vector of eight scores; the last keys one dot at a
/// time. `hd` is a multiple of 8; the caller checked the ranges ([`Heads::dims`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn key_scores_avx2(h: &Heads<'_>, hd: usize, scores: &mut Vec<f32>) {
    scores.clear();
    scores.resize(h.group * h.len, 0.0);
    let mut g0 = 0;
    while g0 < h.group {
        if h.group - g0 >= 2 {
            key_scores_block_avx2::<2, 4>(h, hd, g0, scores);
            g0 += 2;
        } else {
            key_scores_block_avx2::<1, 8>(h, hd, g0, scores);
            g0 += 1;
        }
    }
}

/// The scores of heads `g0 .. g0 + G` against every key, `K = 8 / G` keys at a time:
/// accumulator `g * K + i` holds head `g0 + g` against key `p + i`.
///
/// # Safety
/// AVX2 and FMA; `g0 + G <= group`, `scores` holds `group * len` values, and every key lies in
/// the cache ([`Heads::dims`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn key_scores_block_avx2<const G: usize, const K: usize>(
    h: &Heads<'_>,
    hd: usize,
    g0: usize,
    scores: &mut [f32],
) {
    use std::arch::x86_64::*;
    const { assert!(G * K == 8) };
    let (n, keys) = (h.len, h.k_cache.as_ptr().add(h.first));
    let q = &h.q[g0 * hd..(g0 + G) * hd];
    let rows = &mut scores[g0 * n..(g0 + G) * n];
    let mut p = 0;
    while p + K <= n {
        let mut acc = [_mm256_setzero_ps(); 8];
        for j in (0..hd).step_by(8) {
            let mut qj = [_mm256_setzero_ps(); G];
            for (g, qg) in qj.iter_mut().enumerate() {
                *qg = _mm256_loadu_ps(q.as_ptr().add(g * hd + j));
            }
            for i in 0..K {
                let k = _mm256_loadu_ps(keys.add((p + i) * h.stride + j));
                for (g, qg) in qj.iter().enumerate() {
                    acc[g * K + i] = _mm256_fmadd_ps(*qg, k, acc[g * K + i]);
                }
            }
        }
        // Lane l of the result is the sum of acc[l]'s eight lanes.
        let t0 = _mm256_hadd_ps(acc[0], acc[1]);
        let t1 = _mm256_hadd_ps(acc[2], acc[3]);
        let t2 = _mm256_hadd_ps(acc[4], acc[5]);
        let t3 = _mm256_hadd_ps(acc[6], acc[7]);
        let (u0, u1) = (_mm256_hadd_ps(t0, t1), _mm256_hadd_ps(t2, t3));
        let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
        let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(lo, hi));
        for (g, l) in lanes.chunks_exact(K).enumerate() {
            rows[g * n + p..g * n + p + K].copy_from_slice(l);
        }
        p += K;
    }
    for (row, qg) in rows.chunks_mut(n).zip(q.chunks_exact(hd)) {
        for (p, s) in row.iter_mut().enumerate().skip(p) {
            let at = h.first + p * h.stride;
            *s = dot(qg, &h.k_cache[at..at + hd]);
        }
    }
}

/// `o[g][c0 .. c0 + 8 C] = sum_p w[g][p] * v_p[c0 ..]` for heads `g0 .. g0 + G` (`at` is
/// `(g0, c0, n, hd)`), the `G x C` accumulators in registers across every position.
///
/// # Safety
/// AVX2 and FMA; as [`attend_avx2`] states at its call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn value_sums_avx2<const G: usize, const C: usize>(
    h: &Heads<'_>,
    scores: &[f32],
    (g0, c0, n, hd): (usize, usize, usize, usize),
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); C]; G];
    let base = h.v_cache.as_ptr().add(h.first + c0);
    for p in 0..n {
        let v = base.add(p * h.stride);
        let mut vv = [_mm256_setzero_ps(); C];
        for (j, vv) in vv.iter_mut().enumerate() {
            *vv = _mm256_loadu_ps(v.add(8 * j));
        }
        for (g, acc) in acc.iter_mut().enumerate() {
            let w = _mm256_set1_ps(*scores.get_unchecked((g0 + g) * n + p));
            for (a, vv) in acc.iter_mut().zip(&vv) {
                *a = _mm256_fmadd_ps(w, *vv, *a);
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        let dst = o.as_mut_ptr().add((g0 + g) * hd + c0);
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(dst.add(8 * j), *a);
        }
    }
}

/// `scores[g * len + p] = dot(q[g], key p)` (`scores` resized to `[group, len]`): the
/// register-blocked kernel where the CPU has AVX-512 (each key loaded once for the whole
/// group), else one dot at a time. The caller checked the ranges ([`Heads::dims`]).
#[inline(always)]
fn key_scores(h: &Heads<'_>, hd: usize, scores: &mut Vec<f32>) {
    scores.clear();
    scores.resize(h.group * h.len, 0.0);
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F checked; `q` holds `group` rows of `hd`, the keys `len` rows of
        // `hd` values `stride` apart from `first` (asserted by `Heads::dims`), and `scores`
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

/// [`attend`] for AVX-512: scores by the register-blocked kernel, a vectorised softmax (exp by
/// [`super::avx512::exp16`]), and value sums kept in registers, four heads x 64 dims at a time (the portable
/// loop would load and store the outputs once per position). Head dims that are not a
/// multiple of 16, or groups over 64 heads, take the portable loop compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_avx512(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32], lse: &mut [f32]) {
    let (hd, n) = h.dims(o);
    if !hd.is_multiple_of(16) || h.group > 64 {
        return attend(h, scores, o, lse);
    }
    // This head's keys and values are `hd`-value runs `stride` apart (the other heads' lie
    // between), a pattern the hardware prefetchers follow poorly: ask for them up front,
    // keys into L1, values into L2 for the value sums after the softmax.
    for p in 0..n {
        let at = h.first + p * h.stride;
        for i in (0..hd).step_by(16) {
            use std::arch::x86_64::*;
            // SAFETY: prefetches of addresses inside the caches (`Heads::dims` asserted); they read
            // nothing architecturally.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(h.k_cache.as_ptr().add(at + i) as *const i8);
                _mm_prefetch::<_MM_HINT_T1>(h.v_cache.as_ptr().add(at + i) as *const i8);
            }
        }
    }
    key_scores(h, hd, scores);
    let mut inv = [0f32; 64];
    for ((row, inv), lse) in scores.chunks_mut(n).zip(&mut inv).zip(lse) {
        // SAFETY: AVX-512F and FMA (this function's features).
        let (max, sum) = unsafe { softmax_row(row, h.scale) };
        *inv = 1.0 / sum;
        *lse = max + sum.ln();
    }
    for g0 in (0..h.group).step_by(4) {
        for c0 in (0..hd).step_by(64) {
            let at = Block {
                g0,
                c0,
                n,
                hd,
                inv: &inv,
            };
            // SAFETY: AVX-512F and FMA; the values at `first + p * stride + c0 ..` for
            // `p < n` lie in the cache (`Heads::dims` asserted), `scores` holds `group * n` weights,
            // `o` holds `group * hd` outputs, and `g0 + G <= group`, `c0 + 16 * C <= hd`.
            unsafe {
                match ((h.group - g0).min(4), ((hd - c0) / 16).min(4)) {
                    (1, 1) => value_sums::<1, 1>(h, scores, &at, o),
                    (1, 2) => value_sums::<1, 2>(h, scores, &at, o),
                    (1, 3) => value_sums::<1, 3>(h, scores, &at, o),
                    (1, _) => value_sums::<1, 4>(h, scores, &at, o),
                    (2, 1) => value_sums::<2, 1>(h, scores, &at, o),
                    (2, 2) => value_sums::<2, 2>(h, scores, &at, o),
                    (2, 3) => value_sums::<2, 3>(h, scores, &at, o),
                    (2, _) => value_sums::<2, 4>(h, scores, &at, o),
                    (3, 1) => value_sums::<3, 1>(h, scores, &at, o),
                    (3, 2) => value_sums::<3, 2>(h, scores, &at, o),
                    (3, 3) => value_sums::<3, 3>(h, scores, &at, o),
                    (3, _) => value_sums::<3, 4>(h, scores, &at, o),
                    (_, 1) => value_sums::<4, 1>(h, scores, &at, o),
                    (_, 2) => value_sums::<4, 2>(h, scores, &at, o),
                    (_, 3) => value_sums::<4, 3>(h, scores, &at, o),
                    (_, _) => value_sums::<4, 4>(h, scores, &at, o),
                }
            }
        }
    }
}

/// Where one call of [`value_sums`] works: heads `g0..`, dims `c0..`, over `n` positions.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    g0: usize,
    c0: usize,
    n: usize,
    hd: usize,
    /// `1 / sum` of each head's exponentials (the softmax's normalisation, applied once).
    inv: &'a [f32; 64],
}

/// `o[g][c0 .. c0 + 16 C] = inv[g] * sum_p w[g][p] * v_p[c0 ..]` for heads `g0 .. g0 + G`,
/// the `G x C` accumulators in registers across every position.
///
/// # Safety
/// AVX-512F and FMA; as [`attend_avx512`] states at its call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn value_sums<const G: usize, const C: usize>(
    h: &Heads<'_>,
    scores: &[f32],
    b: &Block<'_>,
    o: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); C]; G];
    let base = h.v_cache.as_ptr().add(h.first + b.c0);
    for p in 0..b.n {
        let v = base.add(p * h.stride);
        let mut vv = [_mm512_setzero_ps(); C];
        for (j, vv) in vv.iter_mut().enumerate() {
            *vv = _mm512_loadu_ps(v.add(16 * j));
        }
        for (g, acc) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_ps(*scores.get_unchecked((b.g0 + g) * b.n + p));
            for (a, vv) in acc.iter_mut().zip(&vv) {
                *a = _mm512_fmadd_ps(w, *vv, *a);
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        let inv = _mm512_set1_ps(b.inv[b.g0 + g]);
        let dst = o.as_mut_ptr().add((b.g0 + g) * b.hd + b.c0);
        for (j, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(dst.add(16 * j), _mm512_mul_ps(*a, inv));
        }
    }
}

/// `row[p] = exp(row[p] * scale - max)` with `max` the row's largest scaled score (the
/// portable loop's values up to [`super::avx512::exp16`]'s rounding); returns `max` and their
/// sum.
///
/// # Safety
/// AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn softmax_row(row: &mut [f32], scale: f32) -> (f32, f32) {
    use std::arch::x86_64::*;
    let n = row.len();
    let ptr = row.as_mut_ptr();
    let mask = |i: usize| -> u16 { ((1u32 << (n - i).min(16)) - 1) as u16 };
    let scale = _mm512_set1_ps(scale);
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(i), ptr.add(i)), scale);
        max = _mm512_mask_max_ps(max, mask(i), max, x);
    }
    let m = _mm512_reduce_max_ps(max);
    let max = _mm512_set1_ps(m);
    let mut sum = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(i), ptr.add(i)), scale);
        let e = super::avx512::exp16(_mm512_sub_ps(x, max));
        _mm512_mask_storeu_ps(ptr.add(i), mask(i), e);
        sum = _mm512_mask_add_ps(sum, mask(i), sum, e);
    }
    (m, _mm512_reduce_add_ps(sum))
}
