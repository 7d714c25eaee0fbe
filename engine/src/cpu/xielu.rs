//! `xielu`: the xIELU activation (Huang et al. 2024, "Deriving Activation Functions Using
//! Integration", arXiv 2411.13010), Apertus's ungated feed-forward activation, with constants
//! learned per layer ([`Xielu`]; transformers' `XIELUActivation`, llama.cpp's `ggml_xielu`).

use crate::backend::Xielu;

/// xIELU of one value in f32, in transformers' order of operations:
/// `alpha_p * x * x + beta * x` for `x > 0`, else
/// `(expm1(min(x, eps)) - x) * alpha_n + beta * x`. NaN stays NaN (through `- x`).
#[inline]
pub fn xielu_one(x: f32, p: Xielu) -> f32 {
    if x > 0.0 {
        p.alpha_p * x * x + p.beta * x
    } else {
        (x.min(p.eps).exp_m1() - x) * p.alpha_n + p.beta * x
    }
}

/// `out[i] = xielu(x[i])` ([`xielu_one`]); `x` and `out` of one length.
pub fn xielu(x: &[f32], p: Xielu, out: &mut [f32]) {
    super::unary::map(x, out, |v| xielu_one(v, p));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants of `XIELUActivation()`'s defaults: alpha_p 0.8, alpha_n 0.8, beta 0.5,
    /// eps -1e-6, already through their softplus.
    const P: Xielu = Xielu {
        alpha_p: 0.8,
        alpha_n: 0.8,
        beta: 0.5,
        eps: -1e-6,
    };

    /// Values worked in f64 from the formula: both branches, the eps clamp (a negative `x`
    /// above `eps` is clamped to it), the tails, NaN through, and the parallel path equal to
    /// the serial one.
    #[test]
    fn xielu_values() {
        let want = |x: f64| {
            let (ap, an, b, e) = (0.8f64, 0.8, 0.5, -1e-6f32 as f64);
            match x > 0.0 {
                true => ap * x * x + b * x,
                false => (x.min(e).exp_m1() - x) * an + b * x,
            }
        };
        for x in [2.0f32, 0.25, -0.25, -3.0, -1e-8, -0.0, 0.0, 40.0, -40.0] {
            let got = xielu_one(x, P) as f64;
            let w = want(x as f64);
            assert!(
                (got - w).abs() <= 4e-7 * w.abs().max(1e-6),
                "{x}: {got} vs {w}"
            );
        }
        // Above eps, a negative input is clamped: expm1(eps) - x, not expm1(x) - x = O(x^2).
        let clamped = xielu_one(-1e-8, Xielu { eps: -0.5, ..P }) as f64;
        assert!((clamped - (((-0.5f64).exp_m1() + 1e-8) * 0.8 - 0.5e-8)).abs() < 1e-6);
        // Overflow to infinity as PyTorch's, and -inf to NaN (inf - inf), as PyTorch's.
        assert_eq!(xielu_one(1e30, P), f32::INFINITY);
        assert!(xielu_one(f32::NEG_INFINITY, P).is_nan());
        assert!(xielu_one(f32::NAN, P).is_nan());
        let big: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.5) * 1e-3).collect();
        let mut par = vec![0.0f32; big.len()];
        xielu(&big, P, &mut par);
        assert!(big.iter().zip(&par).all(|(&x, &o)| o == xielu_one(x, P)));
    }

    /// softplus's two regimes and the folding of `beta` into alpha_n, as transformers' and
    /// ggml's: the learned parameters `log(expm1(a))` give back `a`.
    #[test]
    fn from_learned_inverts_the_parametrisation() {
        let raw = |a: f64| a.exp_m1().ln();
        let p = Xielu::from_learned(raw(0.8), raw(0.8 - 0.5), 0.5, -1e-6);
        assert!((p.alpha_p - 0.8).abs() < 1e-7 && (p.alpha_n - 0.8).abs() < 1e-7);
        assert_eq!((p.beta, p.eps), (0.5, -1e-6));
        // Past PyTorch's softplus threshold (20) it is the identity (log1p(exp(1000)) would
        // overflow to infinity).
        let q = Xielu::from_learned(1000.0, -30.0, 0.25, -0.5);
        assert_eq!(q.alpha_p, 1000.0);
        assert!((q.alpha_n - 0.25).abs() < 1e-9);
    }
}
