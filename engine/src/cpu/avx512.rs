//! AVX-512 kernels, picked at run time on CPUs that have AVX-512F and BW (Skylake-SP and
//! later, Zen 4): the decode dot products of [`super::packed_dot`] sixteen lanes wide, a
//! tile dequantiser for batches and prefill (whose matmul kernel is in
//! [`super::avx512_rows`]), a vector `exp`; the register-blocked small products (attention
//! scores, LoRA shrink and expand) are in [`super::avx512_blocks`].
//!
//! Activations stay f32 and every product is accumulated in f32, as in the AVX2 and generic
//! kernels; only the summation order differs. `DLP_CPU_NO_AVX512=1` turns these kernels off
//! (for comparisons; the AVX2 ones run instead).

use std::arch::x86_64::*;
use std::sync::OnceLock;

pub use super::avx512_blocks::{
    add_block_tokens, add_block_tokens_f16, picked_rows_by_features, rows_by_features,
};
use super::packed_dot::QK;

/// Whether the AVX-512 kernels run here (checked once).
pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && super::packed_dot::has_avx2()
            && !super::turned_off("DLP_CPU_NO_AVX512")
    })
}

/// Loads `n < 16` floats at `p` (the rest of the lanes zero).
#[inline(always)]
pub(super) unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
    // SAFETY: the mask limits the load to the `n` readable values.
    unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
}

/// `dot(a, b)` over `min(len)` values.
///
/// # Safety
/// The CPU must have AVX-512F ([`available`]).
#[target_feature(enable = "avx512f,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY: every load below reads values below `n`.
    unsafe {
        while i + 32 <= n {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
            s1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                s1,
            );
            i += 32;
        }
        while i < n {
            let m = (n - i).min(16);
            s0 = _mm512_fmadd_ps(load_partial(pa.add(i), m), load_partial(pb.add(i), m), s0);
            i += m;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
}

/// Blocks per chunk: the scales of sixteen blocks are gathered and converted at once.
const CHUNK: usize = 16;

/// The f16 pairs at the start of up to sixteen blocks `bsize` bytes apart (`n` of them) as
/// two f32 vectors: the low halves (`d`) and the high halves (Q4_1's `m`).
#[inline(always)]
unsafe fn gather_scales(first: *const u8, bsize: usize, n: usize) -> (__m512, __m512) {
    let idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(bsize as i32),
    );
    let mask = ((1u32 << n) - 1) as u16;
    // SAFETY: the first four bytes of each of the `n` blocks are readable (blocks are at least
    // 18 bytes); the mask leaves the other lanes unread.
    let raw = unsafe {
        _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, idx, first as *const i32)
    };
    let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
    let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16)));
    (d, m)
}

/// Q4_1 (`MIN`: `q * d + m`) or Q4_0 (`(q - 8) * d`) row of `nb` blocks dotted with `x`;
/// `xs` holds the per-block sums of `x` (the offset terms multiply them).
///
/// Per chunk of sixteen blocks the scales are gathered and converted in one go, and the
/// offset terms (`m * sum(x)`, or `-8 d * sum(x)`) are one vector FMA; the per-block loop is
/// then only widening, conversion and FMAs.
///
/// # Safety
/// AVX-512F/BW, FMA and F16C; `nb` blocks at `row`, `nb * 32` values at `x`, `nb` at `xs`.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
pub unsafe fn dot_q4<const MIN: bool>(
    x: *const f32,
    xs: *const f32,
    row: *const u8,
    nb: usize,
) -> f32 {
    // SAFETY: as the caller vouched.
    unsafe { dot_q4_rows::<MIN, 1>(&[x], &[xs], row, nb)[0] }
}

