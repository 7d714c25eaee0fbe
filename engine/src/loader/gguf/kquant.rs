//! Dequantisation of ggml's 5-bit legacy types (Q5_0, Q5_1), its k-quants (Q2_K, Q3_K, Q4_K,
//! Q5_K, Q6_K) and the two 4-bit non-linear types (IQ4_NL, IQ4_XS): what `Q4_K_M`, `Q5_K_M`,
//! `Q3_K_L`, `IQ4_XS`, ... GGUFs hold. Each function reads
//! whole blocks and follows ggml's reference `dequantize_row_*` (ggml-quants.c) operation by
//! operation, products unfused, so the values are bit-identical to ggml's and gguf-py's.
//!
//! Block layouts (bytes, in file order; `QK_K` = 256 values per k-quant block):
//! - Q5_0 (22): f16 `d`, `qh` (32 high bits, little-endian), `qs[16]` (low nibbles).
//! - Q5_1 (24): f16 `d`, f16 `m`, `qh`, `qs[16]`.
//! - Q2_K (84): `scales[16]` (4-bit scale, 4-bit min), `qs[64]`, f16 `d`, f16 `dmin`.
//! - Q3_K (110): `hmask[32]`, `qs[64]`, `scales[12]` (16 packed 6-bit scales), f16 `d`.
//! - Q4_K (144): f16 `d`, f16 `dmin`, `scales[12]` (8 packed 6-bit scale/min pairs), `qs[128]`.
//! - Q5_K (176): f16 `d`, f16 `dmin`, `scales[12]`, `qh[32]`, `qs[128]`.
//! - Q6_K (210): `ql[128]`, `qh[64]`, `scales[16]` (i8), f16 `d`.
//! - IQ4_NL (18): f16 `d`, `qs[16]`; IQ4_XS (136): f16 `d`, `scales_h`, `scales_l[4]`, `qs[128]`.

use half::f16;

pub(crate) fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// 32 bytes as an array (its length known to the compiler: no bounds checks in the loops).
#[inline(always)]
fn as32(b: &[u8]) -> &[u8; 32] {
    b.try_into().expect("32 bytes")
}

/// 32 values as an array.
#[inline(always)]
fn as32_mut(y: &mut [f32]) -> &mut [f32; 32] {
    y.try_into().expect("32 values")
}

/// Q5_0 blocks (32 values each): `y = (q - 16) * d`, q's fifth bit from `qh`.
#[inline(always)]
pub fn q5_0(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(22)) {
        let d = half_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((qs[j] as u32 & 0x0f) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((qs[j] as u32 >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1 blocks (32 values each): `y = q * d + m`.
#[inline(always)]
pub fn q5_1(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(24)) {
        let (d, m) = (half_at(b, 0), half_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] as u32 & 0x0f) | h0) as f32 * d + m;
            y[j + 16] = ((qs[j] as u32 >> 4) | h1) as f32 * d + m;
        }
    }
}

/// Q2_K blocks: 16 groups of 16 values, `y = d * scale * q - dmin * min` (2-bit q).
#[inline(always)]
pub fn q2_k(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(84)) {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let (d, min) = (half_at(b, 80), half_at(b, 82));
        let mut is = 0;
        let mut yi = 0;
        for q in qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in [&q[0..16], &q[16..32]] {
                    let sc = scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0x0f) as f32, min * (sc >> 4) as f32);
                    for &v in half {
                        y[yi] = dl * ((v >> shift) & 3) as f32 - ml;
                        yi += 1;
                    }
                }
            }
        }
    }
}

