//! Every fixture case on the CPU backend, against the transformers+PEFT float64 reference:
//! prefill, decode (one token at a time through the KV cache), and all cases of a model in one
//! batch with their different mixtures side by side. SmolLM2 runs twice: on its packed GGUF
//! blocks (Q4_1/Q8_0 dequantised inside the matmuls, the default) and fully dequantised to f32.

use dlp_engine::cpu::CpuBackend;
use dlp_tests::{run_golden, run_golden_f32_weights};

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

#[test]
fn smollm2_f32_weights() {
    run_golden_f32_weights("smollm2", CpuBackend::new());
}
