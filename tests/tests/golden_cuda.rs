//! Every fixture case on the CUDA backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds (`--features cuda`). Without a GPU: `SKIPPED: no CUDA device`, unless
//! `DLP_REQUIRE_CUDA=1`.
#![cfg(feature = "cuda")]

use dlp_cuda::CudaBackend;
use dlp_tests::run_golden;

fn run_fixture(name: &str) {
    match CudaBackend::new(0) {
        Ok(b) => run_golden(name, b),
        Err(e) if std::env::var("DLP_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("no CUDA backend: {e}; DLP_REQUIRE_CUDA=1 makes this a failure")
        }
        Err(e) => eprintln!("SKIPPED: no CUDA device ({e})"),
    }
}

#[test]
fn tiny_llama() {
    run_fixture("tiny-llama");
}

#[test]
fn tiny_qwen2() {
    run_fixture("tiny-qwen2");
}

#[test]
fn tiny_llama3() {
    run_fixture("tiny-llama3");
}

#[test]
fn smollm2() {
    run_fixture("smollm2");
}
