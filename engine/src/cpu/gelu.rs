//! `gelu`: the ungated feed-forward activation of StarCoder2 (`gelu_pytorch_tanh`), Phi-2 and
//! GPT-J (`gelu_new`), GELU's tanh approximation (PyTorch's `gelu(approximate="tanh")`); and
//! `gelu_erf`, the exact GELU of GPT-NeoX and Falcon (`gelu`, PyTorch's default).

/// `out[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, `x = x[i]`, computed as
/// [`super::gelu_mul::gelu_mul`] computes it with `up` all ones (the same loop; times 1 is
/// exact).
pub fn gelu(x: &[f32], out: &mut [f32]) {
    super::silu_mul::gated::<true>(x, None, out)
}

/// `out[i] = x / 2 * (1 + erf(x / sqrt(2)))`, `x = x[i]`, computed in f64 as
/// `x / 2 * erfc(-x / sqrt(2))` (libm's `erfc`, which keeps its relative accuracy in the tail
/// far below zero where `1 + erf` cancels), rounded once.
pub fn gelu_erf(x: &[f32], out: &mut [f32]) {
    super::unary::map(x, out, |x| {
        let x = x as f64;
        (0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
    });
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

    /// Known values (erf's tables), both tails (0 and x), NaN through.
    #[test]
    fn gelu_erf_values() {
        let x = [0.0f32, 1.0, -1.0, 2.0, -3.0, 10.0, -10.0, f32::NAN];
        let mut out = [0.0f32; 8];
        gelu_erf(&x, &mut out);
        // 1 * Phi(1) = 0.8413447460685429; -1 * Phi(-1) = -0.15865525393145707.
        let want = [
            0.0,
            0.841_344_8,
            -0.158_655_25,
            1.954_499_7,
            -0.004_049_694,
            10.0,
            -0.0,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() <= 1e-7 * w.abs().max(1e-3), "{o} vs {w}");
        }
        assert!(out[7].is_nan());
    }
}
