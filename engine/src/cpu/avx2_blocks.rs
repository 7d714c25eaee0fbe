//! The LoRA kernels of [`super::avx512_blocks`] for CPUs with AVX2 + FMA + F16C and no
//! AVX-512 (most laptops): the expand's column-block kernels (f32 and the f16 of
//! `--lora-f16`) and the f16 dot of the shrink. Without them those loops ran as the portable
//! code, which the compiler builds for the x86-64 baseline (SSE2, and `half`'s software f16
//! conversion). Same sums as the AVX-512 kernels: rows alternate between two accumulator
//! sets, added to `y` at the end.

use std::arch::x86_64::*;

/// `dot(a, x)` with `a` in f16 (bit patterns) over `min(a.len(), x.len())` values.
///
/// # Safety
/// AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(a: &[u16], x: &[f32]) -> f32 {
    let n = a.len().min(x.len());
    let (pa, px) = (a.as_ptr(), x.as_ptr());
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // SAFETY: every load below reads values below `n`.
    unsafe {
        while i + 16 <= n {
            let a0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
            let a1 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i + 8) as *const __m128i));
            s0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(px.add(i)), s0);
            s1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(px.add(i + 8)), s1);
            i += 16;
        }
        let mut rest = hsum(_mm256_add_ps(s0, s1));
        while i < n {
            rest += half::f16::from_bits(*pa.add(i)).to_f32() * *px.add(i);
            i += 1;
        }
        rest
    }
}

/// The sum of the 8 lanes of `v` (the AVX2 kernels' horizontal reduction, here and in
/// `packed_dot` and `int8`).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// The f16 (little-endian bits) at `p` as f32, through F16C: a GGUF block's scale.
///
/// # Safety
/// Two readable bytes at `p`.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { std::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// For each token `t < at.len() - 1`: `y[t * ldy + i] += sum coef * block[row * 64 + i]` for
/// `i < n <= 64` over its rows `rows[at[t]..at[t + 1]]` = `(coef, row)` (f32 block of B^T).
///
/// # Safety
/// AVX2 and FMA; `block` holds 64 readable values from every `row * 64`; `at` is
/// non-decreasing within `rows`; `y` holds `n` values at every `t * ldy`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_block_tokens(
    y: *mut f32,
    ldy: usize,
    n: usize,
    block: *const f32,
    rows: &[(f32, usize)],
    at: &[usize],
) {
    // SAFETY: as the caller vouched; every load of a row stays in its 64 values.
    unsafe { add_block(y, ldy, n, rows, at, |i| _mm256_loadu_ps(block.add(i))) }
}

/// [`add_block_tokens`] with the block in f16 (bit patterns).
///
/// # Safety
/// As [`add_block_tokens`], with F16C.
#[target_feature(enable = "avx2,fma,f16c")]
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
            _mm256_cvtph_ps(_mm_loadu_si128(block.add(i) as *const __m128i))
        })
    }
}

/// The body of the block kernels, 32 columns at a time (4 + 4 accumulators and two
/// coefficients fit the 16 registers): `load(i)` reads 8 values of the block from element `i`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn add_block(
    y: *mut f32,
    ldy: usize,
    n: usize,
    rows: &[(f32, usize)],
    at: &[usize],
    load: impl Fn(usize) -> __m256,
) {
    let n = n.min(64);
    for (t, w) in at.windows(2).enumerate() {
        let py = y.wrapping_add(t * ldy);
        let rows = &rows[w[0]..w[1]];
        for half in (0..n).step_by(32) {
            let m = (n - half).min(32);
            // SAFETY: `y` is read and written only in its first `n` values (whole vectors
            // below `n`, the tail through a buffer); the block loads are the caller's.
            unsafe {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut odd = [_mm256_setzero_ps(); 4];
                let mut pairs = rows.chunks_exact(2);
                for pair in &mut pairs {
                    let (c0, c1) = (_mm256_set1_ps(pair[0].0), _mm256_set1_ps(pair[1].0));
                    for q in 0..4 {
                        let i = half + 8 * q;
                        acc[q] = _mm256_fmadd_ps(c0, load(pair[0].1 * 64 + i), acc[q]);
                        odd[q] = _mm256_fmadd_ps(c1, load(pair[1].1 * 64 + i), odd[q]);
                    }
                }
                if let [(coef, row)] = *pairs.remainder() {
                    let c = _mm256_set1_ps(coef);
                    for (q, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(c, load(row * 64 + half + 8 * q), *a);
                    }
                }
                if m == 32 {
                    for q in 0..4 {
                        let p = py.add(half + 8 * q);
                        let s = _mm256_add_ps(acc[q], odd[q]);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), s));
                    }
                } else {
                    let mut sum = [0f32; 32];
                    for q in 0..4 {
                        let s = _mm256_add_ps(acc[q], odd[q]);
                        _mm256_storeu_ps(sum.as_mut_ptr().add(8 * q), s);
                    }
                    for (i, s) in sum.iter().take(m).enumerate() {
                        *py.add(half + i) += s;
                    }
                }
            }
        }
    }
}
