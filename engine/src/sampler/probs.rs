//! The sampler's passes over a whole vocabulary row, written to vectorise: the probabilities
//! `exp((l - max) / T)` with per-block sums, the mass above a threshold, the maxima of chunks.
//! A draw at a positive temperature over Llama 3's 128,256 logits called libm's `expf` once
//! per token and summed in one f64 chain: 1.10 ms a row at temperature 1 on the dev machine
//! (1.60 ms with top-p), against a decode step of about 1 ms on a GPU.
//!
//! Every path computes the same bits: plain IEEE adds and multiplies in a fixed order, no
//! fused multiply-add, so AVX-512, AVX2 and the portable build draw the same tokens from the
//! same seed. The vector builds are the same code compiled for wider registers.

/// Tokens per block of [`probabilities`]' sums (the draw finds its block, then walks it).
pub(crate) const BLOCK: usize = 256;

/// Tokens per chunk of [`chunk_maxima`].
pub(crate) const CHUNK: usize = 64;

/// The lowest `(l - max) / T` given a probability: `e^-86` of the best token's, so that every
/// probability [`exp_neg`] returns, and the power of two it scales by, is a normal f32 (below
/// about `e^-87.3` they turn subnormal, slow on x86, and soon underflow to 0).
pub(crate) const MIN_EXPONENT: f32 = -86.0;

/// `e^x` for `x` in `[MIN_EXPONENT, 0]` (smaller `x`, `-inf` included, gives `e^MIN_EXPONENT`),
/// within 2 ulp of the exact value: Cephes' `expf` (a range reduction by `ln 2` in two parts
/// and a degree-5 polynomial on `[-ln 2 / 2, ln 2 / 2]`), with the rounding to an integer and
/// the power of two taken from the bits of `y + 1.5 * 2^23`, so no branch and no libm call.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    use crate::cpu::exp_poly::{LN2_HI, LN2_LO};
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = if x >= MIN_EXPONENT { x } else { MIN_EXPONENT }; // also maps NaN there
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = p * (r * r) + r + 1.0;
    // n in [-124, 0]: 2^n is a normal f32 built from its exponent bits.
    let k = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    e * f32::from_bits(((k + 127) << 23) as u32)
}

