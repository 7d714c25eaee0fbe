//! The opt-in AMX-BF16 matmul of several rows (`CpuOptions::amx`, `--cpu-amx`): batches and
//! prefill on Intel CPUs with AMX (Sapphire Rapids and later).
//!
//! Inputs and weights are rounded to bf16 (nearest even) and multiplied on the tile unit, a
//! 32x32 block of f32 results (four 16x16 tiles) per pass over `k`, with f32 accumulation.
//! The weights are the A operand (16 features x 32 `k` values per tile: rows as stored, no
//! transpose), the input rows the B operand (packed once per call into the pair layout, see
//! [`super::amx_pack`]); results are transposed into the output in registers. Up to 32 rows
//! (a batch's decode step) pack each 32-feature weight tile as they multiply it, Q4_0/Q4_1/
//! Q8_0 blocks dequantised in registers. A second product can join the same accumulators
//! ([`Extra`]: the LoRA expand of a batch). One row (decode) stays on the f32 path. The price
//! is bf16's 8-bit mantissa on both operands: logits move by up to 3.7e-1 on SmolLM2 (tests:
//! `dlp_tests::amx_logit_tol`).

use std::arch::asm;
use std::sync::OnceLock;

pub use super::amx_pack::{pack_rows, pack_weights, Weights};
use super::amx_pack::{transpose16, RowBody};

/// Values of `k` per tile step (16 pairs of bf16).
pub const K_STEP: usize = 32;
/// Rows per block: two A tiles of 16.
pub const ROW_BLOCK: usize = 32;
/// Features per block: two B tiles of 16.
pub const FEATURE_BLOCK: usize = 32;

/// A second product added into the same accumulators as a matmul's own: `w` (weights packed
/// by [`pack_weights`] for `k`, from the matmul's first feature on) times `x` (the same rows
/// packed by [`pack_rows`] for `k`). The LoRA expand of a batch (coefficients times B) rides
/// along with the base weights this way: no second pass over the outputs.
#[derive(Clone, Copy)]
pub struct Extra<'a> {
    /// Weights, `k` values per feature (A operand).
    pub w: &'a [u16],
    /// Rows (B operand).
    pub x: &'a [u16],
    /// Inner width of this product.
    pub k: usize,
}

impl Extra<'_> {
    /// Panics unless the operands hold `features` features and `rows` rows for `k`.
    pub fn check(&self, features: usize, rows: usize) {
        let kw = padded_k(self.k);
        assert!(
            self.w.len() >= features.div_ceil(FEATURE_BLOCK) * FEATURE_BLOCK * kw
                && self.x.len() >= rows.div_ceil(ROW_BLOCK) * ROW_BLOCK * kw,
            "amx: short extra operands"
        );
    }
}

/// Whether the AMX-BF16 kernels can run here: CPUID reports AMX-TILE, AMX-BF16 and AVX512-BF16, and the
/// kernel grants this process the tile state (Linux `arch_prctl`). Checked once.
pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports AVX-512.
        let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
        edx & (1 << 22) != 0
            && edx & (1 << 24) != 0
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && request_tile_state()
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

/// `out[r * ldo + f] = sum_i x[r, i] * w[f, i]` for at most 32 rows, the weights packed as
/// they are used ([`matmul_packing`]); `x` from [`pack_rows`]; with `extra`, its product
/// joins the same accumulators.
///
/// # Safety
/// [`available`] must be true; `x` holds what [`pack_rows`] made for `rows <= 32` and `k`;
/// `out` holds `rows` rows `ldo` apart with `features` values each.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_weights(
    w: Weights<'_>,
    features: usize,
    k: usize,
    x: &[u16],
    rows: usize,
    out: *mut f32,
    ldo: usize,
    extra: Option<&Extra<'_>>,
) {
    w.check(features, k);
    extra.inspect(|e| e.check(features, rows));
    struct Mul<'a> {
        features: usize,
        k: usize,
        x: &'a [u16],
        rows: usize,
        out: *mut f32,
        ldo: usize,
        extra: Option<&'a Extra<'a>>,
    }
    impl RowBody for Mul<'_> {
        type Out = ();
        fn run(self, row: impl Fn(usize, usize) -> std::arch::x86_64::__m512i) {
            let m = self;
            // SAFETY: as `matmul_weights`' caller vouched (the loader exists only under
            // `with_rows`' features, which are `matmul_packing`'s).
            unsafe { matmul_packing(m.features, m.x, m.rows, m.k, m.out, m.ldo, m.extra, row) }
        }
    }
    let body = Mul {
        features,
        k,
        x,
        rows,
        out,
        ldo,
        extra,
    };
    // SAFETY: AMX CPUs have AVX-512F/BW/BF16, FMA and F16C; the sizes were checked;
    // `matmul_packing` loads features `f < features` only.
    unsafe { w.with_rows(features, k, body) }
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

