//! The opt-in AMX-BF16 matmul of several rows (`CpuOptions::amx`, `--cpu-amx`): batches and
//! prefill on Intel CPUs with AMX (Sapphire Rapids and later).
//!
//! Inputs and weights are rounded to bf16 (nearest even) and multiplied on the tile unit, a
//! 32x32 block of f32 results (four 16x16 tiles) per pass over `k`, with f32 accumulation.
//! Q4_0/Q4_1/Q8_0 weights are dequantised in registers straight into the tiles' pair order
//! (other storage goes through an f32 tile first). On the dev machine a lone 32x32x576 block ran at 458 GFLOP/s on
//! one core (the f32 AVX-512 kernel: about 90); in a batch-32 decode step the packing, the
//! dequantisation, attention and LoRA then dominate. The price is bf16's 8-bit mantissa on
//! both operands: logits move by up to 3.4e-1 on SmolLM2 (tests: `dlp_tests::amx_logit_tol`).
//! One row (decode) stays on the f32 path.

use std::arch::asm;
use std::sync::OnceLock;

use half::bf16;

/// Values of `k` per tile step (16 pairs of bf16).
pub const K_STEP: usize = 32;
/// Rows per block: two A tiles of 16.
pub const ROW_BLOCK: usize = 32;
/// Features per block: two B tiles of 16.
pub const FEATURE_BLOCK: usize = 32;

/// Whether the AMX-BF16 kernels can run here: CPUID reports AMX-TILE and AMX-BF16 and the
/// kernel grants this process the tile state (Linux `arch_prctl`). Checked once.
pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports AVX-512.
        let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0 && request_tile_state()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a syscall with integer arguments only; it changes nothing but this process's
    // permission to use the tile registers.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// `k` rounded up to whole tile steps.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(K_STEP) * K_STEP
}

/// `x` (`rows` rows of `k`) as bf16 bit patterns, `[rows rounded up to 32][padded_k(k)]`,
/// zero-padded: the A operand.
pub fn pack_rows(x: &[f32], rows: usize, k: usize, out: &mut Vec<u16>) {
    let kp = padded_k(k);
    out.clear();
    out.resize(rows.div_ceil(ROW_BLOCK) * ROW_BLOCK * kp, 0);
    for (xr, or) in x.chunks_exact(k).take(rows).zip(out.chunks_exact_mut(kp)) {
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = bf16::from_f32(v).to_bits();
        }
    }
}

/// `w` (`n` rows of `k`) as bf16 in the tile unit's pair layout, the B operand: per group of
/// 16 features, `padded_k(k) / 2` rows of 16 features x 2 consecutive `k` values; features
/// rounded up to 32, zero-padded. Rounding to nearest even, as `half::bf16::from_f32` does for
/// finite values.
pub fn pack_weights(w: &[f32], n: usize, k: usize, out: &mut Vec<u16>) {
    assert!(w.len() >= n * k);
    // SAFETY: AMX CPUs have AVX-512F/BW (the caller checked `available` with AVX-512).
    unsafe { pack_weights_avx512(w, n, k, out) }
}

/// [`pack_weights`] (its closure compiled with the features, so the loads inline).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_weights_avx512(w: &[f32], n: usize, k: usize, out: &mut Vec<u16>) {
    let p = w.as_ptr();
    let mask = |from: usize| -> u16 {
        let m = k.saturating_sub(from).min(16);
        ((1u32 << m) - 1) as u16
    };
    // SAFETY: the masked loads read `w[f * k + i]` only for `f < n`, `i < k` (`w` holds
    // `n * k`, asserted by the caller).
    unsafe {
        pack_with(n, k, out, |f, kk| {
            use std::arch::x86_64::*;
            let row = p.add(f * k + kk);
            (
                _mm512_maskz_loadu_ps(mask(kk), row),
                _mm512_maskz_loadu_ps(mask(kk + 16), row.add(16)),
            )
        })
    }
}

/// [`pack_weights`] straight from Q4_0 / Q4_1 / Q8_0 blocks (`bsize` 18 / 20 / 34 bytes; `n`
/// rows of `k / 32` blocks, `k` a multiple of 32): each block dequantised in registers (the
/// values of [`super::avx512::dequantize_blocks`]) and rounded, no f32 tile in between.
pub fn pack_blocks(bsize: usize, bytes: &[u8], n: usize, k: usize, out: &mut Vec<u16>) {
    assert!(k.is_multiple_of(32) && bytes.len() >= n * (k / 32 * bsize));
    // SAFETY: AMX CPUs have AVX-512F/BW, FMA and F16C (the caller checked `available` with
    // AVX-512).
    unsafe { pack_blocks_avx512(bsize, bytes, n, k, out) }
}

/// [`pack_blocks`] (its closure compiled with the features, so the dequantiser inlines).
#[target_feature(enable = "avx512f,avx512bw,fma,f16c")]
unsafe fn pack_blocks_avx512(bsize: usize, bytes: &[u8], n: usize, k: usize, out: &mut Vec<u16>) {
    let row_bytes = k / 32 * bsize;
    let p = bytes.as_ptr();
    // The packer walks 16 rows side by side, which the hardware prefetchers follow poorly; the
    // tile (a few tens of KiB) is asked for up front, in order.
    for at in (0..n * row_bytes).step_by(64) {
        // SAFETY: a prefetch of an address inside `bytes`; it reads nothing architecturally.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.add(at) as *const i8
            )
        };
    }
    // SAFETY: block `kk / 32` of row `f < n` lies in `bytes` (asserted by the caller).
    unsafe {
        pack_with(n, k, out, |f, kk| {
            super::avx512::block_f32(p.add(f * row_bytes + kk / 32 * bsize), bsize)
        })
    }
}

