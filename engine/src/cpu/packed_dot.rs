//! Dot products of an f32 vector with one row of packed weights (Q8_0, Q4_0, Q4_1, F16,
//! BF16, and the Q5, k-quant and IQ4 types), dequantising block by block in registers (the
//! kinds other than Q4_K, Q5_K and Q6_K among the newer ones a run of blocks at a time into an L1
//! buffer): decode reads 0.33–2 bytes per weight instead of 4, which is what bounds a
//! memory-bound gemv.
//!
//! Activations stay f32 (unlike llama.cpp, which quantises them to Q8 for integer dot
//! products), so results match the f32 path up to summation order. On x86-64 the AVX-512
//! kernels of [`super::avx512`] run where the CPU has AVX-512, else the AVX2+FMA ones here,
//! else the portable code (all picked at run time).

use half::{bf16, f16};

use crate::tensor::PackedKind;

/// Values per quantisation block.
pub const QK: usize = 32;

/// The f16 (little-endian) at byte `i` of `b` as f32.
pub(super) fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Values dequantised per run by the dot of the kinds without block kernels (4 KiB of f32).
const RUN: usize = 1024;

/// Per-block sums of `x` (Q4_0's `-8` offset and Q4_1's `m` term multiply them).
pub fn block_sums(x: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(x.chunks(QK).map(|c| c.iter().sum::<f32>()));
}

