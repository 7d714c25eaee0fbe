//! How a running sequence's next token is picked: on the device with the step
//! ([`crate::model::Model::forward_argmax`]) or by its sampler from the step's logit row.

use super::Running;

impl Running {
    /// Whether this sequence's next token may be picked on the device
    /// ([`super::SeqOptions::greedy_on_device`]).
    pub(super) fn picks_argmax(&self) -> bool {
        self.opts.greedy_on_device
            && self.max_tokens > 0
            && self.constraint.is_none()
            && self.sampler.picks_argmax()
    }
}

/// The next token of `r` from its logit row, among those its grammar allows (which then
/// advances past it). `Ok(None)`: no usable logit; `Err`: the grammar failed.
pub(super) fn sample_next(
    r: &mut Running,
    logits: &[f32],
) -> std::result::Result<Option<u32>, String> {
    let Some(c) = r.constraint.as_deref_mut() else {
        return Ok(r.sampler.try_sample(logits, &r.seq.tokens));
    };
    let picked = r.sampler.try_sample_constrained(logits, &r.seq.tokens, c)?;
    if let Some(id) = picked {
        c.accept(id)?;
    }
    Ok(picked)
}
