//! Register-blocked small products on AVX-512 ([`super::avx512`] has the detection): the
//! `rows x features` dot kernel (attention scores, the LoRA shrink of several tokens) and the
//! LoRA expand's column-block kernels (f32 and the f16 of `--lora-f16`).

use std::arch::x86_64::*;

use super::avx512::load_partial;

/// Rows of `x` per register block.
pub const BLOCK_ROWS: usize = 4;
/// Weight rows (output features) per register block.
pub const BLOCK_FEATURES: usize = 4;

/// `out[r * ldo + f] = dot(x[r * ldx ..][..k], w[f * ldw ..][..k])` for `r < rows`,
/// `f < features`: `rows x features` dot products, each weight vector loaded once per block
/// of [`BLOCK_ROWS`] rows and each input vector once per [`BLOCK_FEATURES`] features, so the
/// loop is bound by FMAs rather than loads (the f32 `x @ W^T` of batches and prefill).
///
/// # Safety
/// AVX-512F and FMA; `x` holds `rows` rows of `k` values `ldx` apart, `w` holds `features`
/// rows `ldw` apart, `out` holds `rows` rows `ldo` apart with `features` values each.
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn rows_by_features(
    x: *const f32,
    ldx: usize,
    rows: usize,
    w: *const f32,
    ldw: usize,
    features: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as the caller vouched.
    unsafe { by_features(|r| x.add(r * ldx), rows, w, ldw, features, k, out, ldo) }
}

/// [`rows_by_features`] over the rows `x[i * k ..][..k]` for `i` in `which` (the tokens of a
/// batch that use one adapter), read in place rather than gathered into a copy.
///
/// # Safety
/// AVX-512F and FMA; `x` holds every row `which` names, `w` holds `features` rows `ldw`
/// apart, `out` holds `which.len()` rows `ldo` apart with `features` values each.
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn picked_rows_by_features(
    x: *const f32,
    which: &[usize],
    w: *const f32,
    ldw: usize,
    features: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as the caller vouched.
    unsafe {
        by_features(
            |r| x.add(which[r] * k),
            which.len(),
            w,
            ldw,
            features,
            k,
            out,
            ldo,
        )
    }
}

/// The block loop of [`rows_by_features`], row `r` of `x` at `row(r)`.
#[target_feature(enable = "avx512f,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn by_features(
    row: impl Fn(usize) -> *const f32,
    rows: usize,
    w: *const f32,
    ldw: usize,
    features: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    let mut r = 0;
    while r < rows {
        let nr = (rows - r).min(BLOCK_ROWS);
        let xr: [*const f32; BLOCK_ROWS] = std::array::from_fn(|i| row(r + i.min(nr - 1)));
        let mut f = 0;
        while f < features {
            let nf = (features - f).min(BLOCK_FEATURES);
            // SAFETY: the block lies inside the caller's ranges.
            unsafe {
                let (wb, ob) = (w.add(f * ldw), out.add(r * ldo + f));
                match (nr, nf) {
                    (4, 4) => block::<4, 4>(&xr, wb, ldw, k, ob, ldo),
                    (4, 3) => block::<4, 3>(&xr, wb, ldw, k, ob, ldo),
                    (4, 2) => block::<4, 2>(&xr, wb, ldw, k, ob, ldo),
                    (4, _) => block::<4, 1>(&xr, wb, ldw, k, ob, ldo),
                    (3, 4) => block::<3, 4>(&xr, wb, ldw, k, ob, ldo),
                    (3, 3) => block::<3, 3>(&xr, wb, ldw, k, ob, ldo),
                    (3, 2) => block::<3, 2>(&xr, wb, ldw, k, ob, ldo),
                    (3, _) => block::<3, 1>(&xr, wb, ldw, k, ob, ldo),
                    (2, 4) => block::<2, 4>(&xr, wb, ldw, k, ob, ldo),
                    (2, 3) => block::<2, 3>(&xr, wb, ldw, k, ob, ldo),
                    (2, 2) => block::<2, 2>(&xr, wb, ldw, k, ob, ldo),
                    (2, _) => block::<2, 1>(&xr, wb, ldw, k, ob, ldo),
                    (_, 4) => block::<1, 4>(&xr, wb, ldw, k, ob, ldo),
                    (_, 3) => block::<1, 3>(&xr, wb, ldw, k, ob, ldo),
                    (_, 2) => block::<1, 2>(&xr, wb, ldw, k, ob, ldo),
                    (_, _) => block::<1, 1>(&xr, wb, ldw, k, ob, ldo),
                }
            }
            f += nf;
        }
        r += nr;
    }
}

