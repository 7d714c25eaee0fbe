//! The attention kernel for AVX2 and FMA CPUs (no AVX-512): see [`attend_avx2`].

use std::arch::x86_64::*;

use super::{attend, dot, softmax_spans, Heads};

/// [`attend`] for AVX2 and FMA: scores eight keys at a time ([`key_scores_avx2`]), the
/// softmax with a vector `exp` ([`crate::cpu::avx2::exp8`]), then value sums kept in registers,
/// up to six rows at a time, across the rows' positions (the portable loop loads and
/// stores its outputs once per position, which bounds it at long context). Head dims that are
/// not a multiple of 8 take the portable loop compiled for AVX2.
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attend_avx2(
    h: &Heads<'_>,
    scores: &mut Vec<f32>,
    o: &mut [f32],
    lse: &mut [f32],
) {
    let (hd, n) = h.dims(o);
    if !hd.is_multiple_of(8) {
        return attend(h, scores, o, lse);
    }
    key_scores_avx2(h, hd, scores);
    softmax_spans(h, scores, lse, |_, row, lse, scale| {
        // SAFETY: AVX2 and FMA (this function's features).
        unsafe { crate::cpu::avx2::softmax_rows(row, row.len(), scale, std::slice::from_mut(lse)) }
    });
    // Rows in register blocks of G x 8C accumulators: two rows x 32 dims, or, where three or
    // more rows remain (a prefill block, a group of 3+ heads), up to six rows x 16 dims, so that
    // each value loaded serves more rows (12 or 15 of the 16 vector registers).
    let mut g0 = 0;
    while g0 < h.rows() {
        let g = match h.rows() - g0 {
            r @ 1..=2 => r,
            r => r.min(6),
        };
        let (p0, p1) = h.positions_of(g0..g0 + g);
        let c_max = if g <= 2 { 4 } else { 2 };
        let mut c0 = 0;
        while c0 < hd {
            let c = ((hd - c0) / 8).min(c_max);
            let at = (g0, c0, n, hd, p0..p1);
            // SAFETY: AVX2 and FMA; the values at `first + p * stride + c0 ..` for `p < n`
            // lie in the cache (`Heads::dims` asserted), `scores` holds `rows * n` weights,
            // `o` holds `rows * hd` outputs, `p1 <= n`, and `g0 + G <= rows`,
            // `c0 + 8 * C <= hd`.
            unsafe {
                match g {
                    1 => value_sums_g::<1>(c, h, scores, at, o),
                    2 => value_sums_g::<2>(c, h, scores, at, o),
                    3 => value_sums_g::<3>(c, h, scores, at, o),
                    4 => value_sums_g::<4>(c, h, scores, at, o),
                    5 => value_sums_g::<5>(c, h, scores, at, o),
                    _ => value_sums_g::<6>(c, h, scores, at, o),
                }
            }
            c0 += 8 * c;
        }
        g0 += g;
    }
}

/// [`value_sums_avx2`] for `G` rows and `c` (1 to 4) vectors of dims.
///
/// # Safety
/// As [`value_sums_avx2`].
#[target_feature(enable = "avx2,fma")]
unsafe fn value_sums_g<const G: usize>(
    c: usize,
    h: &Heads<'_>,
    scores: &[f32],
    at: (usize, usize, usize, usize, std::ops::Range<usize>),
    o: &mut [f32],
) {
    // SAFETY: as the caller vouched.
    unsafe {
        match c {
            1 => value_sums_avx2::<G, 1>(h, scores, at, o),
            2 => value_sums_avx2::<G, 2>(h, scores, at, o),
            3 => value_sums_avx2::<G, 3>(h, scores, at, o),
            _ => value_sums_avx2::<G, 4>(h, scores, at, o),
        }
    }
}

/// [`super::key_scores`] for AVX2 and FMA: two query rows at a time against four keys, or the
/// last row against eight, each (row, key) pair in its own accumulator (one dot's FMAs form a
/// chain of dependent adds; eight chains side by side keep the FMA units busy, and a key loaded
/// once serves both rows), reduced into one vector of eight scores; the last keys one dot at a
/// time. `hd` is a multiple of 8; the caller checked the ranges ([`Heads::dims`]).
#[target_feature(enable = "avx2,fma")]
unsafe fn key_scores_avx2(h: &Heads<'_>, hd: usize, scores: &mut Vec<f32>) {
    scores.clear();
    scores.resize(h.rows() * h.len, 0.0);
    let mut g0 = 0;
    while g0 < h.rows() {
        // SAFETY: AVX2 and FMA; `g0 + G <= rows`, and the ranges were checked by the caller.
        unsafe {
            if h.rows() - g0 >= 2 {
                key_scores_block_avx2::<2, 4>(h, hd, g0, scores);
                g0 += 2;
            } else {
                key_scores_block_avx2::<1, 8>(h, hd, g0, scores);
                g0 += 1;
            }
        }
    }
}

