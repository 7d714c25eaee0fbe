//! The CPU matmul against a float64 reference over every storage and row count: one row
//! (decode gemv), a few rows (batched decode) and many (prefill), with odd feature counts and
//! widths so that every register-block edge of the SIMD kernels (AVX-512 or AVX2, whichever
//! this CPU runs) is exercised. Inputs are random; the output buffer is poisoned with NaN.

use dlp_engine::cpu::{CpuBackend, CpuOptions};
use dlp_engine::tensor::{HostTensor, Packed, PackedKind};
use dlp_engine::Backend;
use half::f16;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() % 20_000) as f32 / 10_000.0 - 1.0
    }
}

/// Random packed rows of `kind` with sane scales (random bytes could make an f16 inf/NaN).
fn random_packed(kind: PackedKind, n: usize, k: usize, rng: &mut Rng) -> Packed {
    let mut bytes: Vec<u8> = (0..n * kind.row_bytes(k))
        .map(|_| rng.next() as u8)
        .collect();
    let (per, bsize) = kind.block();
    if !kind.has_block_kernels() && per > 1 {
        // Q5 and k-quants: random blocks, each drawn again until its values are finite and
        // small (their f16 scales sit at several places in the block).
        let mut vals = vec![0f32; per];
        for b in bytes.chunks_exact_mut(bsize) {
            loop {
                b.iter_mut().for_each(|v| *v = rng.next() as u8);
                kind.dequantize(b, &mut vals);
                if vals.iter().all(|v| v.is_finite() && v.abs() <= 4.0) {
                    break;
                }
            }
        }
    } else if per == 32 {
        for b in bytes.chunks_exact_mut(bsize) {
            let d = 0.005 + 0.01 * rng.f().abs();
            b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
            if kind == PackedKind::Q4_1 {
                b[2..4].copy_from_slice(&f16::from_f32(0.05 * rng.f()).to_le_bytes());
            }
        }
    } else {
        for c in bytes.chunks_exact_mut(2) {
            let v = rng.f();
            let b = if kind == PackedKind::F16 {
                f16::from_f32(v).to_le_bytes()
            } else {
                half::bf16::from_f32(v).to_le_bytes()
            };
            c.copy_from_slice(&b);
        }
    }
    Packed { kind, bytes }
}

#[test]
fn matmul_matches_f64_reference() {
    let cases = run_cases(
        &CpuBackend::new(),
        &[1, 2, 3, 4, 5, 9, 16, 17, 33, 70],
        |v| v,
    );
    println!("{cases} matmul cases within 1e-5 of the float64 reference");
}

/// `--cpu-amx`: several rows on the AMX tile unit against the float64 sum of the same values
/// rounded to bf16 (products of bf16 are exact in f32; only the f32 sums differ), so the
/// kernel's indexing is held to the f32 bound and only the documented rounding is allowed.
#[test]
fn amx_matmul_matches_bf16_reference() {
    if !dlp_engine::cpu::amx_available() {
        return dlp_skip::skip(dlp_skip::kind::AMX, "this CPU or OS has no AMX-BF16", None);
    }
    let be = CpuBackend::with_options(CpuOptions {
        amx: true,
        ..Default::default()
    });
    let bf = |v: f32| half::bf16::from_f32(v).to_f32();
    // Fewer rows than `AMX_MIN_ROWS` stay on the f32 kernels.
    assert_eq!(dlp_engine::cpu::AMX_MIN_ROWS, 9);
    let cases = run_cases(&be, &[9, 16, 17, 32, 33, 70], bf);
    println!("{cases} AMX matmul cases within 1e-5 of the float64 sum of bf16 values");
}

/// Every storage kind and shape at each of `row_counts`, against the float64 reference of
/// `round`ed inputs and weights; returns the number of cases.
fn run_cases(be: &CpuBackend, row_counts: &[usize], round: fn(f32) -> f32) -> usize {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let kinds = std::iter::once(None).chain(PackedKind::ALL.map(Some));
    let mut cases = 0;
    for kind in kinds {
        for (n, k) in [
            (1, 32),
            (5, 64),
            (67, 96),
            (130, 608),
            (33, 37),
            (19, 256),
            (70, 768),
            (9, 2304),
        ] {
            if kind.is_some_and(|kd| k % kd.block().0 != 0) {
                continue;
            }
            let w = match kind {
                None => HostTensor::new(vec![n, k], (0..n * k).map(|_| rng.f()).collect()),
                Some(kd) => HostTensor::packed(n, k, random_packed(kd, n, k, &mut rng)),
            };
            let dense: Vec<f32> = match &w.packed {
                None => w.data.clone(),
                Some(p) => {
                    let mut out = vec![0f32; n * k];
                    p.kind.dequantize(&p.bytes, &mut out);
                    out
                }
            };
            let bias: Vec<f32> = (0..n).map(|_| rng.f()).collect();
            let wt = be.upload_weight(&w).unwrap();
            let dense: Vec<f32> = dense.into_iter().map(round).collect();
            for &rows in row_counts {
                let id = format!("{kind:?} n={n} k={k} rows={rows}");
                let x: Vec<f32> = (0..rows * k).map(|_| rng.f()).collect();
                let xb = be.upload(&x).unwrap();
                let mut out = be.upload(&vec![f32::NAN; rows * n]).unwrap();
                be.matmul(&xb, &wt, Some(&bias), rows, k, n, &mut out)
                    .unwrap();
                let got = be.download(&out, rows * n).unwrap();
                let x: Vec<f32> = x.into_iter().map(round).collect();
                for r in 0..rows {
                    for f in 0..n {
                        let (xr, wf) = (&x[r * k..(r + 1) * k], &dense[f * k..(f + 1) * k]);
                        let want: f64 = bias[f] as f64
                            + xr.iter()
                                .zip(wf)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum::<f64>();
                        let scale: f64 = bias[f].abs() as f64
                            + xr.iter()
                                .zip(wf)
                                .map(|(a, b)| (a * b).abs() as f64)
                                .sum::<f64>();
                        let g = got[r * n + f] as f64;
                        assert!(g.is_finite(), "{id}: out[{r}, {f}] = {g}");
                        assert!(
                            (g - want).abs() <= 1e-5 * scale.max(1e-3),
                            "{id}: out[{r}, {f}] = {g}, want {want}"
                        );
                    }
                }
                cases += 1;
            }
        }
    }
    cases
}
