//! Every fixture case on the CPU backend, against the transformers+PEFT float64 reference:
//! prefill, decode (one token at a time through the KV cache), and all cases of a model in one
//! batch with their different mixtures side by side.

use dlp_engine::generate::{score_batch, ScoreMode, DEFAULT_STEP_TOKENS};
use dlp_tests::{check_case, cpu_model, fixtures, Fixture};

fn run_fixture(name: &str) {
    let Some(dir) = fixtures(name) else { return };
    let fx = Fixture::open(&dir);
    let model = cpu_model(&fx);
    let vocab = model.config.vocab_size;
    let inputs: Vec<_> = fx.golden.cases.iter().map(|c| fx.input(&model, c)).collect();
    let mut failures = Vec::new();
    for mode in [ScoreMode::Prefill, ScoreMode::Decode] {
        let mut worst = 0f32;
        for (case, input) in fx.golden.cases.iter().zip(&inputs) {
            let logits = score_batch(&model, std::slice::from_ref(input), mode, DEFAULT_STEP_TOKENS).unwrap().remove(0);
            match check_case(&fx, case, vocab, &logits) {
                Ok(w) => worst = worst.max(w),
                Err(e) => failures.push(format!("{mode:?} {e}")),
            }
        }
        // All cases at once: one batch, each sequence its own mixture.
        let batch = score_batch(&model, &inputs, mode, DEFAULT_STEP_TOKENS).unwrap();
        for (case, logits) in fx.golden.cases.iter().zip(&batch) {
            match check_case(&fx, case, vocab, logits) {
                Ok(w) => worst = worst.max(w),
                Err(e) => failures.push(format!("{mode:?} batched {e}")),
            }
        }
        println!("{name} {mode:?}: {} cases, max |diff| {worst:.2e}", fx.golden.cases.len());
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
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
