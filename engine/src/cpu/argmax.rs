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
    // Two passes that vectorise (8 independent lanes, no early exit; a 128K-entry row is
    // read twice from cache): the largest non-NaN value, then the first index that reaches it.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for ((&x, m), n) in chunk.iter().zip(&mut lanes).zip(&mut nan) {
            *n |= x.is_nan();
            // A NaN compares false: it never becomes the max.
            *m = if x > *m { x } else { *m };
        }
    }
    for &x in chunks.remainder() {
        nan[0] |= x.is_nan();
        lanes[0] = if x > lanes[0] { x } else { lanes[0] };
    }
    let max = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
    if nan.contains(&true) || max == f32::NEG_INFINITY {
        return None;
    }
    // +inf counts as f32::MAX, so the first of the two wins; `>=` takes -0.0 as +0.0.
    let target = max.min(f32::MAX);
    row.iter().position(|&x| x >= target).map(|i| i as u32)
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
