//! The 8-bit activation path of the CPU backend ([`super::CpuOptions::int8`]): each row of
//! activations is quantised per block of 32 values to `i8` codes with one f32 scale (ggml's
//! Q8_1 layout, as llama.cpp's CPU backend does before its integer dot products), and every
//! block of a Q4_0 / Q4_1 / Q8_0 weight row meets it in an integer dot product; block results
//! are scaled and accumulated in f32.
//!
//! Per block `b` of 32 with weight scale `wd` (and Q4_1 minimum `wm`), activation scale `xd`,
//! codes `w_j`, `x_j` and `xs = xd * Σ x_j` (ggml `ggml_vec_dot_q4_1_q8_1` and relatives):
//! - Q8_0: `wd * xd * Σ w_j x_j`
//! - Q4_0: `wd * xd * Σ w_j x_j - 8 * wd * xs` (nibbles `w_j` in 0..16, stored offset by 8)
//! - Q4_1: `wd * xd * Σ w_j x_j + wm * xs`
//!
//! The integer sums are exact, so the kernels (AVX-512 VNNI, AVX-VNNI, AVX2 `maddubs`,
//! portable) differ only in the order of the f32 block sums. Quantising the activations moves
//! each value by at most half a step (`amax / 254` of its block); that, not the arithmetic, is
//! this path's error against the f32 one.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use super::matmul::{prefetch, SendPtr, GEMV_CHUNK, PREFETCH_ROWS};
use super::packed_dot::{half_at, QK};
use super::CpuWeight;
use crate::tensor::{Packed, PackedKind};

/// Whether a weight of `kind` with rows of `k` values runs on this path.
pub fn supports(kind: PackedKind, k: usize) -> bool {
    matches!(kind, PackedKind::Q4_0 | PackedKind::Q4_1 | PackedKind::Q8_0) && k.is_multiple_of(QK)
}

/// Rows of activations quantised per block of 32: `qs` holds `rows * k` codes in -127..=127,
/// `d` and `s` one scale and one scaled code sum (`d * Σ codes`) per block.
#[derive(Debug, Default)]
pub struct Q8Rows {
    k: usize,
    rows: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// One row of [`Q8Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Q8Row<'a> {
    /// `k` codes.
    pub qs: &'a [i8],
    /// `k / 32` scales.
    pub d: &'a [f32],
    /// `k / 32` scaled code sums.
    pub s: &'a [f32],
}

impl Q8Rows {
    /// Quantises `rows` rows of `k` values from `x` (`k` a multiple of 32, `x` at least
    /// `rows * k` values), reusing this buffer's memory. Per block: `d = amax / 127`,
    /// codes `round_ties_even(x / d)` (ggml `quantize_row_q8_1`; an all-zero block has
    /// `d = 0` and zero codes).
    pub fn quantize(&mut self, x: &[f32], rows: usize, k: usize) {
        assert!(
            k.is_multiple_of(QK) && x.len() >= rows * k,
            "Q8Rows::quantize: {} values for {rows} rows of {k} (k must be whole blocks of 32)",
            x.len()
        );
        let nb = rows * k / QK;
        self.k = k;
        self.rows = rows;
        self.qs.resize(rows * k, 0);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0.0);
        let x = &x[..rows * k];
        #[cfg(target_arch = "x86_64")]
        if super::packed_dot::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { quantize_avx2(x, &mut self.qs, &mut self.d, &mut self.s) };
        }
        quantize_blocks(x, &mut self.qs, &mut self.d, &mut self.s);
    }

    /// Row `r` (below the quantised row count).
    pub fn row(&self, r: usize) -> Q8Row<'_> {
        assert!(r < self.rows, "Q8Rows::row: row {r} of {}", self.rows);
        let (k, nb) = (self.k, self.k / QK);
        Q8Row {
            qs: &self.qs[r * k..(r + 1) * k],
            d: &self.d[r * nb..(r + 1) * nb],
            s: &self.s[r * nb..(r + 1) * nb],
        }
    }
}

/// The AVX2 build of [`quantize_blocks`] (LLVM vectorises the block loops).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_blocks(x, qs, d, s)
}

#[inline(always)]
fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xb, qb), (d, s)) in blocks.zip(d.iter_mut().zip(s.iter_mut())) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        // Below 1e-30 `127 / amax` could overflow to infinity (amax under 3.7e-37): such a
        // block is zero codes, its values too small to matter beside any other block's.
        let inv = if amax > 1e-30 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in qb.iter_mut().zip(xb) {
            // |v * inv| <= 127 up to rounding (|v| <= amax); the clamp keeps a rounding past
            // it in range of the i8 code.
            let c = ((v * inv).round_ties_even() as i32).clamp(-127, 127);
            *q = c as i8;
            sum += c;
        }
        *d = amax / 127.0;
        *s = *d * sum as f32;
    }
}

