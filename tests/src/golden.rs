//! The golden run: every case of a fixture on a backend, in prefill and decode, alone and in
//! one batch, against the float64 reference ([`check_case_within`]), with weights stored as
//! the backend keeps them, as f32, or rounded to bf16.

use dlp_engine::generate::{score_batch, ScoreMode, DEFAULT_STEP_TOKENS};
use dlp_engine::Backend;

use crate::{check_case_within, fixtures, skip_slow_software, Case, Fixture, LOGIT_TOL, MARGIN};

/// Runs every case of fixture `name` on `backend`: prefill, decode, and all cases in one
/// batch, each against the reference. Skips (with a printed reason) when the fixture is absent.
pub fn run_golden<B: Backend>(name: &str, backend: B) {
    run_golden_with(name, backend, Coverage::Full)
}

/// How much of a fixture a golden run scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coverage {
    /// Each case alone and all cases in one batch, in prefill and in decode.
    Full,
    /// Every case in one batch, in prefill and in decode (every case at every position, each
    /// under its own mixture); none alone. For the CPU emulations of the CUDA roundings on
    /// SmolLM2 ([`Coverage::emulation`]): each emulation rounds value by value (inputs of
    /// each product, weights and adapters at load, keys and values as stored) whatever the
    /// batch, so the batch measures the error the bound is about. Left out: SmolLM2 through
    /// the one-row kernels under the roundings (about 22 s per emulation on 2 cores); the
    /// plain CPU runs take those kernels on SmolLM2, every tiny fixture under every rounding.
    Batched,
    /// For a software GPU adapter on a fixture too large for [`Coverage::Full`] (SmolLM2 on
    /// lavapipe, 2 cores, with the matmul kernels before 2026-12-02: 9 minutes in full, 8 with
    /// every case's prefill, 6 like this; 2.4 like this since): each mixture's longest case,
    /// in one batch, in prefill and in decode (every mixture, every position of the longest
    /// prompt). What is left out is recorded as a skip
    /// ([`skip_slow_software`]), naming what was checked, so the test never reads as a full pass.
    SoftwareReduced,
}

impl Coverage {
    /// The coverage of a CPU emulation of a CUDA rounding on fixture `name`:
    /// [`Coverage::Batched`] on SmolLM2, [`Coverage::Full`] on the tiny fixtures (a tenth of a
    /// second each), which keep every path, alone and batched, under every emulation.
    pub fn emulation(name: &str) -> Coverage {
        if name == "smollm2" {
            Coverage::Batched
        } else {
            Coverage::Full
        }
    }
}

/// As [`run_golden`], scoring what `coverage` says.
pub fn run_golden_with<B: Backend>(name: &str, backend: B, coverage: Coverage) {
    let storage = Storage::default_for(&backend);
    run_golden_opts(name, backend, coverage, storage, F32_BOUND);
}

/// Every case with the 2-D weights rounded to bf16 ([`Fixture::load_bf16_rounded`]), under
/// bound `tol` (prefill, decode, batched), for bf16 weight storage (`--cuda-bf16-weights`).
pub fn run_golden_bf16_weights<B: Backend>(name: &str, backend: B, tol: f32) {
    run_golden_bf16_weights_with(name, backend, tol, Coverage::Full)
}

/// As [`run_golden_bf16_weights`], scoring what `coverage` says.
pub fn run_golden_bf16_weights_with<B: Backend>(
    name: &str,
    backend: B,
    tol: f32,
    coverage: Coverage,
) {
    let bound = (tol, 2.0 * tol);
    run_golden_opts(name, backend, coverage, Storage::Bf16Rounded, bound);
}

/// As [`run_golden`] with bound `tol` per reference number (greedy tokens checked where the
/// reference margin exceeds `2 * tol`), for reduced-precision storage (`--lora-f16`).
pub fn run_golden_within<B: Backend>(name: &str, backend: B, tol: f32) {
    run_golden_within_with(name, backend, tol, Coverage::Full)
}

/// As [`run_golden_within`], scoring what `coverage` says.
pub fn run_golden_within_with<B: Backend>(name: &str, backend: B, tol: f32, coverage: Coverage) {
    let storage = Storage::default_for(&backend);
    run_golden_opts(name, backend, coverage, storage, (tol, 2.0 * tol));
}

/// As [`run_golden`], with every weight loaded as f32 even where the backend could keep a
/// GGUF's packed blocks (the reference path, `--f32-weights`).
pub fn run_golden_f32_weights<B: Backend>(name: &str, backend: B) {
    run_golden_opts(name, backend, Coverage::Full, Storage::F32, F32_BOUND);
}

/// The bound of the f32 paths: (per reference number, greedy-token margin), as
/// [`crate::check_case`].
const F32_BOUND: (f32, f32) = (LOGIT_TOL, MARGIN);

/// How [`run_golden_opts`] loads the weights.
#[derive(Clone, Copy, PartialEq)]
enum Storage {
    /// A GGUF's blocks stay packed.
    Packed,
    /// Everything as f32.
    F32,
    /// f32 with every 2-D weight rounded to bf16.
    Bf16Rounded,
}