/// [`dot_q4`] of one weight row against `R` input rows (a small batch): each block's codes
/// are widened and converted once for all of them.
///
/// # Safety
/// As [`dot_q4`], for every `x[r]` and `xs[r]`.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
pub unsafe fn dot_q4_rows<const MIN: bool, const R: usize>(
    x: &[*const f32; R],
    xs: &[*const f32; R],
    row: *const u8,
    nb: usize,
) -> [f32; R] {
    let bsize = if MIN { 20 } else { 18 };
    let low = _mm512_set1_epi32(0x0f);
    let mut dbuf = [0f32; CHUNK];
    let (mut acc, mut offs) = ([[_mm512_setzero_ps(); 2]; R], [_mm512_setzero_ps(); R]);
    let mut c = 0;
    while c < nb {
        let n = (nb - c).min(CHUNK);
        // SAFETY: blocks `c..c + n` and their inputs are in bounds (the caller's contract).
        unsafe {
            let (d, m) = gather_scales(row.add(c * bsize), bsize, n);
            for (o, xs) in offs.iter_mut().zip(xs) {
                let sums = load_partial_or_full(xs.add(c), n);
                *o = if MIN {
                    _mm512_fmadd_ps(m, sums, *o)
                } else {
                    _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(-8.0)), sums, *o)
                };
            }
            _mm512_storeu_ps(dbuf.as_mut_ptr(), d);
            let codes = |j: usize| {
                let b = row.add((c + j) * bsize + bsize - 16);
                let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b as *const __m128i));
                let lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low));
                let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
                (_mm512_set1_ps(dbuf[j]), lo, hi)
            };
            fma_blocks(n, codes, |r, j| x[r].add((c + j) * QK), &mut acc);
        }
        c += n;
    }
    std::array::from_fn(|r| {
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), offs[r]))
    })
}

/// Loads `n <= 16` floats at `p` (the rest of the lanes zero).
#[inline(always)]
unsafe fn load_partial_or_full(p: *const f32, n: usize) -> __m512 {
    // SAFETY: the caller guarantees `n` readable values.
    unsafe {
        if n == 16 {
            _mm512_loadu_ps(p)
        } else {
            load_partial(p, n)
        }
    }
}

/// Q8_0 row of `nb` blocks dotted with `x` (scales gathered sixteen blocks at a time, as in
/// [`dot_q4`]).
///
/// # Safety
/// AVX-512F/BW, FMA and F16C; `nb` blocks at `row`, `nb * 32` values at `x`.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
pub unsafe fn dot_q8(x: *const f32, row: *const u8, nb: usize) -> f32 {
    // SAFETY: as the caller vouched.
    unsafe { dot_q8_rows::<1>(&[x], row, nb)[0] }
}

/// [`dot_q8`] of one weight row against `R` input rows, as [`dot_q4_rows`].
///
/// # Safety
/// As [`dot_q8`], for every `x[r]`.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
pub unsafe fn dot_q8_rows<const R: usize>(
    x: &[*const f32; R],
    row: *const u8,
    nb: usize,
) -> [f32; R] {
    let mut dbuf = [0f32; CHUNK];
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut c = 0;
    while c < nb {
        let n = (nb - c).min(CHUNK);
        // SAFETY: blocks `c..c + n` and their inputs are in bounds (the caller's contract).
        unsafe {
            let (d, _) = gather_scales(row.add(c * 34), 34, n);
            _mm512_storeu_ps(dbuf.as_mut_ptr(), d);
            let codes = |j: usize| {
                let q = row.add((c + j) * 34 + 2);
                let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q as *const _)));
                let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                    q.add(16) as *const _
                )));
                (_mm512_set1_ps(dbuf[j]), lo, hi)
            };
            fma_blocks(n, codes, |r, j| x[r].add((c + j) * QK), &mut acc);
        }
        c += n;
    }
    std::array::from_fn(|r| _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])))
}

/// `lo * x[0..16] + hi * x[16..32]` lane by lane: one block's 32 codes against its inputs.
#[inline(always)]
unsafe fn dot32(lo: __m512, hi: __m512, xp: *const f32) -> __m512 {
    // SAFETY: the caller guarantees 32 readable values at `xp` and AVX-512F.
    unsafe {
        _mm512_fmadd_ps(
            hi,
            _mm512_loadu_ps(xp.add(16)),
            _mm512_mul_ps(lo, _mm512_loadu_ps(xp)),
        )
    }
}

