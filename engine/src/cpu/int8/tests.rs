//! The int8 kernels against float64 dot products, on odd shapes, with every kernel set this
//! CPU has (run by `scripts/test.sh` with and without `DLP_CPU_NO_AVX512`, which decides the
//! set [`Kernels::detect`] picks for the matmul tests).

use super::super::packed_dot::xorshift;
use super::*;

/// Uniform in [-1, 1).
fn uniform(rnd: &mut impl FnMut() -> u64) -> f32 {
    (rnd() % 2_000_000) as f32 / 1e6 - 1.0
}

/// Every kernel set the CPU can run, whatever `DLP_CPU_NO_AVX512` says.
fn kernel_sets() -> Vec<Kernels> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut sets = vec![Kernels::Portable];
    #[cfg(target_arch = "x86_64")]
    if super::super::packed_dot::has_avx2() {
        sets.push(Kernels::Avx2);
        if is_x86_feature_detected!("avxvnni") {
            sets.push(Kernels::AvxVnni);
        }
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
            sets.push(Kernels::Avx512Vnni);
        }
    }
    sets
}

/// `n` random weight rows of `k` values in `kind`, with sane scales (random bytes could make
/// an f16 inf or NaN); some blocks' scales are zero.
fn random_rows(kind: PackedKind, n: usize, k: usize, rnd: &mut impl FnMut() -> u64) -> Vec<u8> {
    let bsize = kind.block().1;
    let mut bytes: Vec<u8> = (0..n * kind.row_bytes(k)).map(|_| rnd() as u8).collect();
    for b in bytes.chunks_exact_mut(bsize) {
        let d = if rnd().is_multiple_of(17) {
            0.0
        } else {
            uniform(rnd) * 0.02
        };
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        if kind == PackedKind::Q4_1 {
            b[2..4].copy_from_slice(&f16::from_f32(uniform(rnd) * 0.1).to_le_bytes());
        }
    }
    bytes
}

/// Random activations with blocks of very different sizes (and an all-zero block), as
/// hidden states have.
fn random_x(len: usize, rnd: &mut impl FnMut() -> u64) -> Vec<f32> {
    let mut x: Vec<f32> = (0..len).map(|_| uniform(rnd)).collect();
    for (i, b) in x.chunks_mut(QK).enumerate() {
        let scale = [1.0, 30.0, 1e-3, 0.0][i % 4];
        b.iter_mut().for_each(|v| *v *= scale);
    }
    x
}

const KINDS: [PackedKind; 3] = [PackedKind::Q4_0, PackedKind::Q4_1, PackedKind::Q8_0];

/// Block counts per row: one block, odd counts (the four-block steps' remainders), SmolLM2's
/// 576 and 1536 columns, and more than one run of Q4 minimums (`MIN_RUN` = 64 blocks).
const BLOCKS: [usize; 8] = [1, 3, 7, 13, 18, 48, 64, 67];

#[test]
fn quantize_is_within_half_a_step() {
    let mut rnd = xorshift(0x51ed_270b_2746_0f31);
    for &nb in &BLOCKS {
        let k = nb * QK;
        let x = random_x(3 * k, &mut rnd);
        let mut q = Q8Rows::default();
        q.quantize(&x, 3, k);
        for r in 0..3 {
            let row = q.row(r);
            for (i, xb) in x[r * k..(r + 1) * k].chunks(QK).enumerate() {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert_eq!(row.d[i], amax / 127.0, "row {r} block {i}: scale");
                let codes = &row.qs[i * QK..(i + 1) * QK];
                for (v, &c) in xb.iter().zip(codes) {
                    assert!(c >= -127, "code {c}: -128 has no positive twin");
                    let back = c as f32 * row.d[i];
                    assert!(
                        (back - v).abs() <= 0.5001 * row.d[i],
                        "row {r} block {i}: {v} came back as {back}"
                    );
                }
                let sum: i32 = codes.iter().map(|&c| c as i32).sum();
                assert_eq!(row.s[i], row.d[i] * sum as f32, "row {r} block {i}: sum");
            }
        }
    }
}

/// Each kernel set against the float64 dot of the dequantised weights with the dequantised
/// activation codes (the integer part is exact; only f32 block sums differ), and against the
/// f32 activations within the quantisation's own bound.
#[test]
fn dot_matches_float64() {
    let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
    for kernels in kernel_sets() {
        for kind in KINDS {
            for &nb in &BLOCKS {
                let k = nb * QK;
                let row = random_rows(kind, 1, k, &mut rnd);
                let x = random_x(k, &mut rnd);
                let mut q = Q8Rows::default();
                q.quantize(&x, 1, k);
                let xq = q.row(0);
                let mut w = vec![0f32; k];
                kind.dequantize(&row, &mut w);
                let got = dot_rows::<1>(kernels, kind, &[xq], &row)[0] as f64;

                let (mut want_q, mut scale, mut want_x, mut bound) = (0f64, 0f64, 0f64, 0f64);
                for (i, (wb, xb)) in w.chunks(QK).zip(x.chunks(QK)).enumerate() {
                    let mut wabs = 0f64;
                    for j in 0..QK {
                        let xv = xq.qs[i * QK + j] as f64 * xq.d[i] as f64;
                        want_q += wb[j] as f64 * xv;
                        scale += (wb[j] as f64 * xv).abs();
                        want_x += wb[j] as f64 * xb[j] as f64;
                        wabs += (wb[j] as f64).abs();
                    }
                    bound += wabs * xq.d[i] as f64 * 0.5001;
                }
                let name = format!("{} {kind:?} k={k}", kernels.name());
                assert!(
                    (got - want_q).abs() <= 1e-5 * scale + 1e-30,
                    "{name}: {got} vs {want_q} (quantised activations)"
                );
                assert!(
                    (got - want_x).abs() <= bound + 1e-5 * scale + 1e-30,
                    "{name}: {got} vs {want_x} (f32 activations), bound {bound}"
                );
            }
        }
    }
}