/// The scores of rows `g0 .. g0 + G` against every key, `K = 8 / G` keys at a time:
/// accumulator `g * K + i` holds row `g0 + g` against key `p + i`.
///
/// # Safety
/// AVX2 and FMA; `g0 + G <= rows`, `scores` holds `rows * len` values, and every key lies in
/// the cache ([`Heads::dims`]).
#[target_feature(enable = "avx2,fma")]
unsafe fn key_scores_block_avx2<const G: usize, const K: usize>(
    h: &Heads<'_>,
    hd: usize,
    g0: usize,
    scores: &mut [f32],
) {
    const { assert!(G * K == 8) };
    let (n, keys) = (h.len, unsafe { h.k_cache.as_ptr().add(h.first) });
    let q = &h.q[g0 * hd..(g0 + G) * hd];
    let rows = &mut scores[g0 * n..(g0 + G) * n];
    let mut p = 0;
    // SAFETY: every key read lies in the cache (the caller's contract); `q` holds `G` rows.
    unsafe {
        while p + K <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in (0..hd).step_by(8) {
                let mut qj = [_mm256_setzero_ps(); G];
                for (g, qg) in qj.iter_mut().enumerate() {
                    *qg = _mm256_loadu_ps(q.as_ptr().add(g * hd + j));
                }
                for i in 0..K {
                    let k = _mm256_loadu_ps(keys.add((p + i) * h.stride + j));
                    for (g, qg) in qj.iter().enumerate() {
                        acc[g * K + i] = _mm256_fmadd_ps(*qg, k, acc[g * K + i]);
                    }
                }
            }
            // Lane l of the result is the sum of acc[l]'s eight lanes.
            let t0 = _mm256_hadd_ps(acc[0], acc[1]);
            let t1 = _mm256_hadd_ps(acc[2], acc[3]);
            let t2 = _mm256_hadd_ps(acc[4], acc[5]);
            let t3 = _mm256_hadd_ps(acc[6], acc[7]);
            let (u0, u1) = (_mm256_hadd_ps(t0, t1), _mm256_hadd_ps(t2, t3));
            let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
            let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(lo, hi));
            for (g, l) in lanes.chunks_exact(K).enumerate() {
                rows[g * n + p..g * n + p + K].copy_from_slice(l);
            }
            p += K;
        }
    }
    for (row, qg) in rows.chunks_mut(n).zip(q.chunks_exact(hd)) {
        for (p, s) in row.iter_mut().enumerate().skip(p) {
            let at = h.first + p * h.stride;
            *s = dot(qg, &h.k_cache[at..at + hd]);
        }
    }
}

/// `o[g][c0 .. c0 + 8 C] = sum_p w[g][p] * v_p[c0 ..]` over `p` in `p0 .. p1` for rows
/// `g0 .. g0 + G` (`at` is `(g0, c0, n, hd, p0..p1)`; each row's weights are 0 outside its
/// span), the `G x C` accumulators in registers across the positions.
///
/// # Safety
/// AVX2 and FMA; as [`attend_avx2`] states at its call.
#[target_feature(enable = "avx2,fma")]
unsafe fn value_sums_avx2<const G: usize, const C: usize>(
    h: &Heads<'_>,
    scores: &[f32],
    (g0, c0, n, hd, ps): (usize, usize, usize, usize, std::ops::Range<usize>),
    o: &mut [f32],
) {
    let mut acc = [[_mm256_setzero_ps(); C]; G];
    // SAFETY: as the caller vouched.
    unsafe {
        let base = h.v_cache.as_ptr().add(h.first + c0);
        for p in ps {
            let v = base.add(p * h.stride);
            let mut vv = [_mm256_setzero_ps(); C];
            for (j, vv) in vv.iter_mut().enumerate() {
                *vv = _mm256_loadu_ps(v.add(8 * j));
            }
            for (g, acc) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_ps(*scores.get_unchecked((g0 + g) * n + p));
                for (a, vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm256_fmadd_ps(w, *vv, *a);
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            let dst = o.as_mut_ptr().add((g0 + g) * hd + c0);
            for (j, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(dst.add(8 * j), *a);
            }
        }
    }
}