#[inline(always)]
fn dot_row_generic(kind: PackedKind, x: &[f32], xsum: &[f32], row: &[u8]) -> f32 {
    // Lane accumulators across blocks: one horizontal sum per row, not per block.
    let mut acc = [0f32; 16];
    let mut tail = 0f32;
    match kind {
        PackedKind::Q4_1 | PackedKind::Q4_0 => {
            let bsize = if kind == PackedKind::Q4_1 { 20 } else { 18 };
            let qs_at = bsize - 16;
            for ((b, xs), s) in row.chunks_exact(bsize).zip(x.chunks_exact(QK)).zip(xsum) {
                let d = half_at(b, 0);
                let q = &b[qs_at..qs_at + 16];
                for j in 0..16 {
                    let lo = (q[j] & 0x0f) as f32;
                    let hi = (q[j] >> 4) as f32;
                    acc[j] += d * (lo * xs[j] + hi * xs[j + 16]);
                }
                tail += if kind == PackedKind::Q4_1 {
                    half_at(b, 2) * s
                } else {
                    -8.0 * d * s
                };
            }
        }
        PackedKind::Q8_0 => {
            for (b, xs) in row.chunks_exact(34).zip(x.chunks_exact(QK)) {
                let d = half_at(b, 0);
                for j in 0..16 {
                    let a = b[2 + j] as i8 as f32 * xs[j];
                    let c = b[18 + j] as i8 as f32 * xs[j + 16];
                    acc[j] += d * (a + c);
                }
            }
        }
        PackedKind::F16 | PackedKind::BF16 => {
            let bf = kind == PackedKind::BF16;
            let conv = |c: &[u8]| {
                if bf {
                    bf16::from_le_bytes([c[0], c[1]]).to_f32()
                } else {
                    f16::from_le_bytes([c[0], c[1]]).to_f32()
                }
            };
            let mut vals = [0f32; 16];
            let (cx, cw) = (x.chunks_exact(16), row.chunks_exact(32));
            let (rx, rw) = (cx.remainder(), cw.remainder());
            for (xs, w) in cx.zip(cw) {
                for j in 0..16 {
                    vals[j] = conv(&w[2 * j..2 * j + 2]);
                }
                for j in 0..16 {
                    acc[j] += vals[j] * xs[j];
                }
            }
            tail = rx
                .iter()
                .zip(rw.chunks_exact(2))
                .map(|(x, w)| x * conv(w))
                .sum();
        }
        // Q4_K and Q6_K (what `Q4_K_M` files hold): dequantised in registers and dotted as
        // they go, the weights never written out (a 2048 x 2048 gemv, 2 cores: Q4_K 430 ->
        // 270 us, Q6_K 400 -> 255 us against the runs below).
        PackedKind::Q4_K => crate::loader::gguf::quant::dot_q4_k(row, x, &mut acc),
        PackedKind::Q6_K => crate::loader::gguf::quant::dot_q6_k(row, x, &mut acc),
        // Q5_K likewise (`Q5_K_M` files).
        PackedKind::Q5_K => crate::loader::gguf::quant::dot_q5_k(row, x, &mut acc),
        // Q5 and k-quants: runs of blocks dequantised (ggml's reference code, inlined here, so
        // the AVX2 and AVX-512 builds of this function vectorise it: 4x faster on Q6_K than the
        // copy compiled without them) into a buffer that stays in L1, then dotted; blocks are
        // 32 or 256 values, whole 16-lane chunks. (A thread-local buffer, not cleared per row,
        // was 5x slower: the closure that borrows it is not compiled with the features.)
        _ => {
            let (per, bsize) = kind.block();
            let mut vals = [0f32; RUN];
            let n = RUN / per;
            for (b, xs) in row.chunks(n * bsize).zip(x.chunks(n * per)) {
                let w = &mut vals[..xs.len()];
                // Not `kind.dequantize`: that is compiled once, without this build's features.
                crate::loader::gguf::quant::dequantize_serial(kind.ggml_type(), b, w);
                for (xs, w) in xs.chunks_exact(16).zip(w.chunks_exact(16)) {
                    for j in 0..16 {
                        acc[j] += xs[j] * w[j];
                    }
                }
            }
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`dot_row_generic`] compiled for AVX-512 (the kinds without block kernels of their own).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
unsafe fn dot_row_avx512(kind: PackedKind, x: &[f32], xsum: &[f32], row: &[u8]) -> f32 {
    dot_row_generic(kind, x, xsum, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_row_avx2(kind: PackedKind, x: &[f32], xsum: &[f32], row: &[u8]) -> f32 {
    match kind {
        PackedKind::Q4_0 | PackedKind::Q4_1 | PackedKind::Q8_0 => {
            // SAFETY: the caller checked the CPU features; the sizes are checked inside.
            unsafe { avx2::dot_blocks(kind, x, xsum, row) }
        }
        _ => dot_row_generic(kind, x, xsum, row),
    }
}

/// Hand-vectorised block kernels: per block of 32, widen the codes to eight-lane f32 vectors
/// and fuse-multiply-add them with `x`, one scale per block (LLVM does not find this shape in
/// the nibble code on its own).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::QK;
    use crate::cpu::avx2_blocks::{f16_at, hsum};
    use crate::tensor::PackedKind;

    /// Eight unsigned / signed bytes at `p` as f32 lanes.
    #[target_feature(enable = "avx2")]
    unsafe fn u8x8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn i8x8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes at `p`.
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(unsafe {
            _mm_loadl_epi64(p as *const __m128i)
        }))
    }

    /// Q4_0 / Q4_1 / Q8_0 row dot product (see [`super::dot_row`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_blocks(kind: PackedKind, x: &[f32], xsum: &[f32], row: &[u8]) -> f32 {
        let (_, bsize) = kind.block();
        let nb = row.len() / bsize;
        // Checked once here so that the loops below run on raw pointers.
        assert!(
            x.len() >= nb * QK && xsum.len() >= nb,
            "dot_blocks: short input"
        );
        let (x, s, r) = (x.as_ptr(), xsum.as_ptr(), row.as_ptr());
        // SAFETY: `nb` whole blocks lie in `row`, `nb * 32` values in `x`, `nb` sums in `xsum`.
        unsafe {
            match kind {
                PackedKind::Q4_1 => dot_q4::<true>(x, s, r, nb),
                PackedKind::Q4_0 => dot_q4::<false>(x, s, r, nb),
                _ => dot_q8(x, r, nb),
            }
        }
    }

    /// Q4_1 (`MIN`: `q * d + m`) or Q4_0 (`(q - 8) * d`).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q4<const MIN: bool>(
        x: *const f32,
        xs: *const f32,
        row: *const u8,
        nb: usize,
    ) -> f32 {
        let bsize = if MIN { 20 } else { 18 };
        let mask = _mm_set1_epi8(0x0f);
        let (mut acc, mut tail) = (_mm256_setzero_ps(), 0f32);
        for i in 0..nb {
            // SAFETY: block `i` and its 32 inputs are in bounds (see `dot_blocks`).
            unsafe {
                let b = row.add(i * bsize);
                let d = f16_at(b);
                let q = _mm_loadu_si128(b.add(bsize - 16) as *const __m128i);
                let lo = _mm_and_si128(q, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
                let xp = x.add(i * QK);
                let mut v = _mm256_mul_ps(u8x8(lo), _mm256_loadu_ps(xp));
                v = _mm256_fmadd_ps(u8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xp.add(8)), v);
                v = _mm256_fmadd_ps(u8x8(hi), _mm256_loadu_ps(xp.add(16)), v);
                v = _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xp.add(24)), v);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), v, acc);
                tail += if MIN { f16_at(b.add(2)) } else { -8.0 * d } * *xs.add(i);
            }
        }
        hsum(acc) + tail
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_q8(x: *const f32, row: *const u8, nb: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            // SAFETY: block `i` and its 32 inputs are in bounds (see `dot_blocks`).
            unsafe {
                let b = row.add(i * 34);
                let (q, xp) = (b.add(2), x.add(i * QK));
                let mut v = _mm256_mul_ps(i8x8(q), _mm256_loadu_ps(xp));
                v = _mm256_fmadd_ps(i8x8(q.add(8)), _mm256_loadu_ps(xp.add(8)), v);
                v = _mm256_fmadd_ps(i8x8(q.add(16)), _mm256_loadu_ps(xp.add(16)), v);
                v = _mm256_fmadd_ps(i8x8(q.add(24)), _mm256_loadu_ps(xp.add(24)), v);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(b)), v, acc);
            }
        }
        hsum(acc)
    }
}

