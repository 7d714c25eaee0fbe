//! Every fixture case on the wgpu backend against the transformers+PEFT float64 reference,
//! with the CPU's bounds: prefill, decode, and all cases in one batch (SmolLM2 on a software
//! adapter: [`Coverage::SoftwareReduced`], the rest recorded as skipped). Without an adapter:
//! `SKIPPED`, unless `DLP_REQUIRE_WGPU=1`. Then every fixture again with f16 weights, prefill,
//! under [`f16_logit_tol`] (adapter without `SHADER_F16`: `unsupported`, a failure only when
//! `DLP_REQUIRE_WGPU_F16=1`; SmolLM2 on hardware adapters only).

use dlp_engine::generate::{score_batch, ScoreMode, DEFAULT_STEP_TOKENS};
use dlp_engine::Backend;
use dlp_tests::{
    backend_or_skip, check_case_within, fixture_tests, fixtures, run_golden_with,
    skip_unless_required, Coverage, Fixture,
};
use dlp_wgpu::{AdapterPolicy, WgpuBackend, WgpuOptions};

fn run_fixture(name: &str) {
    let made = WgpuBackend::new(AdapterPolicy::AllowSoftware);
    if let Some(b) = backend_or_skip(made, "DLP_REQUIRE_WGPU") {
        // SmolLM2 on a software adapter: the full run took 9 minutes on lavapipe (2 cores) with
        // the matmul kernels before 2026-12-02; the reduced one (6 minutes then, 2.4 since) checks
        // every mixture's longest case in prefill and in decode.
        let coverage = if name == "smollm2" && b.is_software() {
            Coverage::SoftwareReduced
        } else {
            Coverage::Full
        };
        run_golden_with(name, b, coverage)
    }
}

fixture_tests!(run_fixture);
dlp_tests::gguf_fixture_tests!(run_fixture);
dlp_tests::compat_fixture_tests!(run_fixture);

/// The same fixtures with f16 weights.
mod f16_weights {
    dlp_tests::fixture_tests!(super::run_fixture_f16);
    dlp_tests::gguf_fixture_tests!(super::run_fixture_f16);
}

/// f16 weights (`WgpuOptions::f16_weights`, `--wgpu-f16-weights`): largest |logit - float64
/// reference| allowed for fixture `name`, for every reference number (logits, top-k logits,
/// logsumexp) of every case, prefill, all cases in one batch; the greedy token must match
/// wherever the reference margin exceeds twice this. The error is the weights' rounding to f16
/// and grows with the model. Measured max |diff| (lavapipe; the CPU backend on f16-rounded
/// weights gives the same figures):
/// - tiny-llama (f32 weights, almost all changed by rounding): 2.6e-3; bound 1e-2.
/// - tiny-qwen2 (bf16) and tiny-llama3 (f16): the weights are (all but 4) f16 values already,
///   2.2e-6 as with f32; same bound 1e-2 (they check the f16 path end to end, not rounding).
/// - smollm2 (Q4_1 GGUF dequantised, 42% of weights changed): 2.5e-2 (logits up to ~25);
///   bound 5e-2. Run on hardware adapters only (two minutes on lavapipe, 2 cores).
/// - tiny-qwen3 (bf16 weights): 2.4e-6. This repository's GGUF fixtures (random quantised
///   weights, rounded to f16): tiny-qwen3-gguf 6.8e-3, tiny-qwen2-gguf 1.4e-3, tiny-llama-gguf
///   3.0e-4; bound 2e-2.
fn f16_logit_tol(name: &str) -> f32 {
    match name {
        "smollm2" => 5e-2,
        n if n.ends_with("-gguf") => 2e-2,
        _ => 1e-2,
    }
}

/// The f16-weight golden check of fixture `name` (prefill, one batch of all cases).
fn run_fixture_f16(name: &str) {
    let Some(dir) = fixtures(name) else { return };
    let opts = WgpuOptions {
        f16_weights: true,
        ..WgpuOptions::default()
    };
    let b = match WgpuBackend::with_options(AdapterPolicy::AllowSoftware, opts) {
        Ok(b) => b,
        Err(e) if e.to_string().contains("SHADER_F16") => {
            return skip_unless_required(&format!("unsupported: {e}"), "DLP_REQUIRE_WGPU_F16");
        }
        Err(e) => return skip_unless_required(&format!("no backend: {e}"), "DLP_REQUIRE_WGPU"),
    };
    if name == "smollm2" && b.is_software() {
        // Two minutes on lavapipe (2 cores; 120 s with the matmul kernels of 2026-12-02); the tiny fixtures
        // check the same f16 path.
        return dlp_tests::skip_slow_software(&format!(
            "smollm2 with f16 weights is too slow on {} (the tiny fixtures check the f16 path)",
            b.name()
        ));
    }
    assert!(b.f16_weights());
    let fx = Fixture::open(&dir);
    let model = fx
        .load(b)
        .unwrap_or_else(|e| panic!("loading {}: {e}", fx.dir.display()));
    let vocab = model.config.vocab_size;
    let cases = &fx.golden.cases;
    let inputs: Vec<_> = cases.iter().map(|c| fx.input(&model, c)).collect();
    let batch = score_batch(&model, &inputs, ScoreMode::Prefill, DEFAULT_STEP_TOKENS).unwrap();
    let tol = f16_logit_tol(name);
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for (case, logits) in cases.iter().zip(&batch) {
        match check_case_within(&fx, case, vocab, logits, tol, 2.0 * tol) {
            Ok(w) => worst = worst.max(w),
            Err(e) => failures.push(e),
        }
    }
    println!(
        "{name} on {}, Prefill batched: {} cases, max |diff| {worst:.2e} (<= {tol:.0e})",
        model.backend.name(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