/// Adds `d_j * (lo_j * x_r[j][..16] + hi_j * x_r[j][16..])` for the blocks `j < n` of a chunk
/// (`codes(j) = (d_j, lo_j, hi_j)`, block `j` of row `r`'s inputs at `at(r, j)`) into each
/// row's two accumulators, even and odd blocks apart so that consecutive blocks do not wait
/// on each other.
#[target_feature(enable = "avx512f,fma")]
#[inline]
fn fma_blocks<const R: usize>(
    n: usize,
    codes: impl Fn(usize) -> (__m512, __m512, __m512),
    at: impl Fn(usize, usize) -> *const f32,
    acc: &mut [[__m512; 2]; R],
) {
    // SAFETY (dot32): the caller's `at` gives 32 readable inputs per block.
    // Fixed indices: a computed one (`j & 1`) sends the accumulators through the stack.
    let mut j = 0;
    while j + 2 <= n {
        let (d, lo, hi) = codes(j);
        for (r, a) in acc.iter_mut().enumerate() {
            a[0] = _mm512_fmadd_ps(d, unsafe { dot32(lo, hi, at(r, j)) }, a[0]);
        }
        let (d, lo, hi) = codes(j + 1);
        for (r, a) in acc.iter_mut().enumerate() {
            a[1] = _mm512_fmadd_ps(d, unsafe { dot32(lo, hi, at(r, j + 1)) }, a[1]);
        }
        j += 2;
    }
    if j < n {
        let (d, lo, hi) = codes(j);
        for (r, a) in acc.iter_mut().enumerate() {
            a[0] = _mm512_fmadd_ps(d, unsafe { dot32(lo, hi, at(r, j)) }, a[0]);
        }
    }
}

/// `dot(a, x)` with `a` in f16 (bit patterns), over `min(len)` values.
///
/// # Safety
/// The CPU must have AVX-512F and F16C ([`available`]).
#[target_feature(enable = "avx512f,fma,f16c")]
pub unsafe fn dot_f16(a: &[u16], x: &[f32]) -> f32 {
    let n = a.len().min(x.len());
    let (pa, px) = (a.as_ptr(), x.as_ptr());
    let mut s = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: every load below reads values below `n`.
    unsafe {
        while i + 16 <= n {
            let av = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i) as *const __m256i));
            s = _mm512_fmadd_ps(av, _mm512_loadu_ps(px.add(i)), s);
            i += 16;
        }
        let mut rest = 0f32;
        while i < n {
            rest += half::f16::from_bits(*pa.add(i)).to_f32() * *px.add(i);
            i += 1;
        }
        _mm512_reduce_add_ps(s) + rest
    }
}

/// Dequantises whole Q4_0 / Q4_1 / Q8_0 blocks (`bsize` 18 / 20 / 34 bytes) into `out`
/// (`32 * blocks` values), with the same arithmetic as the portable code (`q * d + m` unfused,
/// `(q - 8) * d`, `q * d`), so the values are identical. Batches and prefill dequantise a tile
/// of weights per step with it.
///
/// # Safety
/// AVX-512F/BW, FMA and F16C; `bytes` holds exactly `out.len() / 32` blocks of `bsize`.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
pub unsafe fn dequantize_blocks(bsize: usize, bytes: &[u8], out: &mut [f32]) {
    let nb = out.len() / QK;
    assert!(bytes.len() >= nb * bsize, "dequantize_blocks: short input");
    let (row, po) = (bytes.as_ptr(), out.as_mut_ptr());
    let (mut dbuf, mut mbuf) = ([0f32; CHUNK], [0f32; CHUNK]);
    let mut c = 0;
    while c < nb {
        let n = (nb - c).min(CHUNK);
        // SAFETY: blocks `c..c + n` lie in `bytes` and their 32 values each in `out`.
        unsafe {
            let (d, m) = gather_scales(row.add(c * bsize), bsize, n);
            _mm512_storeu_ps(dbuf.as_mut_ptr(), d);
            _mm512_storeu_ps(mbuf.as_mut_ptr(), m);
            for j in 0..n {
                let b = row.add((c + j) * bsize);
                let o = po.add((c + j) * QK);
                let (vlo, vhi) =
                    block_values(b, bsize, _mm512_set1_ps(dbuf[j]), _mm512_set1_ps(mbuf[j]));
                _mm512_storeu_ps(o, vlo);
                _mm512_storeu_ps(o.add(16), vhi);
            }
        }
        c += n;
    }
}

