//! Packing for the AMX kernels ([`super::amx`]): rows of inputs into the tile unit's pair
//! layout (the B operand), weights into bf16 rows (the A operand), from f32 or straight from
//! Q4_0 / Q4_1 / Q8_0 blocks, rounded to nearest even in registers.

use super::amx::{padded_k, FEATURE_BLOCK, K_STEP, ROW_BLOCK};

/// `x` (`rows` rows of `k`) as bf16 in the tile unit's pair layout, the B operand: per group
/// of 16 rows, `padded_k(k) / 2` pair rows of 16 rows x 2 consecutive `k` values; rows rounded
/// up to 32, zero-padded. Packed once per matmul, so the weights (the A operand) need no
/// transpose. Rounding to nearest even, as `half::bf16::from_f32` does for finite values.
pub fn pack_rows(x: &[f32], rows: usize, k: usize, out: &mut Vec<u16>) {
    assert!(x.len() >= rows * k);
    // SAFETY: AMX CPUs have AVX-512F/BW (the caller checked `available` with AVX-512).
    unsafe { pack_rows_avx512(x, rows, k, out) }
}

/// [`pack_rows`] (its closure compiled with the features, so the loads inline).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_rows_avx512(x: &[f32], rows: usize, k: usize, out: &mut Vec<u16>) {
    let (p, load) = (x.as_ptr(), f32_loader(k));
    // SAFETY: the masked loads read `x[r * k + i]` only for `r < rows`, `i < k` (asserted by
    // the caller).
    unsafe { pack_pairs(rows, k, out, |r, kk| load(p.add(r * k), kk)) }
}

/// Loads of 32 values at `kk..kk + 32` of an f32 row of `k`, zero past `k`.
#[target_feature(enable = "avx512f")]
fn f32_loader(
    k: usize,
) -> impl Fn(*const f32, usize) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let mask = move |from: usize| -> u16 {
        let m = k.saturating_sub(from).min(16);
        ((1u32 << m) - 1) as u16
    };
    // SAFETY: (for the closure's caller) `row` holds `k` values; lanes past `k` are masked.
    move |row: *const f32, kk: usize| unsafe {
        (
            _mm512_maskz_loadu_ps(mask(kk), row.add(kk)),
            _mm512_maskz_loadu_ps(mask(kk + 16), row.add(kk + 16)),
        )
    }
}

/// Weights as the AMX packers read them: `n` rows of `k` values.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// f32 values, row-major.
    F32(&'a [f32]),
    /// Q4_0 / Q4_1 / Q8_0 blocks (`bsize` 18 / 20 / 34 bytes), `k / 32` per row.
    Blocks {
        /// Bytes per block.
        bsize: usize,
        /// The rows' blocks.
        bytes: &'a [u8],
    },
}

impl Weights<'_> {
    /// Panics unless these weights hold `n` rows of `k`.
    pub(super) fn check(&self, n: usize, k: usize) {
        match *self {
            Weights::F32(w) => assert!(w.len() >= n * k, "amx: short f32 weights"),
            Weights::Blocks { bsize, bytes } => assert!(
                k.is_multiple_of(32) && bytes.len() >= n * (k / 32 * bsize),
                "amx: short weight blocks"
            ),
        }
    }

    /// Runs `body` with the row loader of these weights (`row(f, kk)`: feature `f`'s 32 bf16
    /// values at `kk..kk + 32`, zero past `k`), monomorphised per storage so the loads
    /// inline; block weights are prefetched first.
    ///
    /// # Safety
    /// AVX-512F/BW/BF16, FMA and F16C; [`Weights::check`] passed for `n` and `k`; `body`
    /// calls `row` only for `f < n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma,f16c")]
    pub(super) unsafe fn with_rows<B: RowBody>(self, n: usize, k: usize, body: B) -> B::Out {
        match self {
            Weights::F32(w) => {
                let (p, load) = (w.as_ptr(), f32_loader(k));
                // SAFETY: the masked loads read `w[f * k + i]` only for `f < n`, `i < k`.
                body.run(|f, kk| unsafe {
                    let (lo, hi) = load(p.add(f * k), kk);
                    to_bf16(lo, hi)
                })
            }
            Weights::Blocks { bsize, bytes } => {
                prefetch(&bytes[..n * (k / 32 * bsize)]);
                body.run(block_rows(bytes.as_ptr(), k, bsize))
            }
        }
    }
}