/// Q3_K blocks: 16 groups of 16 values, `y = d * (scale - 32) * (q - 4 * !hbit)` (3-bit q).
#[inline(always)]
pub fn q3_k(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(110)) {
        let (hm, qs) = (&b[0..32], &b[32..96]);
        let d_all = half_at(b, 108);
        let scales = q3_k_scales(&b[96..108]);
        let scale = |i: usize| scales[i] as i32;
        let (mut is, mut yi, mut m) = (0, 0, 1u8);
        for q in qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for off in [0, 16] {
                    let dl = d_all * (scale(is) - 32) as f32;
                    is += 1;
                    for l in off..off + 16 {
                        let low = ((q[l] >> shift) & 3) as i32;
                        let sub = if hm[l] & m != 0 { 0 } else { 4 };
                        y[yi] = dl * (low - sub) as f32;
                        yi += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// The 16 six-bit scales of a Q3_K block from its 12 packed bytes, unpacked as ggml does (low
/// nibbles from the first 8 bytes, the two high bits of each from the last 4), as `i8`
/// (0..64; ggml subtracts 32 where it uses them).
pub(crate) fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    std::array::from_fn(|i| (aux[i / 4] >> (8 * (i % 4))) as u8 as i8)
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K block's 12 packed bytes (ggml's
/// `get_scale_min_k4`): six bits each, the high two of 4..8 kept in the top bits of 0..8.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K blocks: 8 groups of 32 values, `y = d * scale * q - dmin * min` (4-bit q).
#[inline(always)]
pub fn q4_k(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(144)) {
        let (d, min) = (half_at(b, 0), half_at(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (s1, m1) = scale_min_k4(2 * g, scales);
            let (s2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            // Fixed sizes: no bounds checks, so the loops vectorise.
            let (q, (lo, hi)) = (as32(q), y.split_at_mut(32));
            let (lo, hi) = (as32_mut(lo), as32_mut(hi));
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            }
            for l in 0..32 {
                hi[l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K blocks: as Q4_K with a fifth bit per value from `qh`.
#[inline(always)]
pub fn q5_k(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(176)) {
        let (d, min) = (half_at(b, 0), half_at(b, 2));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (s1, m1) = scale_min_k4(2 * g, scales);
            let (s2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            let (q, qh, (lo, hi)) = (as32(q), as32(qh), y.split_at_mut(32));
            let (lo, hi) = (as32_mut(lo), as32_mut(hi));
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                lo[l] = d1 * ((q[l] & 0x0f) + h1) as f32 - m1;
            }
            for l in 0..32 {
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                hi[l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// Q6_K blocks: 16 groups of 16 values, `y = d * scale * (q - 32)` (6-bit q, i8 scales).
#[inline(always)]
pub fn q6_k(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(210)) {
        let d = half_at(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = as32(&b[128 + 32 * n..128 + 32 * n + 32]);
            let sc = |i: usize| b[192 + 8 * n + i] as i8 as f32;
            // ggml's loop over l writes y[l], y[l + 32], y[l + 64], y[l + 96]: here one
            // quarter at a time (low or high nibbles of ql[0..32] or ql[32..64], two bits of
            // qh), each in two halves of 16 that share a scale (ggml's `is = l / 16`).
            for quarter in 0..4 {
                let src = as32(&ql[32 * (quarter % 2)..32 * (quarter % 2) + 32]);
                let (nib, hs) = (4 * (quarter / 2) as u32, 2 * quarter as u32);
                let y = as32_mut(&mut y[128 * n + 32 * quarter..128 * n + 32 * quarter + 32]);
                for half in 0..2 {
                    let s = sc(half + 2 * quarter);
                    for l in 16 * half..16 * half + 16 {
                        let q = (((src[l] >> nib) & 0x0f) | (((qh[l] >> hs) & 3) << 4)) as i32;
                        y[l] = d * s * (q - 32) as f32;
                    }
                }
            }
        }
    }
}

/// The 16 values a 4-bit IQ4 code stands for (ggml's `kvalues_iq4nl`).
pub(crate) const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_NL blocks (32 values, 18 bytes: f16 `d`, 16 bytes of nibbles): `y = d * kvalues[q]`.
/// llama.cpp stores rows it cannot cut into 256-value k-quant blocks this way (Q2_K and Q3_K
/// files of models whose width is not a multiple of 256).
#[inline(always)]
pub fn iq4_nl(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
        let d = half_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = d * KVALUES_IQ4NL[(qs[j] & 0x0f) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// IQ4_XS blocks (256 values, 136 bytes: f16 `d`, `scales_h` (u16), `scales_l[4]`, `qs[128]`):
/// 8 groups of 32, each `y = d * (scale - 32) * kvalues[q]` with a 6-bit scale.
#[inline(always)]
pub fn iq4_xs(bytes: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(256).zip(bytes.chunks_exact(136)) {
        let d = half_at(b, 0);
        let scales_h = u16::from_le_bytes([b[2], b[3]]) as i32;
        let (scales_l, qs) = (&b[4..8], &b[8..136]);
        for (ib, (q, y)) in qs.chunks_exact(16).zip(y.chunks_exact_mut(32)).enumerate() {
            let ls = ((scales_l[ib / 2] as i32 >> (4 * (ib % 2))) & 0x0f)
                | (((scales_h >> (2 * ib)) & 3) << 4);
            let dl = d * (ls - 32) as f32;
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(q[j] & 0x0f) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(q[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// `acc[l % 16] += x[l] * w[l]` over Q4_K blocks `bytes` (`x`: as many values), `w` as
/// [`q4_k`] computes it, value for value: the CPU's decode dot without writing the weights
/// out (the most common k-quant of `Q4_K_M` files). It walks the blocks as [`q4_k`] does; one
/// walk for both (a trait choosing to store or dot each 16 values) made Q4_K's dot and
/// dequantisation 3x slower (not vectorised), so the walk is written twice.
#[inline(always)]
pub fn dot_q4_k(bytes: &[u8], x: &[f32], acc: &mut [f32; 16]) {
    dot_q45_k::<false>(bytes, x, acc)
}

/// As [`dot_q4_k`] for Q5_K blocks, `w` as [`q5_k`] computes it, value for value (what
/// `Q5_K_M` and `Q5_K_S` files hold most of their matrices in).
#[inline(always)]
pub fn dot_q5_k(bytes: &[u8], x: &[f32], acc: &mut [f32; 16]) {
    dot_q45_k::<true>(bytes, x, acc)
}

/// The walk of [`dot_q4_k`] and, with `Q5`, [`dot_q5_k`] (the fifth bits from `qh`): one
/// build per kind (a constant, not a branch per value), so each vectorises as written alone.
#[inline(always)]
fn dot_q45_k<const Q5: bool>(bytes: &[u8], x: &[f32], acc: &mut [f32; 16]) {
    let (size, qs_at) = if Q5 { (176, 48) } else { (144, 16) };
    for (xb, b) in x.chunks_exact(256).zip(bytes.chunks_exact(size)) {
        let (d, min) = (half_at(b, 0), half_at(b, 2));
        let (scales, qs) = (&b[4..16], &b[qs_at..size]);
        let qh = if Q5 { as32(&b[16..48]) } else { &[0u8; 32] };
        for (g, (q, xg)) in qs.chunks_exact(32).zip(xb.chunks_exact(64)).enumerate() {
            let (s1, m1) = scale_min_k4(2 * g, scales);
            let (s2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, m1) = (d * s1 as f32, min * m1 as f32);
            let (d2, m2) = (d * s2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            let q = as32(q);
            let (lo, hi) = xg.split_at(32);
            let (lo, hi): (&[f32; 32], &[f32; 32]) =
                (lo.try_into().expect("32"), hi.try_into().expect("32"));
            for h in 0..2 {
                for (j, a) in acc.iter_mut().enumerate() {
                    let l = 16 * h + j;
                    let h1 = if Q5 && qh[l] & u1 != 0 { 16 } else { 0 };
                    *a += lo[l] * (d1 * ((q[l] & 0x0f) + h1) as f32 - m1);
                }
            }
            for h in 0..2 {
                for (j, a) in acc.iter_mut().enumerate() {
                    let l = 16 * h + j;
                    let h2 = if Q5 && qh[l] & u2 != 0 { 16 } else { 0 };
                    *a += hi[l] * (d2 * ((q[l] >> 4) + h2) as f32 - m2);
                }
            }
        }
    }
}

/// As [`dot_q4_k`] for Q6_K blocks, `w` as [`q6_k`] computes it (`Q4_K_M` files hold their
/// output matrix and some others in Q6_K).
#[inline(always)]
pub fn dot_q6_k(bytes: &[u8], x: &[f32], acc: &mut [f32; 16]) {
    for (xb, b) in x.chunks_exact(256).zip(bytes.chunks_exact(210)) {
        let d = half_at(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = as32(&b[128 + 32 * n..128 + 32 * n + 32]);
            let sc = |i: usize| b[192 + 8 * n + i] as i8 as f32;
            for quarter in 0..4 {
                let src = as32(&ql[32 * (quarter % 2)..32 * (quarter % 2) + 32]);
                let (nib, hs) = (4 * (quarter / 2) as u32, 2 * quarter as u32);
                let at = 128 * n + 32 * quarter;
                let xq: &[f32; 32] = xb[at..at + 32].try_into().expect("32");
                for half in 0..2 {
                    let s = sc(half + 2 * quarter);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let l = 16 * half + j;
                        let q = (((src[l] >> nib) & 0x0f) | (((qh[l] >> hs) & 3) << 4)) as i32;
                        *a += xq[l] * (d * s * (q - 32) as f32);
                    }
                }
            }
        }
    }
}
