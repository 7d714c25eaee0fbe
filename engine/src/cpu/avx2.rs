//! Vector math for CPUs with AVX2 + FMA and no AVX-512 (most laptops): [`exp8`], the
//! eight-lane twin of [`super::avx512::exp16`], and the softmax row built on it. libm's scalar
//! `expf` was 9% of a 2,048-token SmolLM2 prefill on such a CPU (the attention softmax) and
//! the whole cost of `silu_mul` outside its loads.

use std::arch::x86_64::*;

use super::avx2_blocks::hsum;

/// `2^k` for integer lanes `k` in [-126, 127], built in the exponent field.
#[inline(always)]
unsafe fn pow2i(k: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        k,
        _mm256_set1_epi32(127),
    )))
}

/// `exp(x)` of 8 lanes within 3 ulp (the test's bound), as [`super::avx512::exp16`] computes it: `x = n ln2
/// + r` (ln2 split in two, as Cephes), a degree-7 Taylor polynomial on `|r| <= ln2 / 2`, then a
/// scale by `2^n`. AVX2 has no `vscalefps`, so `2^n` is made in the exponent field as
/// `2^(n/2) * 2^(n - n/2)`: each half stays a normal number over the whole clamped range, so
/// large inputs overflow to `inf` and small ones underflow through the subnormals to 0, as
/// `exp` does. Inputs clamp to [-104, 88.73]; NaN stays NaN.
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp8(x: __m256) -> __m256 {
    // `max`/`min` return their second operand when either is NaN: NaN passes through.
    let x = _mm256_min_ps(
        _mm256_set1_ps(88.73),
        _mm256_max_ps(_mm256_set1_ps(-104.0), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    use super::exp_poly::{LN2_HI, LN2_LO, TAYLOR};
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(TAYLOR[0]);
    for &c in &TAYLOR[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // n in [-150, 128]; a NaN lane converts to i32::MIN, and NaN * anything stays NaN.
    let k = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32::<1>(k);
    let rest = _mm256_sub_epi32(k, half);
    _mm256_mul_ps(_mm256_mul_ps(p, pow2i(half)), pow2i(rest))
}

/// Every row of `n` scores (one per head) scaled by `scale` and made its softmax, in place,
/// with each row's log-sum-exp of the scaled scores in `lse`: the portable `softmax_rows` of
/// the attention with `exp` by [`exp8`].
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_rows(scores: &mut [f32], n: usize, scale: f32, lse: &mut [f32]) {
    if n == 0 {
        return;
    }
    let s = _mm256_set1_ps(scale);
    for (row, lse) in scores.chunks_mut(n).zip(lse) {
        let (body, tail) = row.split_at_mut(n - n % 8);
        let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
        for x in body.chunks_exact(8) {
            max = _mm256_max_ps(max, _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), s));
        }
        let mut m = hmax(max);
        for x in tail.iter() {
            m = m.max(x * scale);
        }
        let mv = _mm256_set1_ps(m);
        let mut sum = _mm256_setzero_ps();
        for x in body.chunks_exact_mut(8) {
            let v = _mm256_fmsub_ps(_mm256_loadu_ps(x.as_ptr()), s, mv);
            let e = exp8(v);
            _mm256_storeu_ps(x.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, e);
        }
        let mut total = hsum(sum);
        if !tail.is_empty() {
            // The last `n % 8` scores through one padded vector; only their lanes count.
            let mut pad = [f32::NEG_INFINITY; 8];
            pad[..tail.len()].copy_from_slice(tail);
            let e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(pad.as_ptr()), s, mv));
            _mm256_storeu_ps(pad.as_mut_ptr(), e);
            tail.copy_from_slice(&pad[..tail.len()]);
            total += tail.iter().sum::<f32>();
        }
        *lse = m + total.ln();
        let inv = _mm256_set1_ps(1.0 / total);
        for x in body.chunks_exact_mut(8) {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), inv);
            _mm256_storeu_ps(x.as_mut_ptr(), v);
        }
        tail.iter_mut().for_each(|x| *x /= total);
    }
}

/// The largest of the eight lanes (the max twin of [`hsum`]).
#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this CPU lacks what the kernels need (the skip is recorded).
    fn skipped() -> bool {
        let has = super::super::packed_dot::has_avx2();
        if !has {
            dlp_skip::skip(
                dlp_skip::kind::AVX2,
                "this CPU has no AVX2 + FMA + F16C (exp8 is not used here)",
                None,
            );
        }
        !has
    }

    /// [`exp8`] against float64 `exp` on a dense grid over the normal range (relative error
    /// within 3 ulp of f32), subnormal results within one subnormal step, overflow to `inf`,
    /// and NaN passing through.
    #[test]
    fn exp8_matches_f64() {
        if skipped() {
            return;
        }
        let run = |x: [f32; 8]| {
            let mut y = [0f32; 8];
            // SAFETY: AVX2 and FMA checked above; both arrays hold 8 values.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr(), exp8(_mm256_loadu_ps(x.as_ptr()))) };
            y
        };
        let worst = super::super::exp_poly::worst_on_grid("exp8", 8, |x, y| {
            y.copy_from_slice(&run(x.try_into().expect("8 values")));
        });
        let tiny = f64::from(f32::from_bits(1)); // the smallest subnormal
        let edges = [-88.0, -95.0, -103.0, -104.0, -200.0, 88.8, 1e30, f32::NAN];
        for (x, y) in edges.iter().zip(&run(edges)) {
            let want = (*x as f64).exp();
            match *x {
                x if x.is_nan() => assert!(y.is_nan(), "exp8(NaN) = {y}"),
                x if x > 88.73 => assert_eq!(*y, f32::INFINITY, "exp8({x})"),
                _ => assert!(
                    (*y as f64 - want).abs() <= tiny.max(want * 3.0 * f32::EPSILON as f64),
                    "exp8({x}) = {y:e}, float64 {want:e}"
                ),
            }
        }
        println!("exp8: worst relative error {worst:.2e}");
    }

    /// [`softmax_rows`] against float64 for row lengths around the vector width, with a
    /// `-inf` score (a masked position) and a large spread.
    #[test]
    fn softmax_rows_match_f64() {
        if skipped() {
            return;
        }
        for n in [1, 7, 8, 9, 16, 23, 100] {
            let rows = 3;
            let mut x: Vec<f32> = (0..rows * n)
                .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.37)
                .collect();
            if n > 1 {
                x[n / 2] = f32::NEG_INFINITY;
            }
            let scale = 0.125;
            let mut want_lse = Vec::new();
            let want: Vec<f64> = x
                .chunks(n)
                .flat_map(|row| {
                    let s: Vec<f64> = row.iter().map(|&v| f64::from(v) * 0.125).collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    want_lse.push(m + z.ln());
                    e.into_iter().map(move |v| v / z)
                })
                .collect();
            let mut lse = [0f32; 3];
            // SAFETY: AVX2 and FMA checked above.
            unsafe { softmax_rows(&mut x, n, scale, &mut lse) };
            for (got, w) in lse.iter().zip(&want_lse) {
                assert!(
                    (f64::from(*got) - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "n {n}: lse {got} vs {w}"
                );
            }
            for (i, (y, w)) in x.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*y) - w).abs() <= 1e-6 * w.max(1e-3),
                    "n {n}, [{i}]: {y} vs {w}"
                );
            }
        }
    }
}
