//! `gelu_mul`: the GeGLU activation of Gemma's feed-forward, `gelu(gate) * up`, GELU's tanh
//! approximation (PyTorch's `gelu(approximate="tanh")`, transformers' `gelu_pytorch_tanh`).

/// `out[i] = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * up[i]`, `g = gate[i]`,
/// computed as the equal `g * sigmoid(2 sqrt(2/pi) (g + 0.044715 g^3)) * up[i]` by the loop
/// [`super::silu_mul::silu_mul`] runs (its vector `exp`).
pub fn gelu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    super::silu_mul::gated::<true>(gate, Some(up), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against float64 over a wide range of gates (both tails, where the cubic overflows the
    /// exponential; the tanh form itself where it is well conditioned), a length that is not a
    /// multiple of 8 or 16, and a parallel length; NaN gates stay NaN.
    #[test]
    fn gelu_mul_matches_f64_tanh_form() {
        for n in [37, 3 * 8192 + 5] {
            let gate: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 240.0 - 120.0)
                .chain([0.0, -0.0, 1e-20, -3.0, 3.0, 1e30, -1e30])
                .collect();
            let up: Vec<f32> = (0..gate.len())
                .map(|i| 1.0 + (i % 13) as f32 / 7.0)
                .collect();
            let mut out = vec![f32::NAN; gate.len()];
            gelu_mul(&gate, &up, &mut out);
            for ((o, g), u) in out.iter().zip(&gate).zip(&up) {
                let (g64, u64) = (*g as f64, *u as f64);
                let z = (2.0 / std::f64::consts::PI).sqrt() * (g64 + 0.044715 * g64.powi(3));
                // The sigmoid form in float64: the tanh form cancels to 0 in the negative
                // tail (1 + tanh(z) rounds to 0 below z = -19), where the value is ~1e-24.
                let want = g64 / (1.0 + (-2.0 * z).exp()) * u64;
                if z.abs() < 5.0 {
                    let tanh_form = 0.5 * g64 * (1.0 + z.tanh()) * u64;
                    assert!((tanh_form - want).abs() <= 1e-12 * want.abs().max(1e-6));
                }
                // The f32 rounding of the exponent 2z (a few ulps) is amplified by exp: the
                // relative error grows as |2z| 2^-23 in the negative tail.
                let err = (*o as f64 - want).abs();
                assert!(
                    err <= (1e-6 + 3e-7 * (2.0 * z).abs()) * want.abs() + 1e-30,
                    "gelu_mul({g}) * {u} = {o}, float64 {want}"
                );
            }
        }
        let mut out = [0.0; 3];
        gelu_mul(&[f32::NAN, 1.0, -1.0], &[1.0; 3], &mut out);
        assert!(
            out[0].is_nan()
                && (out[1] - 0.841_192).abs() < 1e-5
                && (out[2] + 0.158_808).abs() < 1e-5
        );
    }
}