/// One `R x F` register block of [`rows_by_features`].
#[target_feature(enable = "avx512f,fma")]
#[inline]
unsafe fn block<const R: usize, const F: usize>(
    x: &[*const f32; BLOCK_ROWS],
    w: *const f32,
    ldw: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); F]; R];
    let mut i = 0;
    // SAFETY: every load reads values below `k` of a row the caller vouched for.
    unsafe {
        while i + 16 <= k {
            let mut wv = [_mm512_setzero_ps(); F];
            for (f, wv) in wv.iter_mut().enumerate() {
                *wv = _mm512_loadu_ps(w.add(f * ldw + i));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_ps(x[r].add(i));
                for (a, wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
            i += 16;
        }
        if i < k {
            let m = k - i;
            let mut wv = [_mm512_setzero_ps(); F];
            for (f, wv) in wv.iter_mut().enumerate() {
                *wv = load_partial(w.add(f * ldw + i), m);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = load_partial(x[r].add(i), m);
                for (a, wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
        }
        if R == 4 && F == 4 {
            // A full block: its 16 horizontal sums at once (about a third of the shuffles and
            // adds of 16 separate ones; with 64-value heads, attention's key scores spent as
            // long in them as in their FMAs).
            let s = sum16(std::array::from_fn(|j| acc[j % 4][j / 4]));
            _mm_storeu_ps(out, _mm512_extractf32x4_ps::<0>(s));
            _mm_storeu_ps(out.add(ldo), _mm512_extractf32x4_ps::<1>(s));
            _mm_storeu_ps(out.add(2 * ldo), _mm512_extractf32x4_ps::<2>(s));
            _mm_storeu_ps(out.add(3 * ldo), _mm512_extractf32x4_ps::<3>(s));
            return;
        }
        for (r, acc) in acc.iter().enumerate() {
            for (f, a) in acc.iter().enumerate() {
                *out.add(r * ldo + f) = _mm512_reduce_add_ps(*a);
            }
        }
    }
}

/// The horizontal sums of 16 vectors: lane `4k + m` of the result is the sum of `a[4m + k]`'s
/// lanes, added in [`_mm512_reduce_add_ps`]'s order (halves, then quarters, then lanes
/// `i + 2` and `i + 1`), so it equals 16 of those bit for bit.
#[target_feature(enable = "avx512f")]
#[inline]
fn sum16(a: [__m512; 16]) -> __m512 {
    // Halves: lanes i and i + 8 of a[2i] in 128-bit lanes 0-1, of a[2i + 1] in 2-3.
    let b: [__m512; 8] = std::array::from_fn(|i| {
        let (x, y) = (a[2 * i], a[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(x, y),
            _mm512_shuffle_f32x4::<0xEE>(x, y),
        )
    });
    // Quarters: 128-bit lane k of c[i] holds a[4i + k]'s four partial sums.
    let c: [__m512; 4] = std::array::from_fn(|i| {
        let (x, y) = (b[2 * i], b[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xDD>(x, y),
        )
    });
    // Within each 128-bit lane: (p0 + p2, p1 + p3) of two vectors, then their sum.
    let d0 = _mm512_add_ps(
        _mm512_unpacklo_ps(c[0], c[1]),
        _mm512_unpackhi_ps(c[0], c[1]),
    );
    let d1 = _mm512_add_ps(
        _mm512_unpacklo_ps(c[2], c[3]),
        _mm512_unpackhi_ps(c[2], c[3]),
    );
    let (d0, d1) = (_mm512_castps_pd(d0), _mm512_castps_pd(d1));
    _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(d0, d1)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(d0, d1)),
    )
}

/// For each token `t < at.len() - 1`: `y[t * ldy + i] += sum coef * block[row * 64 + i]` for
/// `i < n <= 64` over its rows `rows[at[t]..at[t + 1]]` = `(coef, row)`: one 64-column block
/// of B^T (f32) for every token of a step, each token's columns held in registers while its
/// rows are added.
///
/// # Safety
/// AVX-512F; `block` holds 64 readable values from every `row * 64`; `at` is non-decreasing
/// within `rows`; `y` holds `n` values at every `t * ldy`.
#[target_feature(enable = "avx512f,fma")]
pub unsafe fn add_block_tokens(
    y: *mut f32,
    ldy: usize,
    n: usize,
    block: *const f32,
    rows: &[(f32, usize)],
    at: &[usize],
) {
    // SAFETY: as the caller vouched; every load of a row stays in its 64 values.
    unsafe { add_block(y, ldy, n, rows, at, |i| _mm512_loadu_ps(block.add(i))) }
}

/// [`add_block_tokens`] with the block in f16 (bit patterns).
///
/// # Safety
/// As [`add_block_tokens`], with F16C.
#[target_feature(enable = "avx512f,fma,f16c")]
pub unsafe fn add_block_tokens_f16(
    y: *mut f32,
    ldy: usize,
    n: usize,
    block: *const u16,
    rows: &[(f32, usize)],
    at: &[usize],
) {
    // SAFETY: as the caller vouched; every load of a row stays in its 64 values.
    unsafe {
        add_block(y, ldy, n, rows, at, |i| {
            _mm512_cvtph_ps(_mm256_loadu_si256(block.add(i) as *const __m256i))
        })
    }
}

/// The body of the block kernels: `load(i)` reads 16 values of the block from element `i`.
#[target_feature(enable = "avx512f,fma")]
#[inline]
unsafe fn add_block(
    y: *mut f32,
    ldy: usize,
    n: usize,
    rows: &[(f32, usize)],
    at: &[usize],
    load: impl Fn(usize) -> __m512,
) {
    let mask: [__mmask16; 4] = std::array::from_fn(|q| {
        let m = n.min(64).saturating_sub(16 * q).min(16);
        ((1u32 << m) - 1) as __mmask16
    });
    for (t, w) in at.windows(2).enumerate() {
        let py = y.wrapping_add(t * ldy);
        // SAFETY: `y` is read and written only in its first `n` lanes (masks); the block
        // loads are the caller's.
        unsafe {
            // Two sets of accumulators, rows alternating between them: one set alone is a
            // chain of dependent FMAs (4 cycles each) per row.
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut odd = [_mm512_setzero_ps(); 4];
            for (q, a) in acc.iter_mut().enumerate() {
                *a = _mm512_maskz_loadu_ps(mask[q], py.add(16 * q));
            }
            let mut pairs = rows[w[0]..w[1]].chunks_exact(2);
            for pair in &mut pairs {
                let (c0, c1) = (_mm512_set1_ps(pair[0].0), _mm512_set1_ps(pair[1].0));
                for q in 0..4 {
                    acc[q] = _mm512_fmadd_ps(c0, load(pair[0].1 * 64 + 16 * q), acc[q]);
                    odd[q] = _mm512_fmadd_ps(c1, load(pair[1].1 * 64 + 16 * q), odd[q]);
                }
            }
            if let [(coef, row)] = *pairs.remainder() {
                let c = _mm512_set1_ps(coef);
                for (q, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(c, load(row * 64 + 16 * q), *a);
                }
            }
            for (q, (a, o)) in acc.iter().zip(&odd).enumerate() {
                _mm512_mask_storeu_ps(py.add(16 * q), mask[q], _mm512_add_ps(*a, *o));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// One dot as [`block`] computes it: lane `l` accumulates `x[i] * w[i]` for `i = l mod 16`
    /// by fused multiply-adds in order along `k`, then the lanes are added in
    /// `_mm512_reduce_add_ps`'s order.
    fn dot_as_block(x: &[f32], w: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        for (i, (x, w)) in x.iter().zip(w).enumerate() {
            lanes[i % 16] = x.mul_add(*w, lanes[i % 16]);
        }
        let s8: [f32; 8] = std::array::from_fn(|i| lanes[i] + lanes[i + 8]);
        let s4: [f32; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
        (s4[0] + s4[2]) + (s4[1] + s4[3])
    }

    /// [`rows_by_features`] bit for bit against that order, on full 4 x 4 blocks (the 16-sum
    /// tree) and on edge blocks (one horizontal sum each), with `k` a multiple of 16 and not.
    #[test]
    fn rows_by_features_adds_in_one_order() {
        if !super::super::avx512::available() {
            return dlp_skip::skip(
                dlp_skip::kind::AVX512,
                "this CPU has no AVX-512 (rows_by_features is not used here)",
                None,
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for (rows, features, k) in [
            (4, 4, 64),
            (12, 8, 64),
            (7, 10, 128),
            (5, 3, 40),
            (4, 4, 16),
        ] {
            let mut rand =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect() };
            let (x, w) = (rand(rows * k), rand(features * k));
            let mut out = vec![f32::NAN; rows * features];
            // SAFETY: AVX-512F checked; `x`, `w` and `out` hold the rows, features and outputs
            // named.
            unsafe {
                rows_by_features(
                    x.as_ptr(),
                    k,
                    rows,
                    w.as_ptr(),
                    k,
                    features,
                    k,
                    out.as_mut_ptr(),
                    features,
                )
            };
            for r in 0..rows {
                for f in 0..features {
                    let want = dot_as_block(&x[r * k..][..k], &w[f * k..][..k]);
                    assert_eq!(
                        out[r * features + f].to_bits(),
                        want.to_bits(),
                        "rows {rows}, features {features}, k {k}: ({r}, {f})"
                    );
                }
            }
        }
    }
}
