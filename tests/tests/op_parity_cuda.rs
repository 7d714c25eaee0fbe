//! The op-parity table on the CUDA backend against the CPU reference (`--features cuda`).
//! Without a GPU: `SKIPPED: no CUDA device`, unless `DLP_REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

use dlp_cuda::CudaBackend;
use dlp_tests::backend_or_skip;
use dlp_tests::parity::{assert_all_pass, run_all};

#[test]
fn op_parity_cuda() {
    let Some(b) = backend_or_skip(CudaBackend::new(0), "DLP_REQUIRE_CUDA") else {
        return;
    };
    assert_all_pass(&run_all(&b));
}