/// Every set gives the same integer sums: results agree to f32 summation order.
#[test]
fn kernel_sets_agree() {
    let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
    let sets = kernel_sets();
    for kind in KINDS {
        let k = 18 * QK;
        let row = random_rows(kind, 1, k, &mut rnd);
        let x = random_x(4 * k, &mut rnd);
        let mut q = Q8Rows::default();
        q.quantize(&x, 4, k);
        let rows = [q.row(0), q.row(1), q.row(2), q.row(3)];
        let base = dot_rows::<4>(Kernels::Portable, kind, &rows, &row);
        for &set in &sets {
            let got = dot_rows::<4>(set, kind, &rows, &row);
            for r in 0..4 {
                let one = dot_rows::<1>(set, kind, &[rows[r]], &row)[0];
                assert_eq!(
                    got[r],
                    one,
                    "{} {kind:?}: row {r} alone differs",
                    set.name()
                );
                let tol = 1e-5 * base[r].abs().max(1e-3);
                assert!(
                    (got[r] - base[r]).abs() <= tol,
                    "{} {kind:?} row {r}: {} vs portable {}",
                    set.name(),
                    got[r],
                    base[r]
                );
            }
        }
    }
}

/// The matmul (the kernel set `detect` picks) on odd shapes, output poisoned first: every
/// value written, each equal to the one-row dot.
#[test]
fn matmul_matches_row_dots() {
    let mut rnd = xorshift(0x0123_4567_89ab_cdef);
    for kind in KINDS {
        for &(rows, n, nb) in &[
            (1, 1, 1),
            (1, 65, 18),
            (2, 7, 3),
            (3, 130, 7),
            (5, 64, 13),
            (9, 33, 48),
            (8, 17, 67),
            (15, 9, 13),
            (22, 5, 7),
        ] {
            let k = nb * QK;
            let bytes = random_rows(kind, n, k, &mut rnd);
            let x = random_x(rows * k, &mut rnd);
            let w = CpuWeight {
                rows: n,
                cols: k,
                data: Vec::new(),
                packed: Some(Packed { kind, bytes }),
            };
            let p = w.packed.as_ref().unwrap();
            let mut out = vec![f32::NAN; rows * n];
            matmul(&x, &w, p, rows, &mut out);
            let mut q = Q8Rows::default();
            q.quantize(&x, rows, k);
            let rb = kind.row_bytes(k);
            for r in 0..rows {
                for j in 0..n {
                    let want = dot_row(kind, q.row(r), &p.bytes[j * rb..(j + 1) * rb]);
                    let got = out[r * n + j];
                    assert!(
                        got == want,
                        "{kind:?} rows={rows} n={n} k={k}: out[{r}, {j}] = {got}, row dot {want}"
                    );
                }
            }
        }
    }
}

/// ggml's reference quantiser: scale `amax / 127` in f16, codes rounded half away from zero.
#[test]
fn quantize_q8_0_as_ggml() {
    let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.25).collect();
    x[40..].iter_mut().for_each(|v| *v = 0.0);
    // A tie: 0.5 steps of d = 127 / 127 = 1 round away from zero.
    x[33] = 127.0;
    x[34] = -2.5;
    let bytes = quantize_q8_0(&x);
    assert_eq!(bytes.len(), 68);
    let d0 = f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
    assert_eq!(d0, f16::from_f32(5.0 / 127.0).to_f32());
    assert_eq!(
        bytes[2] as i8, -127,
        "the block's largest magnitude codes as -127"
    );
    assert_eq!(f16::from_le_bytes([bytes[34], bytes[35]]).to_f32(), 1.0);
    assert_eq!(bytes[36 + 2] as i8, -3, "-2.5 rounds away from zero");
    let mut back = vec![0f32; 64];
    PackedKind::Q8_0.dequantize(&bytes, &mut back);
    for (i, (a, b)) in x.iter().zip(&back).enumerate() {
        let d = if i < 32 { d0 } else { 1.0 };
        assert!((a - b).abs() <= 0.51 * d, "value {i}: {a} came back as {b}");
    }
}

/// A block of values far below any other (amax under 1e-30, where `127 / amax` would overflow
/// to infinity) quantises to zero codes instead of wrapped garbage.
#[test]
fn vanishing_blocks_quantise_to_zero() {
    let mut x = vec![1e-38f32; 2 * QK];
    x[QK..].iter_mut().for_each(|v| *v = 0.5);
    let mut q = Q8Rows::default();
    q.quantize(&x, 1, 2 * QK);
    let row = q.row(0);
    assert!(row.qs[..QK].iter().all(|&c| c == 0), "{:?}", &row.qs[..QK]);
    assert_eq!(row.s[0], 0.0);
    assert!(row.qs[QK..].iter().all(|&c| c == 127));
}
