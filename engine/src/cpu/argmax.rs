//! `argmax`: each logit row's greedy pick, so that a greedy decode step downloads one value a
//! row instead of the row (`Backend::argmax`).

use super::check_len;
use crate::error::{Error, Result};

/// Largest vocabulary whose indices an f32 holds exactly (2^24).
pub const MAX_VOCAB: usize = 1 << 24;

/// `out[i]` = the index of the first maximum of row `i` of `logits` (`[rows, vocab]`), or -1
/// when the row has a NaN or no usable logit (every one `-inf`). Logits are compared as
/// [`crate::sampler::Sampler`]'s greedy path compares them: `+inf` counts as `f32::MAX` and
/// `-0.0` equals `+0.0`, so ties go to the lower index.
///
/// # Errors
/// Buffers shorter than the shapes, or `vocab` above [`MAX_VOCAB`].
pub fn argmax(logits: &[f32], rows: usize, vocab: usize, out: &mut [f32]) -> Result<()> {
    check_vocab(vocab)?;
    check_len("argmax", "logits", logits.len(), rows * vocab)?;
    check_len("argmax", "out", out.len(), rows)?;
    if vocab == 0 {
        out[..rows].fill(-1.0);
        return Ok(());
    }
    for (row, o) in logits.chunks_exact(vocab).zip(&mut out[..rows]) {
        *o = pick(row).map_or(-1.0, |i| i as f32);
    }
    Ok(())
}

/// The argmax of one row under the rules of [`argmax`]; `None` for a refused row.
pub fn pick(row: &[f32]) -> Option<u32> {
    let mut best = (f32::NEG_INFINITY, 0usize);
    for (i, &x) in row.iter().enumerate() {
        if x.is_nan() {
            return None;
        }
        // `min` folds +inf into f32::MAX; -0.0 > +0.0 is false, so the first zero stays.
        let x = x.min(f32::MAX);
        if x > best.0 {
            best = (x, i);
        }
    }
    (best.0 > f32::NEG_INFINITY).then_some(best.1 as u32)
}

/// The error of a vocabulary whose indices an f32 cannot hold: the backends share it.
pub fn check_vocab(vocab: usize) -> Result<()> {
    if vocab > MAX_VOCAB {
        return Err(Error::invalid(format!(
            "argmax: a vocabulary of {vocab} entries exceeds {MAX_VOCAB}, the most whose \
             indices an f32 holds exactly"
        )));
    }
    Ok(())
}