/// The integer-dot kernel set this CPU runs (best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// AVX-512 VNNI `vpdpbusd` on 256-bit vectors (off under `DLP_CPU_NO_AVX512`).
    Avx512Vnni,
    /// AVX-VNNI (the VEX form of `vpdpbusd`: Alder Lake, Zen 5).
    AvxVnni,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// Portable Rust.
    Portable,
}

impl Kernels {
    /// The set picked for this CPU (checked once).
    pub fn detect() -> Kernels {
        use std::sync::OnceLock;
        static PICK: OnceLock<Kernels> = OnceLock::new();
        *PICK.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if !super::packed_dot::has_avx2() {
                    return Kernels::Portable;
                }
                if super::avx512::available()
                    && is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512vl")
                {
                    return Kernels::Avx512Vnni;
                }
                if is_x86_feature_detected!("avxvnni") {
                    return Kernels::AvxVnni;
                }
                Kernels::Avx2
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Portable
        })
    }

    /// The name printed by `bench`.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Avx512Vnni => "AVX-512 VNNI",
            Kernels::AvxVnni => "AVX-VNNI",
            Kernels::Avx2 => "AVX2 maddubs",
            Kernels::Portable => "portable",
        }
    }
}

/// `dot(dequantise(row), x)` for a weight row of `kind` (`row` holds exactly `x`'s length in
/// values; `kind` one that [`supports`] takes): the tests' one-row reference.
#[cfg(test)]
pub fn dot_row(kind: PackedKind, x: Q8Row<'_>, row: &[u8]) -> f32 {
    dot_rows::<1>(Kernels::detect(), kind, &[x], row)[0]
}

/// `R` activation rows against one weight row, each weight block unpacked once.
#[inline]
fn dot_rows<const R: usize>(
    kernels: Kernels,
    kind: PackedKind,
    x: &[Q8Row<'_>; R],
    row: &[u8],
) -> [f32; R] {
    let bsize = kind.block().1;
    let nb = row.len() / bsize;
    assert!(
        supports(kind, QK) && row.len() == nb * bsize,
        "int8 dot: {kind:?} row of {} bytes",
        row.len()
    );
    assert!(
        x.iter()
            .all(|x| x.qs.len() >= nb * QK && x.d.len() >= nb && x.s.len() >= nb),
        "int8 dot: activation rows shorter than the weight row"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let xp: [Ptrs; R] = std::array::from_fn(|r| Ptrs {
            qs: x[r].qs.as_ptr(),
            d: x[r].d.as_ptr(),
            s: x[r].s.as_ptr(),
        });
        let r = row.as_ptr();
        // SAFETY: `kernels` came from `detect`, so the CPU has its features; `nb` whole
        // blocks lie in `row` and every activation row holds `nb` blocks (asserted above).
        unsafe {
            match kernels {
                Kernels::Avx512Vnni => return vnni512::dot_rows(kind, &xp, r, nb),
                Kernels::AvxVnni => return avxvnni::dot_rows(kind, &xp, r, nb),
                Kernels::Avx2 => return avx2::dot_rows(kind, &xp, r, nb),
                Kernels::Portable => {}
            }
        }
    }
    let _ = kernels;
    std::array::from_fn(|r| dot_portable(kind, x[r], row, nb))
}

/// The portable kernel (the others' definition).
fn dot_portable(kind: PackedKind, x: Q8Row<'_>, row: &[u8], nb: usize) -> f32 {
    let bsize = kind.block().1;
    let mut acc = 0f32;
    for (i, b) in row.chunks_exact(bsize).take(nb).enumerate() {
        let xq = &x.qs[i * QK..(i + 1) * QK];
        let wd = half_at(b, 0);
        let scaled = |isum: i32| wd * x.d[i] * isum as f32;
        acc += match kind {
            PackedKind::Q8_0 => scaled(
                b[2..34]
                    .iter()
                    .zip(xq)
                    .map(|(&w, &x)| w as i8 as i32 * x as i32)
                    .sum(),
            ),
            _ => {
                let q = &b[bsize - 16..];
                let isum: i32 = (0..16)
                    .map(|j| {
                        (q[j] & 15) as i32 * xq[j] as i32 + (q[j] >> 4) as i32 * xq[j + 16] as i32
                    })
                    .sum();
                let wm = if kind == PackedKind::Q4_1 {
                    half_at(b, 2)
                } else {
                    -8.0 * wd
                };
                scaled(isum) + wm * x.s[i]
            }
        };
    }
    acc
}

/// Raw pointers of one activation row (the x86 kernels walk them).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Ptrs {
    qs: *const i8,
    d: *const f32,
    s: *const f32,
}