impl Storage {
    /// What `dlp-run` does on `backend`: packed blocks where it computes on them.
    fn default_for<B: Backend>(backend: &B) -> Storage {
        if backend.packed_weights() {
            Storage::Packed
        } else {
            Storage::F32
        }
    }
}

/// The golden run: weights loaded as `storage`, the cases `coverage` names, every reference
/// number within `tol` and the greedy token equal where the reference margin exceeds `margin`.
fn run_golden_opts<B: Backend>(
    name: &str,
    backend: B,
    coverage: Coverage,
    storage: Storage,
    (tol, margin): (f32, f32),
) {
    let check = |fx: &Fixture, case: &Case, vocab: usize, logits: &[f32]| {
        check_case_within(fx, case, vocab, logits, tol, margin)
    };
    let Some(dir) = fixtures(name) else { return };
    let fx = Fixture::open(&dir);
    let model = match storage {
        Storage::Bf16Rounded => fx.load_bf16_rounded(backend),
        s => fx.load_with(backend, s == Storage::Packed),
    }
    .unwrap_or_else(|e| panic!("loading {}: {e}", fx.dir.display()));
    let storage = match storage {
        Storage::Packed => "packed where the file allows",
        Storage::F32 => "f32",
        Storage::Bf16Rounded => "f32, 2-D weights rounded to bf16",
    };
    println!("{name}: weights loaded {storage}");
    let vocab = model.config.vocab_size;
    let cases = &fx.golden.cases;
    let inputs: Vec<_> = cases.iter().map(|c| fx.input(&model, c)).collect();
    let all: Vec<usize> = (0..cases.len()).collect();
    // (cases scored alone, cases scored together in one batch), the same in both modes
    let (alone, batched) = match coverage {
        Coverage::Full => (all.clone(), all),
        Coverage::Batched => (Vec::new(), all),
        Coverage::SoftwareReduced => (Vec::new(), longest_per_mixture(cases)),
    };
    // One batch, each sequence its own mixture.
    let batch_inputs: Vec<_> = batched.iter().map(|&i| inputs[i].clone()).collect();
    let mut failures = Vec::new();
    for mode in [ScoreMode::Prefill, ScoreMode::Decode] {
        let mut worst = 0f32;
        for &i in &alone {
            let one = std::slice::from_ref(&inputs[i]);
            let logits = score_batch(&model, one, mode, DEFAULT_STEP_TOKENS)
                .unwrap()
                .remove(0);
            match check(&fx, &cases[i], vocab, &logits) {
                Ok(w) => worst = worst.max(w),
                Err(e) => failures.push(format!("{mode:?} {e}")),
            }
        }
        let batch = score_batch(&model, &batch_inputs, mode, DEFAULT_STEP_TOKENS).unwrap();
        for (&i, logits) in batched.iter().zip(&batch) {
            match check(&fx, &cases[i], vocab, logits) {
                Ok(w) => worst = worst.max(w),
                Err(e) => failures.push(format!("{mode:?} batched {e}")),
            }
        }
        println!(
            "{name} on {} {mode:?}: {} cases alone, {} in one batch, max |diff| {worst:.2e}",
            model.backend.name(),
            alone.len(),
            batched.len()
        );
    }
    if coverage == Coverage::SoftwareReduced {
        let others: Vec<&str> = (0..cases.len())
            .filter(|i| !batched.contains(i))
            .map(|i| cases[i].name.as_str())
            .collect();
        skip_slow_software(&format!(
            "{name} on {}: checked {} of its {} cases (each mixture's longest) in one batch, in \
             prefill and in decode; left out: each case alone, and the other {}: {}",
            model.backend.name(),
            batched.len(),
            cases.len(),
            others.len(),
            others.join(", "),
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The indices of the longest case of each distinct mixture (the first of equal lengths), in
/// the fixture's order: every mixture at its most positions.
pub fn longest_per_mixture(cases: &[Case]) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        match best.iter_mut().find(|b| cases[**b].mixture == c.mixture) {
            Some(b) if cases[*b].len < c.len => *b = i,
            Some(_) => {}
            None => best.push(i),
        }
    }
    best.sort_unstable();
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(len: usize, mixture: &[(&str, f32)]) -> Case {
        Case {
            name: String::new(),
            prompt_len: 1,
            len,
            mixture: mixture.iter().map(|(a, w)| (a.to_string(), *w)).collect(),
            prompt_text: None,
        }
    }

    #[test]
    fn longest_per_mixture_keeps_each_mixture_once_at_its_longest() {
        let (a, ab) = (&[("a", 1.0)][..], &[("a", 0.6), ("b", 0.4)][..]);
        let cases = [
            case(21, &[]),
            case(21, a),
            case(21, ab),
            case(33, &[]),
            case(33, a),
            case(29, ab),
            // Same adapters, other weights: another mixture.
            case(5, &[("a", 0.5), ("b", 0.5)]),
            // A tie keeps the first.
            case(33, a),
        ];
        assert_eq!(longest_per_mixture(&cases), vec![3, 4, 5, 6]);
        assert!(longest_per_mixture(&[]).is_empty());
    }
}
