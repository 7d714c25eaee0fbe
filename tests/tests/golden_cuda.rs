//! Every fixture case on the CUDA backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds (`--features cuda`). Without a GPU: `SKIPPED: no CUDA device`, unless
//! `DLP_REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

use dlp_cuda::CudaBackend;
use dlp_tests::{backend_or_skip, fixture_tests, run_golden};

fn run_fixture(name: &str) {
    if let Some(b) = backend_or_skip(CudaBackend::new(0), "DLP_REQUIRE_CUDA") {
        run_golden(name, b);
    }
}

fixture_tests!(run_fixture);