/// One kernel module per integer-dot instruction: `$dot4(w, x)` takes 32 unsigned bytes `w`
/// and 32 signed bytes `x` and returns eight i32 lanes, each the sum of four adjacent
/// products (exact here: a Q4 code times an activation code fits `maddubs`' i16 pairs, and
/// Q8_0 goes through `|w|` and `sign(x, w)`, at most 2 * 128 * 127).
#[cfg(target_arch = "x86_64")]
macro_rules! int8_kernels {
    ($name:ident, $features:literal, $quads:literal, |$w:ident, $x:ident| $dot4:expr) => {
        mod $name {
            use std::arch::x86_64::*;

            use super::{Ptrs, QK};
            use crate::cpu::avx2_blocks::{f16_at, hsum};
            use crate::tensor::PackedKind;

            #[target_feature(enable = $features)]
            #[inline]
            fn dot4($w: __m256i, $x: __m256i) -> __m256i {
                $dot4
            }

            /// `R` rows against one weight row of `nb` blocks.
            ///
            /// # Safety
            /// The CPU has this module's features; `row` holds `nb` blocks of `kind` (Q4_0,
            /// Q4_1 or Q8_0) and every row of `x` `nb` blocks.
            #[target_feature(enable = $features)]
            pub unsafe fn dot_rows<const R: usize>(
                kind: PackedKind,
                x: &[Ptrs; R],
                row: *const u8,
                nb: usize,
            ) -> [f32; R] {
                // SAFETY: as this function's contract.
                unsafe {
                    match kind {
                        PackedKind::Q4_1 => rows_q4::<true, R>(x, row, nb),
                        PackedKind::Q4_0 => rows_q4::<false, R>(x, row, nb),
                        _ => rows_q8::<R>(x, row, nb),
                    }
                }
            }

            /// `Σ a[i] * b[i]` over `n` values (the Q4 minimums against the activation rows'
            /// scaled sums, eight blocks per instruction).
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot_f32(a: *const f32, b: *const f32, n: usize) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut i = 0;
                // SAFETY: `n` values at `a` and `b` (the caller's contract).
                unsafe {
                    while i + 8 <= n {
                        acc = _mm256_fmadd_ps(
                            _mm256_loadu_ps(a.add(i)),
                            _mm256_loadu_ps(b.add(i)),
                            acc,
                        );
                        i += 8;
                    }
                    let mut t = hsum(acc);
                    while i < n {
                        t += *a.add(i) * *b.add(i);
                        i += 1;
                    }
                    t
                }
            }

            /// Per block: the weight block unpacked once, then for each activation row one
            /// integer dot, one conversion and `acc += (wd * xd) * p` on vectors (the scales
            /// broadcast from memory). The Q4 minimum terms `wm * xs` wait in `mins` and
            /// are summed per [`super::MIN_RUN`] blocks as an f32 dot with the rows' sums.
            #[target_feature(enable = $features)]
            unsafe fn rows_q4<const MIN: bool, const R: usize>(
                x: &[Ptrs; R],
                row: *const u8,
                nb: usize,
            ) -> [f32; R] {
                let bsize = if MIN { 20 } else { 18 };
                let mask = _mm256_set1_epi8(0x0f);
                let mut acc = [_mm256_setzero_ps(); R];
                let mut tail = [0f32; R];
                let mut mins = [0f32; super::MIN_RUN];
                let mut i0 = 0;
                while i0 < nb {
                    let i1 = (i0 + super::MIN_RUN).min(nb);
                    let mut i = i0;
                    // Four blocks at a time where i16 sums are cheaper than one conversion
                    // per block (`$quads`).
                    while $quads && i + 4 <= i1 {
                        // SAFETY: blocks `i..i + 4` of the weight row and of every
                        // activation row are in bounds (the caller's contract).
                        unsafe {
                            let b: [*const u8; 4] =
                                std::array::from_fn(|j| row.add((i + j) * bsize));
                            let bits: [u16; 4] = std::array::from_fn(|j| {
                                std::ptr::read_unaligned(b[j] as *const u16)
                            });
                            let wd = _mm_cvtph_ps(_mm_loadl_epi64(bits.as_ptr() as *const __m128i));
                            if MIN {
                                for j in 0..4 {
                                    mins[i + j - i0] = f16_at(b[j].add(2));
                                }
                            } else {
                                _mm_storeu_ps(
                                    mins.as_mut_ptr().add(i - i0),
                                    _mm_mul_ps(wd, _mm_set1_ps(-8.0)),
                                );
                            }
                            let wd = _mm256_set_m128(wd, wd);
                            let w: [__m256i; 4] = std::array::from_fn(|j| {
                                let q = _mm_loadu_si128(b[j].add(bsize - 16) as *const __m128i);
                                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), mask)
                            });
                            let ones = _mm256_set1_epi16(1);
                            for r in 0..R {
                                let xq = x[r].qs.add(i * QK) as *const __m256i;
                                let m: [__m256i; 4] = std::array::from_fn(|j| {
                                    _mm256_maddubs_epi16(w[j], _mm256_loadu_si256(xq.add(j)))
                                });
                                // Lanes per 128-bit half: block j's share in i32 lane j (at
                                // most 4 * 2 * 15 * 127 in i16 before the widening).
                                let h = _mm256_hadd_epi16(
                                    _mm256_hadd_epi16(m[0], m[1]),
                                    _mm256_hadd_epi16(m[2], m[3]),
                                );
                                let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(h, ones));
                                let xd = _mm_loadu_ps(x[r].d.add(i));
                                let xd = _mm256_set_m128(xd, xd);
                                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd), p, acc[r]);
                            }
                        }
                        i += 4;
                    }
                    for i in i..i1 {
                        // SAFETY: block `i` of the weight row and of every activation row is
                        // in bounds (the caller's contract).
                        unsafe {
                            let b = row.add(i * bsize);
                            let wd = f16_at(b);
                            mins[i - i0] = if MIN { f16_at(b.add(2)) } else { -8.0 * wd };
                            let wd = _mm256_set1_ps(wd);
                            let q = _mm_loadu_si128(b.add(bsize - 16) as *const __m128i);
                            // Low nibbles are values 0..16 of the block, high nibbles 16..32.
                            let w =
                                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), mask);
                            for r in 0..R {
                                let xq = _mm256_loadu_si256(x[r].qs.add(i * QK) as *const __m256i);
                                let p = _mm256_cvtepi32_ps(dot4(w, xq));
                                let xd = _mm256_broadcast_ss(&*x[r].d.add(i));
                                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd), p, acc[r]);
                            }
                        }
                    }
                    for r in 0..R {
                        // SAFETY: blocks `i0..i1` of every row's sums are in bounds.
                        tail[r] += unsafe { dot_f32(mins.as_ptr(), x[r].s.add(i0), i1 - i0) };
                    }
                    i0 = i1;
                }
                std::array::from_fn(|r| hsum(acc[r]) + tail[r])
            }

            #[target_feature(enable = $features)]
            unsafe fn rows_q8<const R: usize>(
                x: &[Ptrs; R],
                row: *const u8,
                nb: usize,
            ) -> [f32; R] {
                let mut acc = [_mm256_setzero_ps(); R];
                for i in 0..nb {
                    // SAFETY: as in `rows_q4`.
                    unsafe {
                        let b = row.add(i * 34);
                        let wd = _mm256_set1_ps(f16_at(b));
                        let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
                        let aw = _mm256_sign_epi8(w, w);
                        for r in 0..R {
                            let xq = _mm256_loadu_si256(x[r].qs.add(i * QK) as *const __m256i);
                            let p = _mm256_cvtepi32_ps(dot4(aw, _mm256_sign_epi8(xq, w)));
                            let xd = _mm256_broadcast_ss(&*x[r].d.add(i));
                            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(wd, xd), p, acc[r]);
                        }
                    }
                }
                std::array::from_fn(|r| hsum(acc[r]))
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
int8_kernels!(avx2, "avx2,fma,f16c", true, |w, x| _mm256_madd_epi16(
    _mm256_maddubs_epi16(w, x),
    _mm256_set1_epi16(1)
));
#[cfg(target_arch = "x86_64")]
int8_kernels!(
    vnni512,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    false,
    |w, x| _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)
);
#[cfg(target_arch = "x86_64")]
int8_kernels!(avxvnni, "avx2,fma,f16c,avxvnni", false, |w, x| {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, x)
});

