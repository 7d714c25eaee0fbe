//! Which way `linears` (and `linears_silu_mul`) runs a group of modules that read the same
//! input: op by op, `batch-lora`, or the grouped decode matvec with its LoRA after it, fused
//! in its epilogue, or (`expand-launch`) in one shrink launch before it and one expand launch
//! after it ([`crate::fused_linears`] has the fused mechanics).
//!
//! With [`crate::Experimental::fused_silu`], a gate/up pair that takes the matvec with its LoRA
//! in the epilogue (or has none) stores silu(gate) * up instead of both products (the `_silu`
//! entries of `kernels/matmul.cu`): no `silu_mul` launch after it. With
//! [`crate::Experimental::norm_in_matvec`], an o or down projection of at most
//! [`NORM_FOLD_MAX_ROWS`] tokens that takes the matvec the same way also adds its output to
//! the residual and norms it (the `_norm` entries): no `add_rms_norm` launch after it.

use cudarc::driver::CudaSlice;
use dlp_engine::backend::{
    gate_silu_width, linear_then_add_rms_norm, linears_each, linears_then_silu_mul, Backend,
    LinearJob, ResidualNorm, ResidualSite,
};
use dlp_engine::Result;

use crate::fused_linears::{check_linears, expand_jobs_fit, max_lora_rank, LoraBase};
use crate::launch::{check_len, int, Ptrs};
use crate::matvec::{shrink_chunks, MatvecEpilogue, MatvecNorm, MATVEC_MAX_JOBS};
use crate::{CudaBackend, CudaStep};

/// Most tokens whose residual add and norm `norm-in-matvec` folds into the matvec: one block
/// (the last to finish) norms every row, where `add_rms_norm` runs a block per row, so past a
/// few rows the launch it saves costs less than the rows it serialises.
pub const NORM_FOLD_MAX_ROWS: usize = 2;

// matmul.cu compiles the `_norm` entries for the first two row buckets only.
const _: () = assert!(NORM_FOLD_MAX_ROWS <= 2);

