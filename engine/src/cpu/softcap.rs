//! `softcap`: every value soft-capped in place (Gemma 2's final logit soft cap).

/// `x[i] = cap * tanh(x[i] / cap)` (transformers' Gemma2ForCausalLM, `final_logit_softcapping`).
pub fn softcap(x: &mut [f32], cap: f32) {
    x.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
}
