//! The forwards that return each logit row's token instead of the row: greedy
//! ([`Model::forward_argmax`], [`Backend::argmax`]) and drawn at a temperature
//! ([`Model::forward_sample`], [`Backend::sample`]). On the device a step downloads a value
//! a row; elsewhere it downloads the rows and the CPU op's function picks from them.

use super::{Model, StepOut, Workspace};
use crate::backend::{Backend, StepPlan};
use crate::cpu::{argmax, sample};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;

/// The op that picks a step's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PickOp {
    /// [`Backend::argmax`].
    Argmax,
    /// [`Backend::sample`].
    Sample,
}

impl<B: Backend> Model<B> {
    /// As [`Model::forward_into`], but returns only each logit row's greedy pick, in the order
    /// of `plan.logit_rows`: the index of the row's first maximum, `None` where the row holds a
    /// NaN or no usable logit (exactly what [`crate::sampler::Sampler::try_sample`] picks with
    /// greedy parameters). Where the backend runs [`Backend::argmax`] on the device, a step
    /// downloads a value per row instead of `vocab` (513 KB a row for Llama 3's 128,256);
    /// elsewhere the rows are downloaded and picked on the host.
    ///
    /// # Errors
    /// [`Model::forward_into`]'s, and a vocabulary above 2^24.
    pub fn forward_argmax(
        &self,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        picks: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        self.forward_pick(PickOp::Argmax, plan, kv, ws, picks)
    }

    /// As [`Model::forward_argmax`], but each logit row's token is drawn at its temperature
    /// from the uniform draw in `plan.pick_args` ([`sample::push_args`]; 0 picks greedily):
    /// what [`crate::sampler::Sampler::try_sample`] draws with that temperature, no filter,
    /// bias or penalty, and that draw ([`crate::sampler::Sampler::device_draw`]). Where the
    /// backend runs [`Backend::sample`] ([`Backend::samples_on_device`]), a step downloads a
    /// value per row; elsewhere the rows, drawn from on the host by the same function.
    ///
    /// # Errors
    /// [`Model::forward_into`]'s, a vocabulary above 2^24, and `pick_args` not holding a
    /// temperature and a draw per logit row.
    pub fn forward_sample(
        &self,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        picks: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        let per_row = sample::ARGS_PER_ROW;
        if plan.pick_args.len() != plan.logit_rows.len() * per_row {
            return Err(Error::invalid(format!(
                "forward_sample: {} pick arguments for {} logit rows (need {per_row} a row)",
                plan.pick_args.len(),
                plan.logit_rows.len()
            )));
        }
        self.forward_pick(PickOp::Sample, plan, kv, ws, picks)
    }

    /// The body of both: `picks` gets each row's token by `op`.
    fn forward_pick(
        &self,
        op: PickOp,
        plan: &StepPlan,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        picks: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        let vocab = self.config.vocab_size;
        argmax::check_vocab(vocab)?;
        picks.clear();
        // The host copy is the workspace's, reused: decode allocates nothing per token here.
        let mut host = std::mem::take(&mut ws.host);
        let on_device = match op {
            PickOp::Argmax => self.backend.argmax_on_device(),
            PickOp::Sample => self.backend.samples_on_device(vocab),
        };
        let r = if on_device {
            self.backend
                .run_step(|| self.forward_on_backend(plan, kv, ws, StepOut::Picks(op, &mut host)))
                .and_then(|()| self.picks_from(&host, picks, op))
        } else {
            self.forward_into(plan, kv, ws, &mut host).map(|()| {
                let rows = host.chunks(vocab.max(1)).enumerate();
                picks.extend(rows.map(|(i, row)| match op {
                    PickOp::Argmax => argmax::pick(row),
                    PickOp::Sample => {
                        let (t, u) = sample::row_args(&plan.pick_args, i);
                        sample::pick_one(row, t, u)
                    }
                }));
            })
        };
        ws.host = host;
        r
    }

    /// The tokens of a step's downloaded picks (`host`, from `op`), `None` for -1 (a refused
    /// row).
    ///
    /// # Errors
    /// A value that is neither a token id nor -1: a broken kernel, said rather than passed on.
    fn picks_from(&self, host: &[f32], picks: &mut Vec<Option<u32>>, op: PickOp) -> Result<()> {
        let name = match op {
            PickOp::Argmax => "argmax",
            PickOp::Sample => "sample",
        };
        for &v in host {
            let id = v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.config.vocab_size;
            if !id && v != -1.0 {
                return Err(Error::Backend {
                    backend: self.backend.name(),
                    msg: format!("{name} returned {v}, not a token id or -1"),
                });
            }
            picks.push(id.then_some(v as u32));
        }
        Ok(())
    }
}