/// Words of the backend's `norm-in-matvec` counters (`CudaBackend::norm_sync`): one per
/// [`ResidualSite`], whose launches may run side by side (see `fused_linears::sync_set`).
pub(crate) const NORM_SYNC_WORDS: usize = 2;

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
    /// `fused-lora` with `expand-launch`: the shrinks in one launch, the plain matvec, the
    /// expands in one launch.
    MatvecExpandLaunch,
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
        let matvec = self.matvec_takes(n_tokens, n_in, jobs);
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
        // expand-launch's expand (`lora_expand_jobs`) holds a token's u and entries in shared
        // memory for the group's largest rank.
        let expand_fits = max_lora_rank(jobs).is_some_and(|r| expand_jobs_fit(step.plan.mix_k, r));
        if fused_lora && self.options.experimental.expand_launch && expand_fits {
            Route::MatvecExpandLaunch
        } else if fused_lora {
            Route::MatvecFusedLora
        } else {
            Route::Matvec
        }
    }

    /// Whether the grouped decode matvec takes `jobs` (one to three weights of `n_in` columns
    /// whose rows are their outputs) for `n_tokens` rows.
    fn matvec_takes(&self, n_tokens: usize, n_in: usize, jobs: &[LinearJob<'_, Self>]) -> bool {
        !jobs.is_empty()
            && jobs.len() <= MATVEC_MAX_JOBS
            && jobs
                .iter()
                .all(|j| self.matvec_fits(j.w, n_tokens) && j.w.cols == n_in && j.w.rows == j.n_out)
    }

    /// The [`Route`] of a call that may fold its epilogue into the matvec (`fused-silu`,
    /// `norm-in-matvec`): [`Self::linears_route`], except that one module without LoRA that
    /// the matvec takes is [`Route::Matvec`] (`linears` gives it to `matmul`, which launches
    /// the same entry, but a fold needs a launch of its own).
    fn fold_route(
        &self,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &[LinearJob<'_, Self>],
    ) -> Route {
        let route = self.linears_route(n_tokens, n_in, step, jobs);
        let bare = jobs.iter().all(|j| j.lora.is_none());
        if route == Route::Each && bare && self.matvec_takes(n_tokens, n_in, jobs) {
            Route::Matvec
        } else {
            route
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
        let base = match route {
            Route::BatchLora => LoraBase::Products,
            Route::MatvecFusedLora => LoraBase::FusedMatvec,
            Route::MatvecExpandLaunch => LoraBase::Matvec,
            Route::Each | Route::Matvec => {
                let launch = self.matvec_launch_mode(false);
                self.matvec_bf16(x, n_tokens, jobs, None, launch, MatvecEpilogue::Store)?;
                for j in jobs.iter_mut() {
                    if let Some(l) = j.lora {
                        self.lora_shrink(x, l, step, n_tokens, u)?;
                        self.lora_expand(u, l, step, n_tokens, j.out)?;
                    }
                }
                return Ok(());
            }
        };
        let store = MatvecEpilogue::Store;
        self.linears_grouped_lora(x, n_tokens, n_in, step, jobs, base, store)
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
        let route = self.fold_route(n_tokens, n_in, step, gate_up);
        let any_lora = gate_up.iter().any(|j| j.lora.is_some());
        if !epilogue_folds(self.options.experimental.fused_silu, route, any_lora) {
            return linears_then_silu_mul(self, x, n_tokens, n_in, step, gate_up, u, act);
        }
        check_linears(x, n_tokens, n_in, gate_up)?;
        check_len("linears (fused silu)", "act", act.len(), n_tokens * n)?;
        self.matvec_with_epilogue(
            x,
            n_tokens,
            n_in,
            step,
            gate_up,
            route,
            MatvecEpilogue::Silu(act),
        )
    }

    /// [`dlp_engine::Backend::linear_add_rms_norm`] on this backend: with `norm-in-matvec`,
    /// where the module takes the decode matvec with its LoRA (if any) in the epilogue and the
    /// step has at most [`NORM_FOLD_MAX_ROWS`] tokens, one launch (two with a shrink launch of
    /// its own) whose last block adds the product to the residual and norms it, with
    /// `add_rms_norm`'s block size for these rows (so its sums, in its order); else `linears`
    /// then `add_rms_norm`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linear_add_rms_norm_impl(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        job: &mut [LinearJob<'_, Self>; 1],
        u: &mut CudaSlice<f32>,
        norm: ResidualNorm<'_, Self>,
    ) -> Result<()> {
        let route = self.fold_route(n_tokens, n_in, step, job);
        let on = self.options.experimental.norm_in_matvec && n_tokens <= NORM_FOLD_MAX_ROWS;
        if !epilogue_folds(on, route, job[0].lora.is_some()) {
            return linear_then_add_rms_norm(self, x, n_tokens, n_in, step, job, u, norm);
        }
        check_linears(x, n_tokens, n_in, job)?;
        let (op, dim) = ("linear_add_rms_norm", job[0].n_out);
        check_len(op, "residual", norm.residual.len(), n_tokens * dim)?;
        check_len(op, "out", norm.out.len(), n_tokens * dim)?;
        check_len(op, "w", norm.w.len(), dim)?;
        let mut sync = self.norm_sync.lock().unwrap_or_else(|p| p.into_inner());
        let mut ptrs = Ptrs::<4>::new(self.stream());
        let word = match norm.site {
            ResidualSite::Attention => 0,
            ResidualSite::FeedForward => 1,
        };
        let nm = MatvecNorm {
            x: ptrs.write(norm.residual),
            w: ptrs.read(norm.w),
            out: ptrs.write(norm.out),
            sync: ptrs.write(&mut *sync) + (word * std::mem::size_of::<u32>()) as u64,
            dim: int(op, dim)?,
            threads: self.row_block(n_tokens) as i32,
            eps: norm.eps,
            pad: 0,
        };
        let epilogue = MatvecEpilogue::AddNorm {
            nm,
            site: norm.site,
        };
        let res = self.matvec_with_epilogue(x, n_tokens, n_in, step, job, route, epilogue);
        drop(ptrs);
        res
    }

    /// The decode matvec of a [`Route::Matvec`] or [`Route::MatvecFusedLora`] call with a
    /// folded `epilogue` (the caller checked [`epilogue_folds`] and the sizes).
    #[allow(clippy::too_many_arguments)]
    fn matvec_with_epilogue(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        n_in: usize,
        step: &CudaStep,
        jobs: &mut [LinearJob<'_, Self>],
        route: Route,
        epilogue: MatvecEpilogue<'_>,
    ) -> Result<()> {
        if route == Route::MatvecFusedLora {
            let base = LoraBase::FusedMatvec;
            return self.linears_grouped_lora(x, n_tokens, n_in, step, jobs, base, epilogue);
        }
        let launch = self.matvec_launch_mode(false);
        self.matvec_bf16(x, n_tokens, jobs, None, launch, epilogue)
    }
}

/// Whether a switch (`on`: `fused-silu`, `norm-in-matvec`) folds the op after a group's
/// `linears` of `route` into the matvec's epilogue: only where the decode matvec computes the
/// whole products, LoRA (`any_lora`) included; the plain matvec's LoRA runs after it, so its
/// products are not final there.
fn epilogue_folds(on: bool, route: Route, any_lora: bool) -> bool {
    on && match route {
        Route::MatvecFusedLora => true,
        Route::Matvec => !any_lora,
        Route::Each | Route::BatchLora | Route::MatvecExpandLaunch => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epilogues_fold_only_where_the_matvec_computes_the_whole_products() {
        use Route::*;
        for (route, lora, want) in [
            (MatvecFusedLora, true, true),
            (Matvec, false, true),
            (Matvec, true, false),
            (Each, false, false),
            (Each, true, false),
            (BatchLora, true, false),
            (MatvecExpandLaunch, true, false),
        ] {
            assert_eq!(
                epilogue_folds(true, route, lora),
                want,
                "{route:?}, LoRA {lora}"
            );
            assert!(
                !epilogue_folds(false, route, lora),
                "{route:?}, LoRA {lora}, off"
            );
        }
    }
}