/// `out[j] = dot(row r0 + j of p, x)`: one block of a decode gemv (rows of `k` values).
pub(super) fn gemv_rows(x: Q8Row<'_>, p: &Packed, k: usize, r0: usize, out: &mut [f32]) {
    let (kernels, rb) = (Kernels::detect(), p.kind.row_bytes(k));
    for (j, o) in out.iter_mut().enumerate() {
        let row = (r0 + j) * rb;
        prefetch(&p.bytes, row + PREFETCH_ROWS * rb, rb);
        *o = dot_rows::<1>(kernels, p.kind, &[x], &p.bytes[row..row + rb])[0];
    }
}

thread_local! {
    /// The calling thread's quantised input rows, reused so that decode allocates nothing.
    pub(super) static Q8_BUF: RefCell<Q8Rows> = RefCell::new(Q8Rows::default());
}

/// Rows of an activation block one pass over a weight row serves (the 16 AVX2 registers hold
/// eight accumulators besides the unpacked block, constants and temporaries).
const GROUP: usize = 8;

/// Blocks whose Q4 minimums a kernel collects before summing them against the activations.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels only
const MIN_RUN: usize = 64;

/// `out[rows, n] = x[rows, k] @ dequantise(p)^T` with 8-bit activations; `p` a kind that
/// [`supports`] takes. Output features split over threads in chunks; within a chunk the input
/// rows go [`GROUP`] at a time (their codes stay in L1) over every weight row of the chunk.
pub(super) fn matmul(x: &[f32], w: &CpuWeight, p: &Packed, rows: usize, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let rb = p.kind.row_bytes(k);
    assert!(
        supports(p.kind, k)
            && x.len() >= rows * k
            && out.len() >= rows * n
            && p.bytes.len() >= n * rb,
        "int8 matmul: short buffers"
    );
    // Taken out of the cell, not borrowed: the chunks fork, and a waiting worker may run
    // another step's matmul meanwhile.
    let mut q = Q8_BUF.take();
    q.quantize(x, rows, k);
    let (q_ro, kernels, kind) = (&q, Kernels::detect(), p.kind);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(GEMV_CHUNK)).into_par_iter().for_each(|c| {
        let (j0, j1) = (c * GEMV_CHUNK, ((c + 1) * GEMV_CHUNK).min(n));
        for r0 in (0..rows).step_by(GROUP) {
            let xr: [Q8Row<'_>; GROUP] = std::array::from_fn(|i| q_ro.row((r0 + i).min(rows - 1)));
            for j in j0..j1 {
                prefetch(&p.bytes, (j + PREFETCH_ROWS) * rb, rb);
                let wr = &p.bytes[j * rb..(j + 1) * rb];
                let v = match rows - r0 {
                    1 => pad(dot_rows::<1>(kernels, kind, &[xr[0]], wr)),
                    2 => pad(dot_rows::<2>(kernels, kind, first(&xr), wr)),
                    3 => pad(dot_rows::<3>(kernels, kind, first(&xr), wr)),
                    4 => pad(dot_rows::<4>(kernels, kind, first(&xr), wr)),
                    5 => pad(dot_rows::<5>(kernels, kind, first(&xr), wr)),
                    6 => pad(dot_rows::<6>(kernels, kind, first(&xr), wr)),
                    7 => pad(dot_rows::<7>(kernels, kind, first(&xr), wr)),
                    _ => dot_rows::<GROUP>(kernels, kind, &xr, wr),
                };
                for (i, v) in v.iter().take(rows - r0).enumerate() {
                    // SAFETY: chunk `c` alone writes columns `j0..j1`; (r0 + i) * n + j is
                    // below rows * n (asserted above).
                    unsafe { *out_ptr.get().add((r0 + i) * n + j) = *v };
                }
            }
        }
    });
    Q8_BUF.set(q);
}

/// The first `R` rows of a group.
fn first<'a, 'b, const R: usize>(xr: &'b [Q8Row<'a>; GROUP]) -> &'b [Q8Row<'a>; R] {
    xr[..R].try_into().expect("R <= GROUP")
}

/// `v` in a [`GROUP`]-wide array (the unused lanes zero).
fn pad<const R: usize>(v: [f32; R]) -> [f32; GROUP] {
    std::array::from_fn(|i| if i < R { v[i] } else { 0.0 })
}

/// Quantises f32 rows (`[rows, cols]`, `cols` a multiple of 32) to ggml Q8_0 blocks, bit-exact
/// with ggml's `quantize_row_q8_0_ref`: `d = amax / 127` stored as f16, codes
/// `round(x * (1 / d))` rounding half away from zero.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    assert!(
        values.len().is_multiple_of(QK),
        "quantize_q8_0: {} values are not whole blocks of 32",
        values.len()
    );
    let mut out = Vec::with_capacity(values.len() / QK * 34);
    for b in values.chunks_exact(QK) {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

#[cfg(test)]
mod tests;