/// The 32 values of one Q4_0 / Q4_1 / Q8_0 block (`bsize` 18 / 20 / 34 bytes at `b`) as two
/// vectors, with the arithmetic of [`dequantize_blocks`] (so the same values).
///
/// # Safety
/// AVX-512F/BW, FMA and F16C; `b` holds one whole block.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
#[inline]
pub unsafe fn block_f32(b: *const u8, bsize: usize) -> (__m512, __m512) {
    // SAFETY: the scales are the block's first two or four bytes.
    let scale = |at: usize| unsafe { half::f16::from_le_bytes([*b.add(at), *b.add(at + 1)]) };
    let d = _mm512_set1_ps(scale(0).to_f32());
    let m = if bsize == 20 {
        _mm512_set1_ps(scale(2).to_f32())
    } else {
        _mm512_setzero_ps()
    };
    // SAFETY: as the caller vouched.
    unsafe { block_values(b, bsize, d, m) }
}

/// One block's 32 values from its quants and scale `d` (and `m` for Q4_1, `bsize` 20):
/// `q * d + m` unfused, `(q - 8) * d`, `q * d`, as the portable code.
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
#[inline]
unsafe fn block_values(b: *const u8, bsize: usize, d: __m512, m: __m512) -> (__m512, __m512) {
    let low = _mm512_set1_epi32(0x0f);
    let eight = _mm512_set1_epi32(8);
    // SAFETY: the quants are the block's last 32 (Q8_0) or 16 (Q4) bytes.
    let (lo, hi) = unsafe {
        match bsize {
            34 => (
                _mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(2) as *const __m128i)),
                _mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(18) as *const __m128i)),
            ),
            _ => {
                let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.add(bsize - 16) as *const _));
                let (lo, hi) = (_mm512_and_si512(q, low), _mm512_srli_epi32(q, 4));
                if bsize == 18 {
                    (_mm512_sub_epi32(lo, eight), _mm512_sub_epi32(hi, eight))
                } else {
                    (lo, hi)
                }
            }
        }
    };
    let (mut vlo, mut vhi) = (
        _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d),
        _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d),
    );
    if bsize == 20 {
        vlo = _mm512_add_ps(vlo, m);
        vhi = _mm512_add_ps(vhi, m);
    }
    (vlo, vhi)
}

/// `exp(x)` of 16 lanes within about 2 ulp: `x = n ln2 + r` (ln2 split in two, as Cephes), a
/// degree-7 Taylor polynomial on `|r| <= ln2 / 2`, then `vscalefps` by `2^n` (which
/// underflows to 0 as `exp` does). Inputs clamp to [-104, 88.73]; NaN stays NaN.
///
/// # Safety
/// AVX-512F and FMA.
#[target_feature(enable = "avx512f,fma")]
pub unsafe fn exp16(x: __m512) -> __m512 {
    // `max`/`min` return their second operand when either is NaN: NaN passes through.
    let x = _mm512_min_ps(
        _mm512_set1_ps(88.73),
        _mm512_max_ps(_mm512_set1_ps(-104.0), x),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    use super::exp_poly::{LN2_HI, LN2_LO, TAYLOR};
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(TAYLOR[0]);
    for &c in &TAYLOR[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`exp16`] against float64 `exp` on a dense grid over its whole range (relative error
    /// within 3 ulp of f32), with NaN passing through.
    #[test]
    fn exp16_matches_f64() {
        if !available() {
            return dlp_skip::skip(
                dlp_skip::kind::AVX512,
                "this CPU has no AVX-512 (exp16 is not used here)",
                None,
            );
        }
        let worst = super::super::exp_poly::worst_on_grid("exp16", 16, |x, y| {
            // SAFETY: AVX-512F and FMA checked above; both slices hold 16 values.
            unsafe { _mm512_storeu_ps(y.as_mut_ptr(), exp16(_mm512_loadu_ps(x.as_ptr()))) };
        });
        let mut y = [0f32; 16];
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(y.as_mut_ptr(), exp16(_mm512_set1_ps(f32::NAN))) };
        assert!(y.iter().all(|y| y.is_nan()), "exp16(NaN) = {y:?}");
        println!("exp16: worst relative error {worst:.2e}");
    }
}
