//! Every fixture case on the CUDA backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds (`--features cuda`). Without a GPU: `SKIPPED: no CUDA device`, unless
//! `DLP_REQUIRE_CUDA=1`. Then every fixture again with bf16 weight storage, under its own bound.
#![cfg(feature = "cuda")]

use dlp_cuda::{CudaBackend, CudaOptions};
use dlp_tests::{
    backend_or_skip, bf16_logit_tol, fixture_tests, run_golden, run_golden_bf16_weights,
};

fn run_fixture(name: &str) {
    if let Some(b) = backend_or_skip(CudaBackend::new(0), "DLP_REQUIRE_CUDA") {
        run_golden(name, b);
    }
}

fixture_tests!(run_fixture);
dlp_tests::compat_fixture_tests!(run_fixture);

/// The same fixtures with the 2-D weights stored in bf16 (`--cuda-bf16-weights`, the
/// `matmul_bf16` / `embedding_bf16` kernels), under [`bf16_logit_tol`]: the bound the CPU
/// backend meets on the same rounded weights.
mod bf16_weights {
    use super::*;

    fn run_fixture(name: &str) {
        let opts = CudaOptions { bf16_weights: true };
        if let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA") {
            run_golden_bf16_weights(name, b, bf16_logit_tol(name));
        }
    }

    fixture_tests!(run_fixture);
}