/// The pair-layout packer over `load(feature, kk)`, which gives the feature's 32 values at
/// `k` positions `kk..kk + 32` (zero past `k`): 16 features x 32 values per step, rounded to
/// bf16 and paired in registers, then the 16x16 dword block transposed into 16 pair rows.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_with(
    n: usize,
    k: usize,
    out: &mut Vec<u16>,
    load: impl Fn(usize, usize) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512),
) {
    use std::arch::x86_64::*;
    let kp = padded_k(k);
    let groups = n.div_ceil(FEATURE_BLOCK) * 2;
    // Every value is written below (padding included), so a buffer of the right size is
    // reused as it is.
    out.resize(groups * kp * 16, 0);
    // Round to nearest even: add 0x7fff plus the lowest kept bit (the top 16 bits are bf16).
    let round = |v: __m512| -> __m512i {
        let bits = _mm512_castps_si512(v);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)))
    };
    // The top halves of the 32 dwords of (a, b), in order: words 1, 3, ..., 63.
    let mut top = [0i16; 32];
    for (i, t) in top.iter_mut().enumerate() {
        *t = (2 * i + 1) as i16;
    }
    // SAFETY: `top` is 64 readable bytes.
    let top = unsafe { _mm512_loadu_si512(top.as_ptr() as *const __m512i) };
    for g in 0..groups {
        for kk in (0..kp).step_by(K_STEP) {
            let mut r = [_mm512_setzero_si512(); 16];
            for (f, r) in r.iter_mut().enumerate().take(n.saturating_sub(g * 16)) {
                let (lo, hi) = load(g * 16 + f, kk);
                *r = _mm512_permutex2var_epi16(round(lo), top, round(hi));
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
fn transpose16(r: [std::arch::x86_64::__m512i; 16]) -> [std::arch::x86_64::__m512i; 16] {
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

/// The tile configuration: palette 1, tiles 0-7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// `out[r * ldo + f] = sum_i a[r, i] * b[f, i]` for `r < rows`, `f < features`, with `a` from
/// [`pack_rows`] and `b` from [`pack_weights`] (both for the same `k`).
///
/// # Safety
/// [`available`] must be true; `a` and `b` hold what their packers made for `rows`,
/// `features` and `k`; `out` holds `rows` rows `ldo` apart with `features` values each.
pub unsafe fn matmul(
    a: &[u16],
    rows: usize,
    b: &[u16],
    features: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
) {
    let kp = padded_k(k);
    let (rp, fp) = (
        rows.div_ceil(ROW_BLOCK) * ROW_BLOCK,
        features.div_ceil(FEATURE_BLOCK) * FEATURE_BLOCK,
    );
    assert!(
        a.len() >= rp * kp && b.len() >= fp * kp,
        "amx::matmul: short operands"
    );
    let mut c = [0f32; ROW_BLOCK * FEATURE_BLOCK];
    // SAFETY: AMX is available (caller); every tile load reads 16 rows of 64 bytes inside
    // `a` (rows `r0..r0 + 32` of `kp` values) or `b` (pair rows of two feature groups), and
    // the stores write the 4 KiB of `c`; `out` is written only for real rows and features.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack));
        for r0 in (0..rp).step_by(ROW_BLOCK) {
            for f0 in (0..fp).step_by(FEATURE_BLOCK) {
                asm!(
                    "tilezero tmm4",
                    "tilezero tmm5",
                    "tilezero tmm6",
                    "tilezero tmm7",
                    options(nostack)
                );
                for kk in (0..kp).step_by(K_STEP) {
                    let a0 = a.as_ptr().add(r0 * kp + kk);
                    let a1 = a0.add(16 * kp);
                    let b0 = b.as_ptr().add(f0 * kp + kk * 16);
                    let b1 = b0.add(16 * kp);
                    asm!(
                        "tileloadd tmm0, [{a0} + {sa}*1]",
                        "tileloadd tmm1, [{a1} + {sa}*1]",
                        "tileloadd tmm2, [{b0} + {sb}*1]",
                        "tileloadd tmm3, [{b1} + {sb}*1]",
                        "tdpbf16ps tmm4, tmm0, tmm2",
                        "tdpbf16ps tmm5, tmm0, tmm3",
                        "tdpbf16ps tmm6, tmm1, tmm2",
                        "tdpbf16ps tmm7, tmm1, tmm3",
                        a0 = in(reg) a0,
                        a1 = in(reg) a1,
                        b0 = in(reg) b0,
                        b1 = in(reg) b1,
                        sa = in(reg) kp * 2,
                        sb = in(reg) 64usize,
                        options(nostack, readonly)
                    );
                }
                let cp = c.as_mut_ptr();
                asm!(
                    "tilestored [{c0} + {s}*1], tmm4",
                    "tilestored [{c1} + {s}*1], tmm5",
                    "tilestored [{c2} + {s}*1], tmm6",
                    "tilestored [{c3} + {s}*1], tmm7",
                    c0 = in(reg) cp,
                    c1 = in(reg) cp.add(16),
                    c2 = in(reg) cp.add(16 * FEATURE_BLOCK),
                    c3 = in(reg) cp.add(16 * FEATURE_BLOCK + 16),
                    s = in(reg) FEATURE_BLOCK * 4,
                    options(nostack)
                );
                let (nr, nf) = (
                    (rows - r0).min(ROW_BLOCK),
                    (features - f0).min(FEATURE_BLOCK),
                );
                for r in 0..nr {
                    let dst = std::slice::from_raw_parts_mut(out.add((r0 + r) * ldo + f0), nf);
                    dst.copy_from_slice(&c[r * FEATURE_BLOCK..r * FEATURE_BLOCK + nf]);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}
