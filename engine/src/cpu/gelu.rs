//! `gelu`: the ungated feed-forward activation of StarCoder2 (`gelu_pytorch_tanh`) and Phi-2
//! (`gelu_new`), GELU's tanh approximation (PyTorch's `gelu(approximate="tanh")`).

/// `out[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, `x = x[i]`, computed as
/// [`super::gelu_mul::gelu_mul`] computes it with `up` all ones (the same loop; times 1 is
/// exact).
pub fn gelu(x: &[f32], out: &mut [f32]) {
    super::silu_mul::gated::<true>(x, None, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal to the bit to `gelu_mul` with `up` all ones (whose accuracy its own test checks
    /// against float64), over both tails, a NaN, and a parallel length.
    #[test]
    fn gelu_is_gelu_mul_by_one() {
        for n in [37, 3 * 8192 + 5] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 240.0 - 120.0)
                .chain([0.0, -0.0, 1e-20, -3.0, 3.0, 1e30, -1e30, f32::NAN])
                .collect();
            let mut got = vec![f32::NAN; x.len()];
            gelu(&x, &mut got);
            let mut want = vec![0.0; x.len()];
            super::super::gelu_mul::gelu_mul(&x, &vec![1.0; x.len()], &mut want);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits(),
                    "gelu({}) = {g}, gelu_mul {w}",
                    x[i]
                );
            }
        }
        let mut out = [0.0; 2];
        gelu(&[1.0, -1.0], &mut out);
        assert!((out[0] - 0.841_192).abs() < 1e-5 && (out[1] + 0.158_808).abs() < 1e-5);
    }
}
