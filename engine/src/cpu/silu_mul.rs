//! `silu_mul`: the SwiGLU activation, `silu(gate) * up`; and the gated loop it shares with
//! [`super::gelu_mul`], whose tanh-approximated GELU is `g * sigmoid(z(g))` too.

use rayon::prelude::*;

/// Values per parallel task.
const CHUNK: usize = 1 << 13;

/// `2 sqrt(2/pi)`: GELU's tanh form `0.5 g (1 + tanh(c (g + 0.044715 g^3)))`, with
/// `c = sqrt(2/pi)`, is `g * sigmoid(2c (g + 0.044715 g^3))`.
pub(super) const GELU_K: f32 = 1.595_769_2;
/// The cubic term's coefficient of GELU's tanh approximation.
pub(super) const GELU_C: f32 = 0.044_715;

/// `out[i] = gate[i] * sigmoid(gate[i]) * up[i]`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    gated::<false>(gate, Some(up), out)
}

/// What an ungated activation ([`super::gelu::gelu`]) multiplies by: times 1 is exact.
static ONES: [f32; CHUNK] = [1.0; CHUNK];

/// `out[i] = g * sigmoid(z) * up[i]` with `g = gate[i]` and `z = g` (SiLU) or, with `GELU`,
/// `z = GELU_K (g + GELU_C g^3)` (GELU's tanh approximation); `up` `None`: all ones (the
/// activation alone).
pub(super) fn gated<const GELU: bool>(gate: &[f32], up: Option<&[f32]>, out: &mut [f32]) {
    let n = out.len();
    assert!(
        gate.len() >= n && up.is_none_or(|u| u.len() >= n),
        "gated activation: short inputs"
    );
    let run = |(i, o): (usize, &mut [f32])| {
        let g = &gate[i * CHUNK..][..o.len()];
        // Each task's slice is at most CHUNK long.
        let u = match up {
            Some(up) => &up[i * CHUNK..][..o.len()],
            None => &ONES[..o.len()],
        };
        #[cfg(target_arch = "x86_64")]
        if super::avx512::available() {
            // SAFETY: AVX-512F and FMA checked; `g` and `u` are as long as `o`.
            return unsafe { silu_mul_avx512::<GELU>(g, u, o) };
        }
        #[cfg(target_arch = "x86_64")]
        if super::packed_dot::has_avx2() {
            // SAFETY: AVX2 and FMA checked; `g` and `u` are as long as `o`.
            return unsafe { silu_mul_avx2::<GELU>(g, u, o) };
        }
        o.iter_mut().zip(g.iter().zip(u)).for_each(|(o, (&g, u))| {
            let z = if GELU {
                GELU_K * (g + GELU_C * g * g * g)
            } else {
                g
            };
            *o = g / (1.0 + (-z).exp()) * u
        });
    };
    if n <= CHUNK {
        run((0, out));
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(run);
    }
}

/// [`silu_mul`] sixteen lanes at a time, `exp` by [`super::avx512::exp16`] (libm's scalar
/// `expf` was 4% of a batch-32 decode step).
///
/// # Safety
/// AVX-512F and FMA; `g` and `u` hold `o.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn silu_mul_avx512<const GELU: bool>(g: &[f32], u: &[f32], o: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = o.len();
    let one = _mm512_set1_ps(1.0);
    let (k, kc) = (_mm512_set1_ps(GELU_K), _mm512_set1_ps(GELU_K * GELU_C));
    for i in (0..n).step_by(16) {
        let m = ((1u32 << (n - i).min(16)) - 1) as u16;
        // SAFETY: lanes at or past `n` are masked off.
        unsafe {
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(i));
            let uv = _mm512_maskz_loadu_ps(m, u.as_ptr().add(i));
            // GELU: z = g (K + K C g^2).
            let z = match GELU {
                true => _mm512_mul_ps(gv, _mm512_fmadd_ps(kc, _mm512_mul_ps(gv, gv), k)),
                false => gv,
            };
            let e = super::avx512::exp16(_mm512_sub_ps(_mm512_setzero_ps(), z));
            let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(o.as_mut_ptr().add(i), m, _mm512_mul_ps(s, uv));
        }
    }
}

/// [`silu_mul`] eight lanes at a time, `exp` by [`super::avx2::exp8`]; the last `len % 8`
/// values through one padded vector.
///
/// # Safety
/// AVX2 and FMA; `g` and `u` hold `o.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2<const GELU: bool>(g: &[f32], u: &[f32], o: &mut [f32]) {
    use std::arch::x86_64::*;
    let one = _mm256_set1_ps(1.0);
    let (k, kc) = (_mm256_set1_ps(GELU_K), _mm256_set1_ps(GELU_K * GELU_C));
    let silu = |gv: __m256, uv: __m256| {
        let z = match GELU {
            true => _mm256_mul_ps(gv, _mm256_fmadd_ps(kc, _mm256_mul_ps(gv, gv), k)),
            false => gv,
        };
        // SAFETY: AVX2 and FMA (this function's features).
        let e = unsafe { super::avx2::exp8(_mm256_sub_ps(_mm256_setzero_ps(), z)) };
        _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), uv)
    };
    let (mut oc, mut gc, mut uc) = (o.chunks_exact_mut(8), g.chunks_exact(8), u.chunks_exact(8));
    for ((o, g), u) in (&mut oc).zip(&mut gc).zip(&mut uc) {
        // SAFETY: each chunk holds 8 values.
        unsafe {
            let r = silu(_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr()));
            _mm256_storeu_ps(o.as_mut_ptr(), r);
        }
    }
    let o = oc.into_remainder();
    if !o.is_empty() {
        let (mut gp, mut up, mut op) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        gp[..o.len()].copy_from_slice(&gc.remainder()[..o.len()]);
        up[..o.len()].copy_from_slice(&uc.remainder()[..o.len()]);
        // SAFETY: the padded arrays hold 8 values.
        unsafe {
            let r = silu(_mm256_loadu_ps(gp.as_ptr()), _mm256_loadu_ps(up.as_ptr()));
            _mm256_storeu_ps(op.as_mut_ptr(), r);
        }
        o.copy_from_slice(&op[..o.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `silu_mul` (the AVX-512 or AVX2 path where this CPU has one, with its vector `exp`) against
    /// float64 over a wide range of gates, a length that is not a multiple of 8 or 16, and a
    /// parallel length; NaN gates stay NaN.
    #[test]
    fn silu_mul_matches_f64() {
        for n in [37, 3 * CHUNK + 5] {
            let gate: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 4001) as f32 / 4001.0 * 240.0 - 120.0)
                .collect();
            let up: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32 / 7.0).collect();
            let mut out = vec![f32::NAN; n];
            silu_mul(&gate, &up, &mut out);
            for ((o, g), u) in out.iter().zip(&gate).zip(&up) {
                let (g64, u64) = (*g as f64, *u as f64);
                let want = g64 / (1.0 + (-g64).exp()) * u64;
                let err = (*o as f64 - want).abs();
                assert!(
                    err <= 4e-7 * want.abs() + 1e-30,
                    "silu_mul({g}) * {u} = {o}, float64 {want}"
                );
            }
        }
        let mut out = [0.0; 3];
        silu_mul(&[f32::NAN, 1.0, -1.0], &[1.0; 3], &mut out);
        assert!(out[0].is_nan() && out[1].is_finite() && out[2].is_finite());
    }
}