/// What [`Weights::with_rows`] runs: a body generic over the row loader.
pub(super) trait RowBody {
    /// The body's result.
    type Out;
    /// Runs with `row(f, kk)`.
    fn run(self, row: impl Fn(usize, usize) -> std::arch::x86_64::__m512i) -> Self::Out;
}

/// `w` (`n` rows of `k`) as bf16 rows, the A operand: `[n rounded up to 32][padded_k(k)]`,
/// zero-padded (a tile row is 32 consecutive `k` values of one feature, as stored); blocks
/// dequantised in registers (the values of [`super::avx512::dequantize_blocks`]).
pub fn pack_weights(w: Weights<'_>, n: usize, k: usize, out: &mut Vec<u16>) {
    w.check(n, k);
    struct Pack<'o>(usize, usize, &'o mut Vec<u16>);
    impl RowBody for Pack<'_> {
        type Out = ();
        fn run(self, row: impl Fn(usize, usize) -> std::arch::x86_64::__m512i) {
            // SAFETY: AVX-512F/BW (the loader exists only under `with_rows`' features).
            unsafe { pack_plain(self.0, self.1, self.2, row) }
        }
    }
    // SAFETY: AMX CPUs have AVX-512F/BW/BF16, FMA and F16C (the caller checked `available`);
    // `pack_plain` loads rows `f < n` only.
    unsafe { w.with_rows(n, k, Pack(n, k, out)) }
}

/// Asks for `bytes` in cache, in order: a weight tile is a short run (at most 32 rows of
/// 1536 values: 30 KiB of Q4_1) that the hardware prefetchers barely ramp up on.
#[target_feature(enable = "sse")]
fn prefetch(bytes: &[u8]) {
    use std::arch::x86_64::*;
    for at in (0..bytes.len()).step_by(64) {
        // SAFETY: a prefetch of an address inside `bytes`; it reads nothing architecturally.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(at) as *const i8) };
    }
}

/// The bf16 tile row of feature `f` at `kk` (a multiple of 32) from rows of Q4_0 / Q4_1 /
/// Q8_0 blocks at `p` (`k / 32` blocks of `bsize` bytes each). Calls are safe only for rows
/// and blocks inside the caller's bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma,f16c")]
fn block_rows(
    p: *const u8,
    k: usize,
    bsize: usize,
) -> impl Fn(usize, usize) -> std::arch::x86_64::__m512i {
    let row_bytes = k / 32 * bsize;
    // SAFETY: (for the closure's caller) block `kk / 32` of row `f` lies in the bytes.
    move |f, kk| unsafe {
        let b = p.add(f * row_bytes + kk / 32 * bsize);
        if bsize == 34 {
            let (lo, hi) = super::avx512::block_f32(b, bsize);
            to_bf16(lo, hi)
        } else {
            q4_row(b, bsize)
        }
    }
}

/// 32 f32 values (two vectors) as 32 bf16 in order, rounded to nearest even (`vcvtne2ps2bf16`,
/// as `half::bf16::from_f32` for finite values of bf16's range).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn to_bf16(
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: 32 bf16 are 64 bytes, as __m512i.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) }
}

/// One Q4_0 / Q4_1 block (`bsize` 18 / 20) as its 32 bf16 values in order: the 16 values a
/// nibble can take (`(q - 8) * d`, `q * d + m` unfused, as the portable code) rounded once,
/// then the nibbles looked up in them (`vpermw`): no per-value arithmetic.
///
/// # Safety
/// AVX-512F/BW/BF16 and F16C; `b` holds one whole block.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,f16c")]
unsafe fn q4_row(b: *const u8, bsize: usize) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // d, and m for Q4_1 (Q4_0's first quant byte comes along and is ignored).
    // SAFETY: every block has at least 4 bytes.
    let s = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe {
        (b as *const i32).read_unaligned()
    }));
    let d = _mm512_broadcastss_ps(s);
    let q = _mm512_setr_ps(
        0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.,
    );
    let values = if bsize == 20 {
        let m = _mm512_broadcastss_ps(_mm_movehdup_ps(s));
        _mm512_add_ps(_mm512_mul_ps(q, d), m)
    } else {
        _mm512_mul_ps(_mm512_sub_ps(q, _mm512_set1_ps(8.)), d)
    };
    // SAFETY: 16 bf16 are 32 bytes, as __m256i.
    let table = unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(values)) };
    // SAFETY: the quants are the block's last 16 bytes.
    let quants = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(b.add(bsize - 16) as *const _) });
    let (lo, hi) = (
        _mm256_and_si256(quants, _mm256_set1_epi16(0x0f)),
        _mm256_srli_epi16::<4>(quants),
    );
    let index = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    _mm512_permutexvar_epi16(index, _mm512_castsi256_si512(table))
}

