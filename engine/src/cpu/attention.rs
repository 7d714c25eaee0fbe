//! `attention`: causal grouped-query attention over the KV cache.
//!
//! The cache is `[slots, capacity, n_kv_heads * head_dim]` for K and for V. The step's new keys
//! and values are stored first, so a prefill chunk attends to itself causally through the cache.
//! Work is split by (token, KV head). A prefill takes blocks of consecutive tokens of one
//! sequence instead of single tokens, so that each key and value read from memory serves every
//! query row of the block (flash-attention's query blocking). When a step has fewer tasks than
//! twice the threads (a decode step) and a long context, each task is also split over its
//! positions and the parts combined by their log-sum-exp (flash-decoding), so every core works.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

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
    s.check_scores()?;
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
    let (scale, softcap) = (s.scale, s.softcap);
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
            spans: None,
            k_cache,
            v_cache,
            first: (step.kv_slots[t] as usize * s.capacity + from) * kv_dim + kvh * hd,
            stride: kv_dim,
            len: to - from,
            scale,
            softcap,
        }
    };
    // Prefill: one task per block of consecutive tokens, while the blocks keep every core busy.
    let threads = rayon::current_num_threads();
    let out = &mut out[..t_n * q_dim];
    if t_n.div_ceil(QUERY_BLOCK) >= 2 * threads {
        out.par_chunks_mut(QUERY_BLOCK * q_dim)
            .enumerate()
            .for_each_init(BlockScratch::default, |sc, (b, o)| {
                let (t0, n) = (b * QUERY_BLOCK, o.len() / q_dim);
                let rows = n * group;
                sc.lse.resize(rows, 0.0);
                // One run of positions of one sequence (a block that straddles two sequences,
                // or a step's tokens out of order, go token by token).
                let run = (1..n).all(|i| {
                    step.kv_slots[t0 + i] == step.kv_slots[t0]
                        && step.positions[t0 + i] as usize == step.positions[t0] as usize + i
                });
                if !run {
                    for (i, o) in o.chunks_mut(q_dim).enumerate() {
                        for (kvh, o) in o.chunks_mut(group * hd).enumerate() {
                            let h = heads(t0 + i, kvh, span(t0 + i));
                            attend_any(&h, &mut sc.scores, o, &mut sc.lse[..group]);
                        }
                    }
                    return;
                }
                // The block's rows score the union of its tokens' positions (the first token's
                // first to the last token's last); each row keeps its own span.
                let (from, to) = (span(t0).0, span(t0 + n - 1).1);
                sc.spans.clear();
                sc.spans
                    .extend((t0..t0 + n).map(span).map(|(a, b)| (a - from, b - from)));
                sc.o.resize(rows * hd, 0.0);
                for kvh in 0..s.n_kv_heads {
                    sc.q.clear();
                    for i in 0..n {
                        sc.q.extend_from_slice(
                            &q[(t0 + i) * q_dim + kvh * group * hd..][..group * hd],
                        );
                    }
                    let h = Heads {
                        q: &sc.q,
                        spans: Some(&sc.spans),
                        ..heads(t0, kvh, (from, to))
                    };
                    attend_any(&h, &mut sc.scores, &mut sc.o, &mut sc.lse);
                    for (i, o) in o.chunks_mut(q_dim).enumerate() {
                        o[kvh * group * hd..][..group * hd]
                            .copy_from_slice(&sc.o[i * group * hd..][..group * hd]);
                    }
                }
            });
        return Ok(());
    }
    // Otherwise one task per (token, KV head): the query heads that share a KV head read each
    // cached key and value once for all of them. A decode step has few such tasks (SmolLM2: 3
    // per sequence); at long context each is then split over its positions, so every core works.
    let tasks = t_n * s.n_kv_heads;
    let longest = (0..t_n).map(span).map(|(from, to)| to - from).max();
    let longest = longest.unwrap_or(0);
    let parts = if tasks > 0 && tasks < 2 * threads {
        (4 * threads).div_ceil(tasks).min(longest / PART_MIN)
    } else {
        1
    };
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

/// Consecutive tokens per prefill task: their query rows share each key and value the task
/// reads (4 tokens x SmolLM2's 3 heads per KV head: 12 rows).
const QUERY_BLOCK: usize = 4;

/// A prefill block task's buffers, kept across the blocks one thread runs.
#[derive(Default)]
struct BlockScratch {
    scores: Vec<f32>,
    lse: Vec<f32>,
    spans: Vec<(usize, usize)>,
    /// The block's query rows for one KV head, gathered, and its outputs.
    q: Vec<f32>,
    o: Vec<f32>,
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
        return unsafe { avx512::attend_avx512(h, scores, o, lse) };
    }
    #[cfg(target_arch = "x86_64")]
    if super::packed_dot::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::attend_avx2(h, scores, o, lse) };
    }
    attend(h, scores, o, lse)
}

