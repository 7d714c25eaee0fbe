//! Which way `linears` (and `linears_silu_mul`) runs a group of modules that read the same
//! input: op by op, `batch-lora`, or the grouped decode matvec with its LoRA after it or fused
//! in its epilogue ([`crate::fused_linears`] has the fused mechanics).
//!
//! With [`crate::Experimental::fused_silu`], a gate/up pair that takes the matvec with its LoRA
//! in the epilogue (or has none) stores silu(gate) * up instead of both products (the `_silu`
//! entries of `kernels/matmul.cu`): no `silu_mul` launch after it.

use cudarc::driver::CudaSlice;
use dlp_engine::backend::{
    gate_silu_width, linears_each, linears_then_silu_mul, Backend, LinearJob,
};
use dlp_engine::Result;

use crate::fused_linears::check_linears;
use crate::launch::check_len;
use crate::matvec::{shrink_chunks, MATVEC_MAX_JOBS};
use crate::{CudaBackend, CudaStep};

/// How `linears` runs a group of modules (see the module docs), by the switches and shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Op by op ([`linears_each`]).
    Each,
    /// `batch-lora`: the shrinks in one launch, the base products, the expands in one launch.
    BatchLora,
    /// The grouped decode matvec; the LoRA (fused-lora off) op by op after it.
    Matvec,
    /// `fused-lora`: the shrinks in one launch (or inside the matvec's grid), the expands in
    /// the matvec's epilogue.
    MatvecFusedLora,
}

impl CudaBackend {
    /// The [`Route`] of a `linears` call.
    fn linears_route(
        &self,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &[LinearJob<'_, Self>],
    ) -> Route {
        let matvec = !jobs.is_empty()
            && jobs.len() <= MATVEC_MAX_JOBS
            && jobs.iter().all(|j| {
                self.matvec_fits(j.w, n_tokens) && j.w.cols == n_in && j.w.rows == j.n_out
            });
        let any_lora = jobs.iter().any(|j| j.lora.is_some());
        // The shrink's grid.y is K x in_dim chunks (at most 65,535).
        let fused_lora = matvec
            && any_lora
            && self.options.experimental.fused_lora
            && step.plan.mix_k * shrink_chunks(n_in) <= 65_535;
        if !matvec && any_lora && self.batch_lora_fits(n_tokens, n_in, step, jobs) {
            return Route::BatchLora;
        }
        // One module without LoRA gains nothing from grouping: `matmul` does the same.
        if !matvec || (jobs.len() == 1 && !fused_lora) {
            return Route::Each;
        }
        if fused_lora {
            Route::MatvecFusedLora
        } else {
            Route::Matvec
        }
    }

    /// [`dlp_engine::Backend::linears`] on this backend: fused as the module docs say where
    /// the switches and shapes allow, else op by op.
    pub(crate) fn linears_impl(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
        u: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let route = self.linears_route(n_tokens, n_in, step, jobs);
        if route == Route::Each {
            return linears_each(self, x, n_tokens, n_in, step, jobs, u);
        }
        check_linears(x, n_tokens, n_in, jobs)?;
        match route {
            Route::BatchLora => {
                self.linears_grouped_lora(x, n_tokens, n_in, step, jobs, false, None)
            }
            Route::MatvecFusedLora => {
                self.linears_grouped_lora(x, n_tokens, n_in, step, jobs, true, None)
            }
            _ => {
                self.matvec_bf16(
                    x,
                    n_tokens,
                    jobs,
                    None,
                    self.matvec_launch_mode(false),
                    None,
                )?;
                for j in jobs.iter_mut() {
                    if let Some(l) = j.lora {
                        self.lora_shrink(x, l, step, n_tokens, u)?;
                        self.lora_expand(u, l, step, n_tokens, j.out)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// [`dlp_engine::Backend::linears_silu_mul`] on this backend: with `fused-silu`, where the
    /// pair takes the decode matvec with its LoRA (if any) in the epilogue, one launch (two with
    /// a shrink launch of its own) that stores silu(gate) * up into `act` and neither product;
    /// else `linears` then `silu_mul`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linears_silu_mul_impl(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        gate_up: &mut [LinearJob<'_, Self>; 2],
        u: &mut CudaSlice<f32>,
        act: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = gate_silu_width(gate_up)?;
        let route = self.linears_route(n_tokens, n_in, step, gate_up);
        let any_lora = gate_up.iter().any(|j| j.lora.is_some());
        if !silu_folds(self.options.experimental.fused_silu, route, any_lora) {
            return linears_then_silu_mul(self, x, n_tokens, n_in, step, gate_up, u, act);
        }
        check_linears(x, n_tokens, n_in, gate_up)?;
        check_len("linears (fused silu)", "act", act.len(), n_tokens * n)?;
        if route == Route::MatvecFusedLora {
            return self.linears_grouped_lora(x, n_tokens, n_in, step, gate_up, true, Some(act));
        }
        let launch = self.matvec_launch_mode(false);
        self.matvec_bf16(x, n_tokens, gate_up, None, launch, Some(act))
    }
}

/// Whether `fused-silu` (`on`) folds `silu_mul` into a gate/up pair's `linears` of `route`:
/// only where the decode matvec computes the whole products, LoRA (`any_lora`) included, in
/// its epilogue; the plain matvec's LoRA runs after it, so its products are not final there.
fn silu_folds(on: bool, route: Route, any_lora: bool) -> bool {
    on && match route {
        Route::MatvecFusedLora => true,
        Route::Matvec => !any_lora,
        Route::Each | Route::BatchLora => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_folds_only_where_the_matvec_computes_the_whole_products() {
        use Route::*;
        for (route, lora, want) in [
            (MatvecFusedLora, true, true),
            (Matvec, false, true),
            (Matvec, true, false),
            (Each, false, false),
            (Each, true, false),
            (BatchLora, true, false),
        ] {
            assert_eq!(
                silu_folds(true, route, lora),
                want,
                "{route:?}, LoRA {lora}"
            );
            assert!(
                !silu_folds(false, route, lora),
                "{route:?}, LoRA {lora}, off"
            );
        }
    }
}
