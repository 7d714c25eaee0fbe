//! How a running sequence's next token is picked: on the device with the step
//! ([`crate::model::Model::forward_argmax`]) or by its sampler from the step's logit row, the
//! rows of a batch side by side on the host's cores.

use rayon::prelude::*;

use std::time::Instant;

use super::{Row, Running, Scheduler};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::Model;

/// A row's pick: `Ok(None)` when no logit is usable, `Err` when the grammar failed.
pub(super) type Picked = std::result::Result<Option<u32>, String>;

/// Fewest rows sampled on the host that go to the thread pool: one row alone is picked on the
/// calling thread (a 32K-entry row takes about 50 µs, a hand-off to the pool a few).
const PARALLEL_ROWS: usize = 2;

/// Where a step's tokens are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DevicePick {
    /// On the host, from the downloaded rows.
    Host,
    /// Greedy, on the device ([`crate::model::Model::forward_argmax`]).
    Argmax,
    /// Drawn on the device at each row's temperature ([`crate::model::Model::forward_sample`]).
    Sample,
}

impl Running {
    /// The temperature at which this sequence's next token may be picked on the device
    /// ([`super::SeqOptions::picks_on_device`]): 0 for a greedy pick, else a plain draw.
    pub(super) fn device_temperature(&self) -> Option<f32> {
        if !self.opts.picks_on_device || self.max_tokens == 0 || self.constraint.is_some() {
            return None;
        }
        if self.sampler.picks_argmax() {
            return Some(0.0);
        }
        self.sampler.plain_temperature()
    }
}

/// Where the step whose logit rows are `rows` picks its tokens: on the device when every row
/// samples a sequence that may be picked there, greedy ones by argmax, and where one of them
/// samples at a temperature, drawn (where the backend `samples_on_device`; each row's
/// temperature and its sampler's draw into `args`: [`crate::cpu::sample::push_args`]).
pub(super) fn device_pick(
    slots: &mut [Option<Running>],
    rows: &[Row],
    vocab: usize,
    samples_on_device: bool,
    args: &mut Vec<f32>,
) -> DevicePick {
    // A vocabulary past what an f32 index holds (none real) picks on the host.
    if rows.is_empty() || vocab > crate::cpu::argmax::MAX_VOCAB {
        return DevicePick::Host;
    }
    let temperature = |row: &Row| {
        let r = slots[row.slot].as_ref()?;
        (row.sample && !row.prompt).then(|| r.device_temperature())?
    };
    let mut sampled = false;
    for row in rows {
        match temperature(row) {
            None => return DevicePick::Host,
            Some(t) => sampled |= t > 0.0,
        }
    }
    if !sampled {
        return DevicePick::Argmax;
    }
    if !samples_on_device {
        // The host draws from the downloaded rows, side by side ([`sample_rows`]).
        return DevicePick::Host;
    }
    args.clear();
    for row in rows {
        let r = slots[row.slot].as_mut().expect("checked above");
        let t = r.device_temperature().expect("checked above");
        // Drawn before the step: a row the device then refuses (a NaN) has used a draw the
        // host would not have, but that sequence ends there (`FinishReason::NonFinite`).
        let draw = if t > 0.0 {
            r.sampler.device_draw()
        } else {
            0.0
        };
        crate::cpu::sample::push_args(t, draw, args);
    }
    DevicePick::Sample
}

/// The next token of `r` from its logit row, among those its grammar allows (which then
/// advances past it). `Ok(None)`: no usable logit; `Err`: the grammar failed.
fn sample_next(r: &mut Running, logits: &[f32]) -> Picked {
    let Some(c) = r.constraint.as_deref_mut() else {
        return Ok(r.sampler.try_sample(logits, &r.seq.tokens));
    };
    let picked = r.sampler.try_sample_constrained(logits, &r.seq.tokens, c)?;
    if let Some(id) = picked {
        c.accept(id)?;
    }
    Ok(picked)
}

/// The host's picks of a step whose logit rows are `logits` (`[rows.len(), vocab]`): for each
/// row that samples a running sequence with tokens left, its pick at the row's index, else
/// `None`. Each sequence has its own sampler, seed and grammar and samples one row a step,
/// so the rows are picked side by side (rayon) with the tokens one after another would give.
/// A sequence's first pick holds back `eos` first (for `min_tokens`), unless it ignores them.
pub(super) fn sample_rows(
    slots: &mut [Option<Running>],
    rows: &[Row],
    logits: &[f32],
    vocab: usize,
    eos: &[u32],
) -> Vec<Option<Picked>> {
    let mut row_of_slot = vec![None; slots.len()];
    for (i, row) in rows.iter().enumerate().filter(|(_, row)| row.sample) {
        // A sequence samples its last token's row only: one a step.
        debug_assert!(
            row_of_slot[row.slot].is_none(),
            "two sampled rows of one sequence"
        );
        row_of_slot[row.slot] = Some(i);
    }
    let mut jobs: Vec<(usize, &mut Running)> = (slots.iter_mut().zip(row_of_slot))
        .filter_map(|(r, i)| Some((i?, r.as_mut()?)))
        .filter(|(_, r)| r.max_tokens > 0)
        .collect();
    let pick = |(i, r): &mut (usize, &mut Running)| {
        set_end_tokens(r, eos);
        (*i, sample_next(r, &logits[*i * vocab..(*i + 1) * vocab]))
    };
    let picked: Vec<(usize, Picked)> = if jobs.len() >= PARALLEL_ROWS {
        jobs.par_iter_mut().map(pick).collect()
    } else {
        jobs.iter_mut().map(pick).collect()
    };
    let mut out = vec![None; rows.len()];
    for (i, p) in picked {
        out[i] = Some(p);
    }
    out
}

/// Before a sequence's first token, the end-of-sequence ids its sampler holds back while
/// `min_tokens` is not reached (not for a sequence that ignores them).
pub(super) fn set_end_tokens(r: &mut Running, eos: &[u32]) {
    if r.seq.tokens.len() == r.prompt_len && !r.opts.ignore_eos {
        r.sampler.set_end_tokens(eos);
    }
}

impl<B: Backend> Scheduler<B> {
    /// Runs the planned step, its tokens picked where [`device_pick`] says: returns its token
    /// count, the seconds of the forward pass, and whether the device picked (the tokens are
    /// then in `picks`, else the rows in `logits`).
    pub(super) fn forward(&mut self, model: &Model<B>) -> Result<(usize, f64, bool)> {
        let vocab = model.config.vocab_size;
        let pick = device_pick(
            &mut self.slots,
            &self.rows,
            vocab,
            model.backend.samples_on_device(vocab),
            self.builder.pick_args(),
        );
        let plan = self.builder.finish();
        let (kv, ws, picks) = (&mut self.kv, &mut self.ws, &mut self.picks);
        let t0 = Instant::now();
        match pick {
            DevicePick::Argmax => model.forward_argmax(plan, kv, ws, picks)?,
            DevicePick::Sample => model.forward_sample(plan, kv, ws, picks)?,
            DevicePick::Host => model.forward_into(plan, kv, ws, &mut self.logits)?,
        }
        let secs = t0.elapsed().as_secs_f64();
        Ok((plan.n_tokens(), secs, pick != DevicePick::Host))
    }
}
