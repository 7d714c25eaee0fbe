//! Every fixture case on the wgpu backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds: prefill, decode, and all cases in one batch. Without an adapter:
//! `SKIPPED`, unless `DLP_REQUIRE_WGPU=1`.

use dlp_tests::run_golden_with;
use dlp_wgpu::{AdapterPolicy, WgpuBackend};

fn run_fixture(name: &str) {
    match WgpuBackend::new(AdapterPolicy::AllowSoftware) {
        // On a software adapter SmolLM2 token-by-token decode of each case alone takes many
        // minutes; the all-cases batch still checks every case's decode path.
        Ok(b) => {
            let per_case_decode = name != "smollm2" || !b.is_software();
            run_golden_with(name, b, per_case_decode)
        }
        Err(e) if std::env::var("DLP_REQUIRE_WGPU").is_ok_and(|v| v == "1") => {
            panic!("no wgpu backend: {e}; DLP_REQUIRE_WGPU=1 makes this a failure")
        }
        Err(e) => eprintln!("SKIPPED: {e}"),
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