/// Runs `$body` (an expression over the arguments) compiled for AVX-512 or AVX2 where the
/// CPU has them (the same operations, so the same bits), else as built.
macro_rules! widest {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                fn avx512($($arg: $ty),*) -> $ret { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret { body($($arg),*) }
                if crate::cpu::avx512_available() {
                    // SAFETY: the CPU has the features (checked at run time).
                    return unsafe { avx512($($arg),*) };
                }
                if crate::cpu::avx2_available() {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

widest! {
    /// Replaces each logit `l` of `work` (sanitised: no NaN) by its unnormalised probability
    /// `exp_neg((l - max) / temp)`, or by 0 where `l < floor` or `l` is `-inf`; `blocks` gets
    /// the sum of each [`BLOCK`] of them (f64, 8 lanes added in a fixed order).
    probabilities(work: &mut [f32], max: f32, temp: f32, floor: f32, blocks: &mut Vec<f64>) -> () {
        blocks.clear();
        for block in work.chunks_mut(BLOCK) {
            let mut lanes = [0.0f64; 8];
            let mut chunks = block.chunks_exact_mut(8);
            for chunk in &mut chunks {
                for (l, s) in chunk.iter_mut().zip(&mut lanes) {
                    let usable = *l >= floor && *l > f32::NEG_INFINITY;
                    let q = exp_neg((*l - max) / temp);
                    *l = if usable { q } else { 0.0 };
                    *s += f64::from(*l);
                }
            }
            for l in chunks.into_remainder() {
                let usable = *l >= floor && *l > f32::NEG_INFINITY;
                *l = if usable { exp_neg((*l - max) / temp) } else { 0.0 };
                lanes[0] += f64::from(*l);
            }
            blocks.push(sum_lanes(&lanes));
        }
    }
}

widest! {
    /// The sum (f64, 8 lanes in a fixed order) and the number of the values of `q` that are
    /// `>= tau`.
    mass_count_at_least(q: &[f32], tau: f32) -> (f64, usize) {
        let mut lanes = [0.0f64; 8];
        let mut counts = [0u32; 8];
        let mut chunks = q.chunks_exact(8);
        for chunk in &mut chunks {
            for ((&v, s), c) in chunk.iter().zip(&mut lanes).zip(&mut counts) {
                let hit = v >= tau;
                *s += if hit { f64::from(v) } else { 0.0 };
                *c += u32::from(hit);
            }
        }
        let mut count = counts.iter().map(|&c| c as usize).sum::<usize>();
        for &v in chunks.remainder() {
            lanes[0] += if v >= tau { f64::from(v) } else { 0.0 };
            count += usize::from(v >= tau);
        }
        (sum_lanes(&lanes), count)
    }
}

widest! {
    /// Appends `(index, value)` for each value of `values` that is `>= least` and `> above`,
    /// in index order (16 values tested at a time, the stretches without a hit skipped: top-k's
    /// and a peaked row's top-p keep few).
    gather(values: &[f32], least: f32, above: f32, out: &mut Vec<(u32, f32)>) -> () {
        let keep = |v: f32| v >= least && v > above;
        for (c, chunk) in values.chunks(16).enumerate() {
            if chunk.iter().fold(false, |hit, &v| hit | keep(v)) {
                let at = (c * 16) as u32;
                out.extend((at..).zip(chunk.iter().copied()).filter(|&(_, v)| keep(v)));
            }
        }
    }
}

widest! {
    /// Replaces NaN by `-inf`, `+inf` by `f32::MAX` and `-0.0` by `0.0` in place; returns the
    /// max and whether a NaN was seen.
    sanitize_max(v: &mut [f32]) -> (f32, bool) {
        // Not `clamp`, which keeps NaN: `max` ignores a NaN argument. `+ 0.0` turns -0.0 into
        // +0.0.
        #[allow(clippy::manual_clamp)]
        let fix = |x: f32| x.max(f32::NEG_INFINITY).min(f32::MAX) + 0.0;
        let mut lanes = [f32::NEG_INFINITY; 16]; // independent accumulators, so this vectorises
        let mut nan = [false; 16];
        let mut chunks = v.chunks_exact_mut(16);
        for chunk in &mut chunks {
            for ((x, m), n) in chunk.iter_mut().zip(&mut lanes).zip(&mut nan) {
                *n |= x.is_nan();
                *x = fix(*x);
                *m = if *x > *m { *x } else { *m };
            }
        }
        for x in chunks.into_remainder() {
            nan[0] |= x.is_nan();
            *x = fix(*x);
            lanes[0] = lanes[0].max(*x);
        }
        let max = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
        (max, nan.contains(&true))
    }
}

widest! {
    /// The largest value of each [`CHUNK`] of `values` (the last chunk may be shorter), in
    /// `out`; a chunk of `-inf` only gives `-inf`.
    chunk_maxima(values: &[f32], out: &mut Vec<f32>) -> () {
        out.clear();
        out.extend(values.chunks(CHUNK).map(|c| {
            let mut lanes = [f32::NEG_INFINITY; 8];
            let mut parts = c.chunks_exact(8);
            for part in &mut parts {
                for (&v, m) in part.iter().zip(&mut lanes) {
                    *m = if v > *m { v } else { *m };
                }
            }
            for &v in parts.remainder() {
                lanes[0] = if v > lanes[0] { v } else { lanes[0] };
            }
            lanes.into_iter().fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
        }));
    }
}

/// Lanes added pairwise in a fixed order.
#[inline(always)]
fn sum_lanes(l: &[f64; 8]) -> f64 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// A value `m` such that at least `k` of `values` are `>= m` (with ties, more), as large as
/// the chunk maxima allow: the `k`-th largest of [`chunk_maxima`] (each of `k` chunks holds a
/// value at least that large). `None` when there are fewer than `k` chunks. `maxima` is
/// scratch, reordered.
pub(crate) fn kth_chunk_max(maxima: &mut [f32], k: usize) -> Option<f32> {
    if k == 0 || k > maxima.len() {
        return None;
    }
    let (_, m, _) = maxima.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(*m)
}

/// The plain draw (no filter) from the sanitised logits in `work` (their max `max`, no NaN) at
/// temperature `temp > 0`, given the uniform draw `u` in `[0, 1)`: `work` becomes the
/// probabilities, the token is where `u` times their sum lands ([`walk`]), or the last token
/// with mass where rounding leaves the sum short. What [`crate::sampler::Sampler`] draws with
/// no filter, bias or penalty, and what `Backend::sample` computes on a device.
pub(crate) fn draw_plain(
    work: &mut [f32],
    max: f32,
    temp: f32,
    u: f64,
    blocks: &mut Vec<f64>,
) -> u32 {
    let floor = max + MIN_EXPONENT * temp;
    probabilities(work, max, temp, floor, blocks);
    let r = u * blocks.iter().sum::<f64>();
    walk(work, blocks, r).unwrap_or_else(|| work.iter().rposition(|&q| q > 0.0).unwrap_or(0) as u32)
}

/// Where the draw lands: the first token whose running sum of `q` (in id order, block sums
/// first) exceeds `r`, for `r` below the sum of `blocks` ([`probabilities`]); where rounding
/// leaves the walk inside the block short of `r`, that block's last token with mass.
pub(crate) fn walk(q: &[f32], blocks: &[f64], r: f64) -> Option<u32> {
    let mut acc = 0.0f64;
    for (b, &s) in blocks.iter().enumerate() {
        if r < acc + s {
            let start = b * BLOCK;
            let mut last = None;
            for (i, &v) in q[start..(start + BLOCK).min(q.len())].iter().enumerate() {
                if v > 0.0 {
                    acc += f64::from(v);
                    last = Some((start + i) as u32);
                    if r < acc {
                        return last;
                    }
                }
            }
            return last;
        }
        acc += s;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_within_two_ulp_of_exp() {
        // The error in units of the last place of f32 at the exact value.
        let ulps = |x: f32| {
            let (got, want) = (f64::from(exp_neg(x)), f64::from(x).exp());
            let ulp = (want as f32).next_up() - want as f32;
            (got - want).abs() / f64::from(ulp)
        };
        let mut worst = 0.0f64;
        let mut x = MIN_EXPONENT;
        while x <= 0.0 {
            worst = worst.max(ulps(x));
            x += 1.1e-3;
        }
        let edges = [
            0.0,
            -1e-30,
            -0.5,
            -0.346_573_6,
            -std::f32::consts::LN_2,
            MIN_EXPONENT,
        ];
        for x in edges {
            worst = worst.max(ulps(x));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert!(exp_neg(-1e-7) <= 1.0);
        assert_eq!(exp_neg(0.0), 1.0);
        let floor = exp_neg(MIN_EXPONENT);
        assert_eq!(exp_neg(f32::NEG_INFINITY), floor);
        assert_eq!(exp_neg(-1e30), floor);
        assert!(floor.is_normal());
    }

    /// The vector builds compute what the portable one does, bit for bit.
    #[test]
    fn every_build_gives_the_same_bits() {
        let n = 3 * BLOCK + 13;
        let logits: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.05 - 40.0)
            .collect();
        let (max, temp, floor) = (10.0, 0.3, 10.0 - 86.0 * 0.3);
        let mut q = logits.clone();
        let mut blocks = Vec::new();
        probabilities(&mut q, max, temp, floor, &mut blocks);
        let mut q_plain = logits.clone();
        let mut blocks_plain = Vec::new();
        for block in q_plain.chunks_mut(BLOCK) {
            let mut lanes = [0.0f64; 8];
            let full = block.len() / 8 * 8;
            for (i, l) in block.iter_mut().enumerate() {
                let usable = *l >= floor;
                *l = if usable {
                    exp_neg((*l - max) / temp)
                } else {
                    0.0
                };
                lanes[if i < full { i % 8 } else { 0 }] += f64::from(*l);
            }
            blocks_plain.push(sum_lanes(&lanes));
        }
        assert_eq!(
            q.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            q_plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(blocks, blocks_plain);
        assert!(q.contains(&0.0) && q.iter().any(|&v| v > 0.0));
        let mut maxima = Vec::new();
        chunk_maxima(&logits, &mut maxima);
        let plain: Vec<f32> = logits
            .chunks(CHUNK)
            .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect();
        assert_eq!(maxima, plain);
        let tau = 1e-3;
        let (mass, count) = mass_count_at_least(&q, tau);
        let want: f64 = q.iter().filter(|&&v| v >= tau).map(|&v| f64::from(v)).sum();
        assert!((mass - want).abs() <= 1e-12 * want, "{mass} vs {want}");
        assert_eq!(count, q.iter().filter(|&&v| v >= tau).count());
        let mut got = Vec::new();
        gather(&q, tau, 0.0, &mut got);
        let want: Vec<(u32, f32)> = (0..)
            .zip(q.iter().copied())
            .filter(|c| c.1 >= tau)
            .collect();
        assert!(!want.is_empty() && want.len() < q.len());
        assert_eq!(got, want);
        let mut got = Vec::new();
        gather(&q, f32::NEG_INFINITY, 0.0, &mut got);
        assert_eq!(got.len(), q.iter().filter(|&&v| v > 0.0).count());
    }

    #[test]
    fn walk_finds_the_running_sum() {
        let n = 2 * BLOCK + 5;
        let q: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 0.5 }).collect();
        let blocks: Vec<f64> = q
            .chunks(BLOCK)
            .map(|c| c.iter().map(|&v| f64::from(v)).sum())
            .collect();
        let total: f64 = blocks.iter().sum();
        for r in [0.0, 0.49, 0.5, 0.99, 1.0, 200.0, total - 0.01] {
            let mut acc = 0.0;
            let want = (0..n)
                .find(|&i| {
                    acc += f64::from(q[i]);
                    r < acc
                })
                .map(|i| i as u32);
            assert_eq!(walk(&q, &blocks, r), want, "r = {r}");
        }
        assert_eq!(walk(&q, &blocks, total), None);
    }

    #[test]
    fn kth_chunk_max_bounds_the_kth_value() {
        let mut m = vec![3.0, 9.0, 1.0, 7.0];
        assert_eq!(kth_chunk_max(&mut m, 2), Some(7.0));
        assert_eq!(kth_chunk_max(&mut m, 5), None);
        assert_eq!(kth_chunk_max(&mut m, 0), None);
    }
}