/// Whether the AVX2 copy can run here (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && !super::turned_off("DLP_CPU_NO_AVX2")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize_avx2(kind: PackedKind, bytes: &[u8], out: &mut [f32]) {
    crate::loader::gguf::quant::dequantize_serial(kind.ggml_type(), bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
unsafe fn dequantize_avx512(kind: PackedKind, bytes: &[u8], out: &mut [f32]) {
    crate::loader::gguf::quant::dequantize_serial(kind.ggml_type(), bytes, out)
}

/// Dequantises whole blocks on this thread (`bytes` holds exactly `out.len()` values), with
/// the AVX2 build where the CPU has it: batched decode and prefill dequantise every weight
/// once per step, so this runs at memory speed or the step waits for it.
pub fn dequantize(kind: PackedKind, bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        let (_, bsize) = kind.block();
        // SAFETY: the CPU has AVX-512F/BW, FMA and F16C; whole blocks (the caller's contract).
        return unsafe {
            if kind.has_block_kernels() {
                super::avx512::dequantize_blocks(bsize, bytes, out)
            } else {
                dequantize_avx512(kind, bytes, out)
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports every feature the function was compiled with.
        return unsafe { dequantize_avx2(kind, bytes, out) };
    }
    kind.dequantize(bytes, out)
}

/// `dot(x, dequantise(row))`; `xsum` = [`block_sums`] of `x` (used by the 4-bit kinds).
/// `row` holds exactly `x.len()` values of `kind`.
pub fn dot_row(kind: PackedKind, x: &[f32], xsum: &[f32], row: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() && kind.has_block_kernels() {
        let nb = row.len() / kind.block().1;
        assert!(
            x.len() >= nb * QK && xsum.len() >= nb,
            "dot_row: short input"
        );
        let (x, s, r) = (x.as_ptr(), xsum.as_ptr(), row.as_ptr());
        // SAFETY: the CPU has AVX-512F, FMA and F16C; `nb` whole blocks lie in `row`,
        // `nb * 32` values in `x` and `nb` sums in `xsum` (asserted above).
        return unsafe {
            match kind {
                PackedKind::Q4_1 => super::avx512::dot_q4::<true>(x, s, r, nb),
                PackedKind::Q4_0 => super::avx512::dot_q4::<false>(x, s, r, nb),
                _ => super::avx512::dot_q8(x, r, nb),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F/BW, FMA and F16C.
        return unsafe { dot_row_avx512(kind, x, xsum, row) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports every feature the function was compiled with.
        return unsafe { dot_row_avx2(kind, x, xsum, row) };
    }
    dot_row_generic(kind, x, xsum, row)
}

/// A xorshift64 stream from `seed` (random test blocks; also the int8 tests').
#[cfg(test)]
pub(super) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a block's f16 scales sit: (d, and the min's where the kind has one).
    fn scale_offsets(kind: PackedKind) -> (usize, Option<usize>) {
        use PackedKind::*;
        match kind {
            Q4_1 | Q5_1 | Q4_K | Q5_K => (0, Some(2)),
            Q2_K => (80, Some(82)),
            Q3_K => (108, None),
            Q6_K => (208, None),
            _ => (0, None),
        }
    }

    /// Every kind against dequantise-then-dot, on random blocks (two k-quant blocks a row, so
    /// the block kernels' walks cross a block).
    #[test]
    fn matches_dequantised_dot() {
        let mut rnd = xorshift(0x9e3779b97f4a7c15u64);
        let k = 512;
        let x: Vec<f32> = (0..k)
            .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let mut xsum = Vec::new();
        block_sums(&x, &mut xsum);
        for kind in PackedKind::ALL {
            let nb = kind.row_bytes(k);
            let mut row: Vec<u8> = (0..nb).map(|_| rnd() as u8).collect();
            // Sane scales (random bytes could make an f16 inf/NaN).
            let (per, bsize) = kind.block();
            if per > 1 {
                let (d, m) = scale_offsets(kind);
                for b in row.chunks_exact_mut(bsize) {
                    b[d..d + 2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
                    if let Some(m) = m {
                        b[m..m + 2].copy_from_slice(&f16::from_f32(-0.05).to_le_bytes());
                    }
                }
            } else {
                for c in row.chunks_exact_mut(2) {
                    let v = (rnd() % 2000) as f32 / 1000.0 - 1.0;
                    let bytes = if kind == PackedKind::F16 {
                        f16::from_f32(v).to_le_bytes()
                    } else {
                        bf16::from_f32(v).to_le_bytes()
                    };
                    c.copy_from_slice(&bytes);
                }
            }
            let mut w = vec![0f32; k];
            kind.dequantize(&row, &mut w);
            let want: f64 = x.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
            let got = dot_row(kind, &x, &xsum, &row) as f64;
            let generic = dot_row_generic(kind, &x, &xsum, &row) as f64;
            let scale = x
                .iter()
                .zip(&w)
                .map(|(a, b)| (a * b).abs() as f64)
                .sum::<f64>();
            assert!(
                (got - want).abs() <= 1e-5 * scale,
                "{kind:?}: {got} vs {want}"
            );
            assert!((generic - want).abs() <= 1e-5 * scale, "{kind:?} generic");
        }
    }

    /// The tile dequantiser (AVX-512 where the CPU has it) gives exactly the portable values.
    #[test]
    fn dequantize_is_bit_identical() {
        let mut rnd = xorshift(0x2545_f491_4f6c_dd1du64);
        // Every kind of blocks (F16 and BF16 have none).
        for kind in PackedKind::ALL.into_iter().filter(|k| k.block().0 > 1) {
            // 37 blocks: two gathered chunks of 16 and a partial one. (The k-quants' scales
            // sit elsewhere: their random ones may be inf or NaN, whose bits compare alike.)
            let (per, bsize) = kind.block();
            let mut bytes: Vec<u8> = (0..37 * bsize).map(|_| rnd() as u8).collect();
            for b in bytes.chunks_exact_mut(bsize) {
                let d = (rnd() % 1000) as f32 / 7e4 - 0.007;
                b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                if kind == PackedKind::Q4_1 {
                    let m = (rnd() % 1000) as f32 / 1e4 - 0.05;
                    b[2..4].copy_from_slice(&f16::from_f32(m).to_le_bytes());
                }
            }
            let (mut want, mut got) = (vec![0f32; 37 * per], vec![f32::NAN; 37 * per]);
            kind.dequantize(&bytes, &mut want);
            dequantize(kind, &bytes, &mut got);
            let same = want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{kind:?}: tile dequantiser differs from the portable one"
            );
        }
    }
}
