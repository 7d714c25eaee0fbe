//! The attention kernel for AVX-512 CPUs: see [`attend_avx512`].

use std::arch::x86_64::*;

use super::{attend, key_scores, softmax_spans, Heads};

/// Most query rows [`attend_avx512`] takes (its per-row normalisations live on the stack).
const MAX_ROWS: usize = 64;

/// [`attend`] for AVX-512: scores by the register-blocked kernel, a vectorised softmax (exp by
/// [`crate::cpu::avx512::exp16`]), and value sums kept in registers, up to six rows x 64 dims
/// at a time (the portable loop would load and store the outputs once per position). Head dims that
/// are not a multiple of 16, or more than 64 rows, take the portable loop compiled for AVX-512.
///
/// # Safety
/// AVX-512F and FMA.
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn attend_avx512(
    h: &Heads<'_>,
    scores: &mut Vec<f32>,
    o: &mut [f32],
    lse: &mut [f32],
) {
    let (hd, n) = h.dims(o);
    if !hd.is_multiple_of(16) || h.rows() > MAX_ROWS {
        return attend(h, scores, o, lse);
    }
    // This head's keys and values are `hd`-value runs `stride` apart (the other heads' lie
    // between), a pattern the hardware prefetchers follow poorly: ask for them up front,
    // keys into L1, values into L2 for the value sums after the softmax.
    for p in 0..n {
        let at = h.first + p * h.stride;
        for i in (0..hd).step_by(16) {
            // SAFETY: prefetches of addresses inside the caches (`Heads::dims` asserted); they
            // read nothing architecturally.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(h.k_cache.as_ptr().add(at + i) as *const i8);
                _mm_prefetch::<_MM_HINT_T1>(h.v_cache.as_ptr().add(at + i) as *const i8);
            }
        }
    }
    key_scores(h, hd, scores);
    let mut inv = [0f32; MAX_ROWS];
    softmax_spans(h, scores, lse, |r, row, lse, scale| {
        // SAFETY: AVX-512F and FMA (this function's features).
        let (max, sum) = unsafe { softmax_row(row, scale) };
        inv[r] = 1.0 / sum;
        *lse = max + sum.ln();
    });
    // Rows in register blocks of up to six rows x 64 dims (24 of the 32 vector registers), so
    // that each value loaded serves six rows of a prefill block.
    for g0 in (0..h.rows()).step_by(6) {
        let g = (h.rows() - g0).min(6);
        let (p0, p1) = h.positions_of(g0..g0 + g);
        for c0 in (0..hd).step_by(64) {
            let c = ((hd - c0) / 16).min(4);
            let at = Block {
                g0,
                c0,
                n,
                hd,
                positions: p0..p1,
                inv: &inv,
            };
            // SAFETY: AVX-512F and FMA; the values at `first + p * stride + c0 ..` for
            // `p < n` lie in the cache (`Heads::dims` asserted), `scores` holds `rows * n`
            // weights, `o` holds `rows * hd` outputs, `p1 <= n`, and `g0 + G <= rows`,
            // `c0 + 16 * C <= hd`.
            unsafe {
                match g {
                    1 => value_sums_g::<1>(c, h, scores, &at, o),
                    2 => value_sums_g::<2>(c, h, scores, &at, o),
                    3 => value_sums_g::<3>(c, h, scores, &at, o),
                    4 => value_sums_g::<4>(c, h, scores, &at, o),
                    5 => value_sums_g::<5>(c, h, scores, &at, o),
                    _ => value_sums_g::<6>(c, h, scores, &at, o),
                }
            }
        }
    }
}

/// [`value_sums`] for `G` rows and `c` (1 to 4) vectors of dims.
///
/// # Safety
/// As [`value_sums`].
#[target_feature(enable = "avx512f,fma")]
unsafe fn value_sums_g<const G: usize>(
    c: usize,
    h: &Heads<'_>,
    scores: &[f32],
    b: &Block<'_>,
    o: &mut [f32],
) {
    // SAFETY: as the caller vouched.
    unsafe {
        match c {
            1 => value_sums::<G, 1>(h, scores, b, o),
            2 => value_sums::<G, 2>(h, scores, b, o),
            3 => value_sums::<G, 3>(h, scores, b, o),
            _ => value_sums::<G, 4>(h, scores, b, o),
        }
    }
}

/// Where one call of [`value_sums`] works: rows `g0..`, dims `c0..`, over `positions` of the
/// `n` scored ones.
struct Block<'a> {
    g0: usize,
    c0: usize,
    n: usize,
    hd: usize,
    positions: std::ops::Range<usize>,
    /// `1 / sum` of each row's exponentials (the softmax's normalisation, applied once).
    inv: &'a [f32; MAX_ROWS],
}

/// `o[g][c0 .. c0 + 16 C] = inv[g] * sum_p w[g][p] * v_p[c0 ..]` for rows `g0 .. g0 + G` over
/// `b.positions` (each row's weights are 0 outside its span), the `G x C` accumulators in
/// registers across the positions.
///
/// # Safety
/// AVX-512F and FMA; as [`attend_avx512`] states at its call.
#[target_feature(enable = "avx512f,fma")]
unsafe fn value_sums<const G: usize, const C: usize>(
    h: &Heads<'_>,
    scores: &[f32],
    b: &Block<'_>,
    o: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); C]; G];
    // SAFETY: as the caller vouched.
    unsafe {
        let base = h.v_cache.as_ptr().add(h.first + b.c0);
        for p in b.positions.clone() {
            let v = base.add(p * h.stride);
            let mut vv = [_mm512_setzero_ps(); C];
            for (j, vv) in vv.iter_mut().enumerate() {
                *vv = _mm512_loadu_ps(v.add(16 * j));
            }
            for (g, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*scores.get_unchecked((b.g0 + g) * b.n + p));
                for (a, vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(w, *vv, *a);
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            let inv = _mm512_set1_ps(b.inv[b.g0 + g]);
            let dst = o.as_mut_ptr().add((b.g0 + g) * b.hd + b.c0);
            for (j, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(16 * j), _mm512_mul_ps(*a, inv));
            }
        }
    }
}

/// `row[p] = exp(row[p] * scale - max)` with `max` the row's largest scaled score (the
/// portable loop's values up to [`crate::cpu::avx512::exp16`]'s rounding); returns `max` and
/// their sum.
///
/// # Safety
/// AVX-512F and FMA.
#[target_feature(enable = "avx512f,fma")]
unsafe fn softmax_row(row: &mut [f32], scale: f32) -> (f32, f32) {
    let n = row.len();
    let ptr = row.as_mut_ptr();
    let mask = |i: usize| -> u16 { ((1u32 << (n - i).min(16)) - 1) as u16 };
    let scale = _mm512_set1_ps(scale);
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    // SAFETY: every masked load and store stays inside `row`.
    unsafe {
        for i in (0..n).step_by(16) {
            let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(i), ptr.add(i)), scale);
            max = _mm512_mask_max_ps(max, mask(i), max, x);
        }
        let m = _mm512_reduce_max_ps(max);
        let max = _mm512_set1_ps(m);
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(i), ptr.add(i)), scale);
            let e = crate::cpu::avx512::exp16(_mm512_sub_ps(x, max));
            _mm512_mask_storeu_ps(ptr.add(i), mask(i), e);
            sum = _mm512_mask_add_ps(sum, mask(i), sum, e);
        }
        (m, _mm512_reduce_add_ps(sum))
    }
}
