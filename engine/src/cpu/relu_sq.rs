//! `relu_sq`: the squared ReLU, `max(x, 0)^2`, the ungated feed-forward activation of Arcee
//! (AFM) and Nemotron (transformers' `relu2`, ReLUSquaredActivation; Primer, So et al. 2021,
//! arXiv 2109.08668; llama.cpp's `LLM_FFN_RELU_SQR`).

/// `max(x, 0)^2` in f32, rounded once (the square of a float is its one rounding); NaN stays
/// NaN, as PyTorch's `relu` passes it.
#[inline]
pub fn relu_sq_one(x: f32) -> f32 {
    // `x <= 0` is false for NaN, which then squares to NaN.
    if x <= 0.0 {
        0.0
    } else {
        x * x
    }
}

/// `out[i] = max(x[i], 0)^2` ([`relu_sq_one`]); `x` and `out` of one length.
pub fn relu_sq(x: &[f32], out: &mut [f32]) {
    super::unary::map(x, out, relu_sq_one);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides of zero, a square that overflows to infinity as PyTorch's does, NaN through,
    /// and the parallel path (past `unary`'s `PAR_MIN`) equal to the serial one.
    #[test]
    fn relu_sq_values() {
        let x = [0.0f32, -0.0, 1.5, -1.5, 3.0, -1e30, 1e30, f32::NAN];
        let mut out = [7.0f32; 8];
        relu_sq(&x, &mut out);
        assert_eq!(&out[..7], &[0.0, 0.0, 2.25, 0.0, 9.0, 0.0, f32::INFINITY]);
        assert!(out[7].is_nan());
        let big: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.5) * 1e-3).collect();
        let mut par = vec![0.0f32; big.len()];
        relu_sq(&big, &mut par);
        assert!(big.iter().zip(&par).all(|(&x, &o)| o == relu_sq_one(x)));
    }
}
