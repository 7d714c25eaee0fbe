//! `sample`: each logit row's token drawn at its temperature from a uniform draw the host made,
//! so that a sampled decode step downloads one value a row instead of the row
//! (`Backend::sample`). The draw is the host sampler's own with no filter, bias or penalty
//! ([`crate::sampler::Sampler`]; the same function), temperature 0 its greedy pick.

use rayon::prelude::*;

use super::argmax::{check_vocab, pick};
use super::check_len;
use crate::error::Result;
use crate::sampler::probs;

/// Values per logit row in a step's `pick_args` ([`crate::backend::StepPlan::pick_args`]):
/// the temperature, then the draw in `[0, 1)` as the low and high 32 bits of an f64, carried
/// bit for bit by f32 buffers.
pub const ARGS_PER_ROW: usize = 3;

/// Appends one row's [`ARGS_PER_ROW`] values to `out`. The draw's halves are bit patterns,
/// some of them NaNs: buffers copy them as they are (x86-64, ARM and GPUs do; x87 arithmetic
/// would not, and none touches them).
pub fn push_args(temperature: f32, draw: f64, out: &mut Vec<f32>) {
    let bits = draw.to_bits();
    out.extend([
        temperature,
        f32::from_bits(bits as u32),
        f32::from_bits((bits >> 32) as u32),
    ]);
}

/// Row `i`'s temperature and draw in `args` ([`push_args`]).
pub fn row_args(args: &[f32], i: usize) -> (f32, f64) {
    let a = &args[i * ARGS_PER_ROW..(i + 1) * ARGS_PER_ROW];
    let bits = u64::from(a[1].to_bits()) | u64::from(a[2].to_bits()) << 32;
    (a[0], f64::from_bits(bits))
}

/// `out[i]` = the token of row `i` of `logits` (`[rows, vocab]`) at the temperature and draw
/// of row `i` of `args` ([`row_args`]) by [`pick_row`], as an f32 (exact: `vocab` ≤ 2^24), or
/// -1 for a refused row. Rows run side by side (rayon).
///
/// # Errors
/// Buffers shorter than the shapes, or `vocab` above 2^24.
pub fn sample(
    logits: &[f32],
    rows: usize,
    vocab: usize,
    args: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check_vocab(vocab)?;
    check_len("sample", "logits", logits.len(), rows * vocab)?;
    check_len("sample", "args", args.len(), rows * ARGS_PER_ROW)?;
    check_len("sample", "out", out.len(), rows)?;
    if vocab == 0 {
        out[..rows].fill(-1.0);
        return Ok(());
    }
    let one = |i: usize, row: &[f32], o: &mut f32| {
        let (temperature, draw) = row_args(args, i);
        *o = pick_one(row, temperature, draw).map_or(-1.0, |t| t as f32);
    };
    if rows == 1 {
        // One row on the calling thread (a hand-off to the pool costs about what a small
        // vocabulary's draw does).
        one(0, &logits[..vocab], &mut out[0]);
    } else {
        (logits.par_chunks(vocab).zip(&mut out[..rows]))
            .enumerate()
            .for_each(|(i, (row, o))| one(i, row, o));
    }
    Ok(())
}

/// [`pick_row`] with this thread's scratch, kept between steps (a vocabulary-sized copy).
pub fn pick_one(row: &[f32], temperature: f32, draw: f64) -> Option<u32> {
    SCRATCH.with_borrow_mut(|(work, blocks)| pick_row(row, temperature, draw, work, blocks))
}

