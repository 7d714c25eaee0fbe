//! The op-parity table on the CUDA backend against the CPU reference (`--features cuda`).
//! Without a GPU: `SKIPPED: no CUDA device`, unless `DLP_REQUIRE_CUDA=1`. Then the bf16-weight
//! cases on the backend with bf16 weight storage.
#![cfg(feature = "cuda")]

use dlp_cuda::{CudaBackend, CudaOptions};
use dlp_tests::backend_or_skip;
use dlp_tests::parity::{assert_all_pass, bf16_weight_cases, run_all, run_cases};

#[test]
fn op_parity_cuda() {
    let Some(b) = backend_or_skip(CudaBackend::new(0), "DLP_REQUIRE_CUDA") else {
        return;
    };
    assert_all_pass(&run_all(&b));
}

/// bf16 weight storage (`--cuda-bf16-weights`): embedding, matmul (with and without bias, one
/// row and many, odd shapes) and logits on weights drawn as bf16 values, against the CPU on
/// the same values.
#[test]
fn op_parity_cuda_bf16_weights() {
    let opts = CudaOptions { bf16_weights: true };
    let Some(b) = backend_or_skip(CudaBackend::with_options(0, opts), "DLP_REQUIRE_CUDA") else {
        return;
    };
    assert_all_pass(&run_cases(&b, bf16_weight_cases()));
}