/// The row packer over `load(feature, kk)`, which gives the feature's 32 bf16 values at `k`
/// positions `kk..kk + 32` (zero past `k`): one 64-byte tile row per call.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_plain(
    n: usize,
    k: usize,
    out: &mut Vec<u16>,
    load: impl Fn(usize, usize) -> std::arch::x86_64::__m512i,
) {
    use std::arch::x86_64::*;
    let kp = padded_k(k);
    let fp = n.div_ceil(FEATURE_BLOCK) * FEATURE_BLOCK;
    // Every value is written below (padding included), so a buffer of the right size is
    // reused as it is.
    out.resize(fp * kp, 0);
    let dst = out.as_mut_ptr();
    for f in 0..fp {
        for kk in (0..kp).step_by(K_STEP) {
            let v = if f < n {
                load(f, kk)
            } else {
                _mm512_setzero_si512()
            };
            // SAFETY: `f * kp + kk + 32 <= fp * kp`, the length of `out`.
            unsafe { _mm512_storeu_si512(dst.add(f * kp + kk) as *mut __m512i, v) };
        }
    }
}

/// The pair-layout packer over `load(row, kk)` (as [`pack_plain`]'s): 16 rows x 32 values per
/// step, rounded to bf16, then the 16x16 dword block transposed into 16 pair rows.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_pairs(
    n: usize,
    k: usize,
    out: &mut Vec<u16>,
    load: impl Fn(usize, usize) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512),
) {
    use std::arch::x86_64::*;
    let kp = padded_k(k);
    let groups = n.div_ceil(ROW_BLOCK) * 2;
    // Every value is written below (padding included).
    out.resize(groups * kp * 16, 0);
    for g in 0..groups {
        for kk in (0..kp).step_by(K_STEP) {
            let mut r = [_mm512_setzero_si512(); 16];
            for (f, r) in r.iter_mut().enumerate().take(n.saturating_sub(g * 16)) {
                let (lo, hi) = load(g * 16 + f, kk);
                *r = to_bf16(lo, hi);
            }
            let rows = transpose16(r);
            // SAFETY: pair rows `kk / 2 .. kk / 2 + 16` of group `g` lie inside `out`.
            unsafe {
                let dst = out.as_mut_ptr().add(g * kp * 16 + (kk / 2) * 32);
                for (p, v) in rows.iter().enumerate() {
                    _mm512_storeu_si512(dst.add(p * 32) as *mut __m512i, *v);
                }
            }
        }
    }
}

/// Transposes a 16x16 block of dwords (row `i` of the result = dword `i` of every input).
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: [std::arch::x86_64::__m512i; 16]) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        let b = 4 * i;
        u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
        u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
        u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    // u[4i + j] holds dword j of rows 4i..4i+4 in each 128-bit lane (lane = column quarter).
    for h in 0..2 {
        for j in 0..4 {
            let (a, b) = (u[8 * h + j], u[8 * h + 4 + j]);
            t[8 * h + j] = _mm512_shuffle_i32x4::<0x88>(a, b);
            t[8 * h + 4 + j] = _mm512_shuffle_i32x4::<0xdd>(a, b);
        }
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..8 {
        out[j] = _mm512_shuffle_i32x4::<0x88>(t[j], t[8 + j]);
        out[8 + j] = _mm512_shuffle_i32x4::<0xdd>(t[j], t[8 + j]);
    }
    out
}