thread_local! {
    /// A thread's scratch for [`pick_row`], kept between steps (a vocabulary-sized copy).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f64>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// One row's token: the greedy pick ([`pick`]) where `temperature` is not above 0, else the
/// sampler's plain draw from `draw` in `[0, 1)` ([`probs::draw_plain`]); `None` where the row
/// holds a NaN or no usable logit, as [`crate::sampler::Sampler::try_sample`] refuses it.
/// `work` and `blocks` are scratch.
pub fn pick_row(
    row: &[f32],
    temperature: f32,
    draw: f64,
    work: &mut Vec<f32>,
    blocks: &mut Vec<f64>,
) -> Option<u32> {
    if temperature.is_nan() || temperature <= 0.0 {
        return pick(row);
    }
    work.clear();
    work.extend_from_slice(row);
    let (max, nan) = probs::sanitize_max(work);
    if nan || max == f32::NEG_INFINITY {
        return None;
    }
    Some(probs::draw_plain(work, max, temperature, draw, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{Sampler, SamplingParams};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn args_carry_the_draw_bit_for_bit() {
        let mut args = Vec::new();
        let draws = [
            0.0,
            0.5,
            1.0 - f64::EPSILON,
            1e-300,
            0.123_456_789_012_345_67,
        ];
        for (i, &d) in draws.iter().enumerate() {
            push_args(i as f32, d, &mut args);
        }
        assert_eq!(args.len(), draws.len() * ARGS_PER_ROW);
        for (i, &d) in draws.iter().enumerate() {
            let (t, u) = row_args(&args, i);
            assert_eq!((t, u.to_bits()), (i as f32, d.to_bits()));
        }
    }

    /// The op draws what the sampler draws at that temperature from the same seed (its first
    /// draw is the op's `draw`), greedy at 0, and refuses what `try_sample` refuses; rows in
    /// parallel give each its own draw.
    #[test]
    fn draws_what_the_sampler_draws() {
        let vocab = 3000;
        let mut r = StdRng::seed_from_u64(5);
        let mut rows: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..vocab).map(|_| r.random_range(-6.0f32..6.0)).collect())
            .collect();
        rows[1][17] = f32::NAN;
        rows[2].fill(f32::NEG_INFINITY);
        rows[3][5] = f32::INFINITY;
        let temps = [1.0f32, 0.8, 1.0, 0.5, 0.0, 2.0];
        let mut sampled = 0;
        for seed in 0..40u64 {
            let (mut args, mut want) = (Vec::new(), Vec::new());
            for (i, (row, &t)) in rows.iter().zip(&temps).enumerate() {
                let seed = seed * 10 + i as u64;
                let p = SamplingParams {
                    temperature: t,
                    seed,
                    ..Default::default()
                };
                let mut s = Sampler::new(p);
                assert_eq!(s.plain_temperature().is_some(), t > 0.0);
                want.push(s.try_sample(row, &[]).map_or(-1.0, |t| t as f32));
                push_args(t, StdRng::seed_from_u64(seed).random::<f64>(), &mut args);
            }
            let logits: Vec<f32> = rows.concat();
            let mut out = vec![0.0; rows.len()];
            sample(&logits, rows.len(), vocab, &args, &mut out).unwrap();
            assert_eq!(out, want, "seed {seed}");
            assert_eq!(&out[1..3], &[-1.0, -1.0]);
            sampled += usize::from(Some(out[0] as u32) != pick(&rows[0]));
        }
        assert!(
            sampled > 30,
            "the hot row mostly draws another token than the greedy one"
        );
        let e = sample(&[0.0; 4], 2, 2, &[0.0; 5], &mut [0.0; 2]).unwrap_err();
        assert!(e.to_string().contains("args"), "{e}");
    }

    #[test]
    fn plain_temperature_only_without_filters_or_changed_logits() {
        let t = |edit: fn(&mut SamplingParams)| {
            let mut p = SamplingParams {
                temperature: 0.9,
                ..Default::default()
            };
            edit(&mut p);
            Sampler::new(p).plain_temperature()
        };
        assert_eq!(t(|_| ()), Some(0.9));
        assert_eq!(t(|p| p.temperature = 0.0), None);
        assert_eq!(t(|p| p.top_k = 5), None);
        assert_eq!(t(|p| p.top_p = 0.9), None);
        assert_eq!(t(|p| p.min_p = 0.1), None);
        assert_eq!(t(|p| p.logit_bias = vec![(1, 1.0)]), None);
        assert_eq!(t(|p| p.repetition_penalty = 1.1), None);
        assert_eq!(t(|p| p.min_tokens = 1), None);
        assert_eq!(t(|p| p.allowed_token_ids = vec![2]), None);
        assert_eq!(t(|p| p.presence_penalty = 0.5), None);
        assert_eq!(t(|p| p.frequency_penalty = 0.5), None);
        assert_eq!(t(|p| p.bad_words_ids = vec![vec![3]]), None);
    }
}
