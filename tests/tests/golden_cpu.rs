//! Every fixture case on the CPU backend, against the transformers+PEFT float64 reference:
//! prefill, decode (one token at a time through the KV cache), and all cases of a model in one
//! batch with their different mixtures side by side. SmolLM2 runs twice: on its packed GGUF
//! blocks (Q4_1/Q8_0 dequantised inside the matmuls, the default) and fully dequantised to f32.

use dlp_engine::cpu::CpuBackend;
use dlp_tests::{fixture_tests, run_golden, run_golden_f32_weights};

fn run_fixture(name: &str) {
    run_golden(name, CpuBackend::new());
}

fixture_tests!(run_fixture);

#[test]
fn smollm2_f32_weights() {
    run_golden_f32_weights("smollm2", CpuBackend::new());
}
