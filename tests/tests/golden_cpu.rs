//! Every fixture case on the CPU backend, against the transformers+PEFT float64 reference:
//! prefill, decode (one token at a time through the KV cache), and all cases of a model in one
//! batch with their different mixtures side by side.

use dlp_engine::cpu::CpuBackend;
use dlp_tests::run_golden;

fn run_fixture(name: &str) {
    run_golden(name, CpuBackend::new());
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