/// Query rows that share one KV head (the heads of its group, of one token or of a block of
/// consecutive tokens) against its cached keys and values.
struct Heads<'a> {
    /// [`Heads::rows`] query rows of the head width, one after the other.
    q: &'a [f32],
    /// Query heads per token for this KV head: rows `group * i ..` belong to token `i`.
    group: usize,
    /// Token `i` attends positions `spans[i].0 .. spans[i].1` of `0..len`; `None`: every row
    /// attends all of them.
    spans: Option<&'a [(usize, usize)]>,
    k_cache: &'a [f32],
    v_cache: &'a [f32],
    /// Offset of position 0's key (and value) for this KV head in the caches.
    first: usize,
    /// Values between consecutive positions.
    stride: usize,
    /// Positions scored (`0..len`).
    len: usize,
    scale: f32,
    /// [`AttnShape::softcap`].
    softcap: f32,
}

impl Heads<'_> {
    /// Head width and positions for the outputs `o`; panics unless every key and value read
    /// lies in the caches, `q` matches `o`, and every span is a non-empty run inside `0..len`.
    fn dims(&self, o: &[f32]) -> (usize, usize) {
        let (hd, n) = (o.len() / self.rows(), self.len);
        let last = self.first + (n - 1) * self.stride + hd;
        assert!(
            last <= self.k_cache.len() && last <= self.v_cache.len() && self.q.len() == o.len()
        );
        if let Some(spans) = self.spans {
            assert!(spans.iter().all(|&(a, b)| a < b && b <= n));
        }
        (hd, n)
    }

    /// Query rows: `group` per token.
    #[inline(always)]
    fn rows(&self) -> usize {
        self.spans.map_or(self.group, |s| s.len() * self.group)
    }

    /// The positions row `r` attends.
    #[inline(always)]
    fn span(&self, r: usize) -> (usize, usize) {
        self.spans.map_or((0, self.len), |s| s[r / self.group])
    }

    /// The positions any of `rows` attends, `(first, end)`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels only
    #[inline(always)]
    fn positions_of(&self, rows: std::ops::Range<usize>) -> (usize, usize) {
        rows.map(|r| self.span(r))
            .fold((self.len, 0), |(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

/// `o[r] = softmax(cap(q[r] . K^T * scale)) @ V` for each row `r` over its span (`cap`: the
/// soft cap where [`Heads::softcap`] > 0, [`softmax_spans`]), and `lse[r]` the log-sum-exp of
/// its scores (what combines the parts of a split task); `scores` is scratch (`[rows, len]`).
#[inline(always)]
fn attend(h: &Heads<'_>, scores: &mut Vec<f32>, o: &mut [f32], lse: &mut [f32]) {
    let (hd, n) = h.dims(o);
    key_scores(h, hd, scores);
    softmax_spans(h, scores, lse, |_, row, lse, scale| {
        *lse = softmax_row(row, scale)
    });
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

/// Each row `r` of `scores` (`[rows, len]`) made its softmax over its own span by
/// `softmax(r, row[a..b], lse[r], scale)` (`scale`: the factor still to apply to the row), and
/// its scores outside the span zeroed: weight 0 in the value sums, which then may run over the
/// positions of several rows at once. Gemma 2's capped scores are scaled and capped here,
/// `cap * tanh(s * scale / cap)`, and take a factor of 1.
#[inline(always)]
fn softmax_spans(
    h: &Heads<'_>,
    scores: &mut [f32],
    lse: &mut [f32],
    mut softmax: impl FnMut(usize, &mut [f32], &mut f32, f32),
) {
    for (r, (row, lse)) in scores.chunks_mut(h.len).zip(lse).enumerate() {
        let (a, b) = h.span(r);
        row[..a].fill(0.0);
        row[b..].fill(0.0);
        let scale = match h.softcap > 0.0 {
            true => {
                let (cap, into) = (h.softcap, h.scale / h.softcap);
                (row[a..b].iter_mut()).for_each(|x| *x = cap * (*x * into).tanh());
                1.0
            }
            false => h.scale,
        };
        softmax(r, &mut row[a..b], lse, scale);
    }
}

/// `row` scaled by `scale` and made its softmax; returns the log-sum-exp of the scaled scores.
#[inline(always)]
fn softmax_row(row: &mut [f32], scale: f32) -> f32 {
    row.iter_mut().for_each(|x| *x *= scale);
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    row.iter_mut().for_each(|x| {
        *x = (*x - max).exp();
        sum += *x;
    });
    row.iter_mut().for_each(|x| *x /= sum);
    max + sum.ln()
}

/// `scores[r * len + p] = dot(q[r], key p)` (`scores` resized to `[rows, len]`): the
/// register-blocked kernel where the CPU has AVX-512 (each key loaded once for four rows),
/// else one dot at a time. The caller checked the ranges ([`Heads::dims`]).
#[inline(always)]
fn key_scores(h: &Heads<'_>, hd: usize, scores: &mut Vec<f32>) {
    scores.clear();
    scores.resize(h.rows() * h.len, 0.0);
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: AVX-512F checked; `q` holds `rows` rows of `hd`, the keys `len` rows of
        // `hd` values `stride` apart from `first` (asserted by `Heads::dims`), and `scores`
        // `rows * len` values.
        return unsafe {
            super::avx512::rows_by_features(
                h.q.as_ptr(),
                hd,
                h.rows(),
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
