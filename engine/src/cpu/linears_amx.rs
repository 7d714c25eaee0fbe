//! `linears` of several tokens under `--cpu-amx` (`CpuOptions::amx`): the input rows are
//! rounded and packed for the tile unit once for every job that reads them (q/k/v, gate/up),
//! and each job's LoRA expand joins its base matmul's accumulators ([`amx::Extra`]): the
//! batch's coefficients times the bf16 B stack, two more tile steps per block of outputs
//! instead of a second pass that reads, adds and writes every output again.

use std::cell::RefCell;

use super::add_bias::add_bias;
use super::amx;
use super::linears::check_jobs;
use super::matmul_amx::amx_tiles_packed;
use super::CpuBackend;
use crate::backend::{LinearJob, StepPlan};
use crate::error::Result;

/// Packed input rows, shrink outputs, coefficients, packed coefficients.
type Buffers = (Vec<u16>, Vec<f32>, Vec<f32>, Vec<u16>);

thread_local! {
    /// The calling thread's buffers, reused across calls.
    static BUF: RefCell<Buffers> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// Every job of `n_tokens > 1` tokens reading `x` (`n_in` values each) on AMX; the caller
/// checked [`super::amx_available`].
pub fn linears(
    x: &[f32],
    n_tokens: usize,
    n_in: usize,
    step: &StepPlan,
    jobs: &mut [LinearJob<'_, CpuBackend>],
) -> Result<()> {
    check_jobs(x, n_tokens, n_in, step, jobs)?;
    // Taken out of the cell, not borrowed: the tiles fork, and a waiting worker may run
    // another step's `linears` meanwhile.
    let (mut xp, mut u, mut coef, mut cp) = BUF.take();
    amx::pack_rows(x, n_tokens, n_in, &mut xp);
    let mut run = |j: &mut LinearJob<'_, CpuBackend>| -> Result<()> {
        u.clear();
        u.resize(
            j.lora
                .map_or(0, |l| n_tokens * step.mix_k * l.stack.max_rank),
            0.0,
        );
        let lora = j.lora.and_then(|l| l.amx_tiles().map(|a| (l, a)));
        if let Some((l, a)) = lora {
            super::lora_amx::shrink_packed(&xp, l, a, step, n_tokens, &mut u);
            super::lora_amx::coefficients(&u, l, step, n_tokens, &mut coef);
            amx::pack_rows(&coef, n_tokens, l.rows(), &mut cp);
        }
        let kw = lora.map_or(0, |(l, _)| amx::padded_k(l.rows()));
        let out = &mut j.out[..n_tokens * j.n_out];
        amx_tiles_packed(&xp, j.w, n_tokens, out, |c0| {
            lora.map(|(l, a)| amx::Extra {
                w: &a.b()[c0 * kw..],
                x: &cp,
                k: l.rows(),
            })
        });
        if let Some(b) = j.bias {
            add_bias(out, &b[..j.n_out]);
        }
        // A stack without AMX tiles (too large for them): the f32 LoRA kernels.
        if let (Some(l), None) = (j.lora, lora) {
            super::lora::lora_shrink(x, l, step, n_tokens, &mut u)?;
            super::lora::lora_expand(&u, l, step, n_tokens, out)?;
        }
        Ok(())
    };
    let done = jobs.iter_mut().try_for_each(&mut run);
    BUF.set((xp, u, coef, cp));
    done
}