/// `out[r * ldo + f] = sum_i x[r, i] * w[f, i]` for `r < rows`, `f < features`, with `w` from
/// [`pack_weights`] (the A operand) and `x` from [`pack_rows`] (the B
/// operand), both for the same `k`. Each 32x32 block of results (features x rows, four 16x16
/// tiles) is transposed into `out` in registers; with `add`, added to what `out` holds.
///
/// # Safety
/// [`available`] must be true; `w` and `x` hold what their packers made for `features`,
/// `rows` and `k`; `out` holds `rows` rows `ldo` apart with `features` values each.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    w: &[u16],
    features: usize,
    x: &[u16],
    rows: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
    add: bool,
) {
    let kp = padded_k(k);
    let (rp, fp) = (
        rows.div_ceil(ROW_BLOCK) * ROW_BLOCK,
        features.div_ceil(FEATURE_BLOCK) * FEATURE_BLOCK,
    );
    assert!(
        x.len() >= rp * kp && w.len() >= fp * kp,
        "amx::matmul: short operands"
    );
    let mut c = [0f32; ROW_BLOCK * FEATURE_BLOCK];
    // SAFETY: AMX is available (caller); every tile load reads 16 rows of 64 bytes inside
    // `w` (features `f0..f0 + 32` of `kp` values) or `x` (pair rows of two row groups), and
    // `out` is written only for real rows and features.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack));
        for f0 in (0..fp).step_by(FEATURE_BLOCK) {
            for r0 in (0..rp).step_by(ROW_BLOCK) {
                zero_accumulators();
                for kk in (0..kp).step_by(K_STEP) {
                    let a = w.as_ptr().add(f0 * kp + kk);
                    tile_step(a, kp * 2, x.as_ptr().add(r0 * kp + kk * 16), kp);
                }
                let (nf, nr) = ((features - f0).min(32), (rows - r0).min(32));
                store_accumulators(&mut c, nf, nr, out.add(r0 * ldo + f0), ldo, add);
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// [`matmul`] for at most 32 rows, with the weights packed as they are used: per step of
/// `k`, `row(f, kk)` gives feature `f`'s 32 bf16 values at `kk..kk + 32` (zero past `k`),
/// 32 features are laid into a 2 KiB buffer that the tile loads read from L1, then
/// multiplied. A batch's rows use each weight tile once, so a packed copy of the whole tile
/// would be written and read back through L2 for nothing. With `extra`, its product joins
/// the same accumulators (the LoRA expand, see [`Extra`]).
///
/// # Safety
/// [`available`] must be true; `rows <= 32`; `x` holds what [`pack_rows`] made for `rows`
/// and `k`; `row` is safe to call for `f < features`, `kk < padded_k(k)`; `out` holds `rows`
/// rows `ldo` apart with `features` values each.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_packing(
    features: usize,
    x: &[u16],
    rows: usize,
    k: usize,
    out: *mut f32,
    ldo: usize,
    extra: Option<&Extra<'_>>,
    row: impl Fn(usize, usize) -> std::arch::x86_64::__m512i,
) {
    use std::arch::x86_64::*;
    let kp = padded_k(k);
    assert!(
        rows <= ROW_BLOCK && x.len() >= ROW_BLOCK * kp,
        "amx: short rows"
    );
    #[repr(align(64))]
    struct Panel([u16; FEATURE_BLOCK * K_STEP]);
    let mut panel = Panel([0; FEATURE_BLOCK * K_STEP]);
    let mut c = [0f32; ROW_BLOCK * FEATURE_BLOCK];
    // SAFETY: as the caller vouched; the tile loads read the 2 KiB panel and pair rows of
    // `x` inside its `32 * kp` values.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG as *const TileConfig, options(nostack));
        for f0 in (0..features).step_by(FEATURE_BLOCK) {
            let nf = (features - f0).min(FEATURE_BLOCK);
            zero_accumulators();
            for kk in (0..kp).step_by(K_STEP) {
                let dst = panel.0.as_mut_ptr();
                for f in 0..FEATURE_BLOCK {
                    let v = if f < nf {
                        row(f0 + f, kk)
                    } else {
                        _mm512_setzero_si512()
                    };
                    _mm512_store_si512(dst.add(f * K_STEP) as *mut __m512i, v);
                }
                tile_step(dst, 64, x.as_ptr().add(kk * 16), kp);
            }
            if let Some(e) = extra {
                let kw = padded_k(e.k);
                for kk in (0..kw).step_by(K_STEP) {
                    tile_step(
                        e.w.as_ptr().add(f0 * kw + kk),
                        kw * 2,
                        e.x.as_ptr().add(kk * 16),
                        kw,
                    );
                }
            }
            store_accumulators(&mut c, nf, rows, out.add(f0), ldo, false);
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// Zeroes the accumulator tiles 4-7.
///
/// # Safety
/// The tile configuration is loaded.
#[inline(always)]
unsafe fn zero_accumulators() {
    // SAFETY: as the caller vouched.
    unsafe {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            options(nostack)
        )
    };
}

/// One step of `k` for a 32x32 block: weight tiles from `a` and `a + 16` rows of
/// `a_stride` bytes, row tiles from the pair rows at `b` and `b + 16 * kp` values.
///
/// # Safety
/// The tile configuration is loaded; all four tiles lie in readable memory.
#[inline(always)]
unsafe fn tile_step(a: *const u16, a_stride: usize, b: *const u16, kp: usize) {
    // SAFETY: as the caller vouched.
    unsafe {
        asm!(
            "tileloadd tmm0, [{a0} + {sa}*1]",
            "tileloadd tmm1, [{a1} + {sa}*1]",
            "tileloadd tmm2, [{b0} + {sb}*1]",
            "tileloadd tmm3, [{b1} + {sb}*1]",
            "tdpbf16ps tmm4, tmm0, tmm2",
            "tdpbf16ps tmm5, tmm0, tmm3",
            "tdpbf16ps tmm6, tmm1, tmm2",
            "tdpbf16ps tmm7, tmm1, tmm3",
            a0 = in(reg) a,
            a1 = in(reg) a.add(16 * a_stride / 2),
            b0 = in(reg) b,
            b1 = in(reg) b.add(16 * kp),
            sa = in(reg) a_stride,
            sb = in(reg) 64usize,
            options(nostack, readonly)
        )
    };
}

/// Stores the accumulators (features x rows: tmm4 features 0-15 x rows 0-15, tmm5 0-15 x
/// 16-31, tmm6 16-31 x 0-15, tmm7 16-31 x 16-31) through `c` into `out` as rows (added to
/// `out` with `add`).
///
/// # Safety
/// The tile configuration is loaded; `out` holds `nr` rows `ldo` apart with `nf` values.
#[inline(always)]
unsafe fn store_accumulators(
    c: &mut [f32; 1024],
    nf: usize,
    nr: usize,
    out: *mut f32,
    ldo: usize,
    add: bool,
) {
    let cp = c.as_mut_ptr();
    // SAFETY: the four tile stores write the 4 KiB of `c`; `out` as the caller vouched.
    unsafe {
        asm!(
            "tilestored [{c0} + {s}*1], tmm4",
            "tilestored [{c1} + {s}*1], tmm5",
            "tilestored [{c2} + {s}*1], tmm6",
            "tilestored [{c3} + {s}*1], tmm7",
            c0 = in(reg) cp,
            c1 = in(reg) cp.add(16),
            c2 = in(reg) cp.add(16 * ROW_BLOCK),
            c3 = in(reg) cp.add(16 * ROW_BLOCK + 16),
            s = in(reg) ROW_BLOCK * 4,
            options(nostack)
        );
        store_transposed(c, nf, nr, out, ldo, add);
    }
}

/// `out[r * ldo + f] = c[f * 32 + r]` (`+=` with `add`) for `f < nf`, `r < nr`: a 32x32
/// block of results (features x rows) written as rows, 16x16 at a time through registers.
///
/// # Safety
/// AVX-512F; `out` holds `nr` rows `ldo` apart with `nf` values each.
#[target_feature(enable = "avx512f")]
unsafe fn store_transposed(
    c: &[f32; 1024],
    nf: usize,
    nr: usize,
    out: *mut f32,
    ldo: usize,
    add: bool,
) {
    use std::arch::x86_64::*;
    for fh in (0..nf).step_by(16) {
        let mask = ((1u32 << (nf - fh).min(16)) - 1) as u16;
        for rh in (0..nr).step_by(16) {
            let mut v = [_mm512_setzero_si512(); 16];
            for (i, v) in v.iter_mut().enumerate() {
                // SAFETY: `(fh + i) * 32 + rh + 16 <= 1024`.
                *v = unsafe {
                    _mm512_loadu_si512(c.as_ptr().add((fh + i) * ROW_BLOCK + rh) as *const _)
                };
            }
            for (j, t) in transpose16(v).iter().enumerate().take(nr - rh) {
                // SAFETY: row `rh + j < nr`, features `fh..fh + 16` masked to `nf`.
                unsafe {
                    let dst = out.add((rh + j) * ldo + fh);
                    let mut v = _mm512_castsi512_ps(*t);
                    if add {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
                    }
                    _mm512_mask_storeu_ps(dst, mask, v)
                };
            }
        }
    }
}
