//! CPU matmul on packed vs f32 weights at SmolLM2's shapes, and at a 2048-wide shape (Qwen3
//! 1.7B's) with the k-quants: decode (1 row), a 4-row and a 32-row batch, and prefill (256
//! rows). Prints time per call and the weight bytes each call streams, so the figures can be
//! read against memory bandwidth. Run: `cargo run --release -p dlp-engine --example
//! matmul_bench`.

use std::time::Instant;

use dlp_engine::cpu::CpuBackend;
use dlp_engine::tensor::{HostTensor, Packed, PackedKind};
use dlp_engine::Backend;

fn quantize_q4_1(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in v.chunks(32) {
        let (lo, hi) = b
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        let d = (hi - lo) / 15.0;
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(half::f16::from_f32(lo).to_le_bytes());
        let q = |x: f32| {
            if d > 0.0 {
                ((x - lo) / d).round().clamp(0.0, 15.0) as u8
            } else {
                0
            }
        };
        out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
    }
    out
}

/// Random blocks of `kind` (a k-quant) for `n` rows of `k`: the timing needs valid blocks, not
/// a quantisation of particular weights; each block is drawn until its values are small.
fn random_blocks(kind: PackedKind, n: usize, k: usize, rnd: &mut impl FnMut() -> f32) -> Vec<u8> {
    let (per, bsize) = kind.block();
    let mut bytes = vec![0u8; n * kind.row_bytes(k)];
    let mut vals = vec![0f32; per];
    for b in bytes.chunks_exact_mut(bsize) {
        loop {
            b.iter_mut()
                .for_each(|v| *v = ((rnd() + 0.5) * 256.0) as u8);
            kind.dequantize(b, &mut vals);
            if vals.iter().all(|v| v.is_finite() && v.abs() <= 4.0) {
                break;
            }
        }
    }
    bytes
}

fn main() {
    let be = CpuBackend::new();
    let mut seed = 1u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    println!("threads {}", rayon::current_num_threads());
    for (n, k) in [(1536usize, 576usize), (49152, 576), (2048, 2048)] {
        let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
        let f32w = be
            .upload_weight(&HostTensor::new(vec![n, k], w.clone()))
            .unwrap();
        let q8 = be
            .upload_weight(&HostTensor::packed(
                n,
                k,
                Packed {
                    kind: PackedKind::Q8_0,
                    bytes: dlp_engine::cpu::int8::quantize_q8_0(&w),
                },
            ))
            .unwrap();
        let q41 = be
            .upload_weight(&HostTensor::packed(
                n,
                k,
                Packed {
                    kind: PackedKind::Q4_1,
                    bytes: quantize_q4_1(&w),
                },
            ))
            .unwrap();
        // The k-quants where rows are whole blocks of 256.
        let kquants: Vec<(&str, _)> = [PackedKind::Q4_K, PackedKind::Q6_K]
            .into_iter()
            .filter(|_| k % 256 == 0)
            .map(|kind| {
                let packed = Packed {
                    kind,
                    bytes: random_blocks(kind, n, k, &mut rnd),
                };
                let w = be.upload_weight(&HostTensor::packed(n, k, packed)).unwrap();
                (kind.name(), w)
            })
            .collect();
        // `MATMUL_BENCH_ROWS=1,32` limits the row counts (e.g. to profile one case).
        let rows_list: Vec<usize> = std::env::var("MATMUL_BENCH_ROWS")
            .ok()
            .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 4, 32, 256]);
        for &rows in &rows_list {
            let x = be
                .upload(&(0..rows * k).map(|_| rnd()).collect::<Vec<_>>())
                .unwrap();
            let mut out = be.alloc(rows * n).unwrap();
            let mut line = format!("[{n:>5} x {k}] rows {rows:>3}:");
            let mut kinds = vec![("f32", &f32w), ("Q8_0", &q8), ("Q4_1", &q41)];
            kinds.extend(kquants.iter().map(|(n, w)| (*n, w)));
            for (name, wt) in kinds {
                let iters = (2_000_000_000 / (n * k * rows.max(4))).clamp(3, 2000);
                be.matmul(&x, wt, None, rows, k, n, &mut out).unwrap();
                let t = Instant::now();
                for _ in 0..iters {
                    be.matmul(&x, wt, None, rows, k, n, &mut out).unwrap();
                }
                let s = t.elapsed().as_secs_f64() / iters as f64;
                let gbs = wt.bytes() as f64 / s / 1e9;
                let gflops = 2.0 * (n * k * rows) as f64 / s / 1e9;
                line += &format!(
                    "  {name} {:>8.1} us ({gbs:>5.1} GB/s, {gflops:>5.1} GFLOP/s)",
                    s * 1e6
                );
            }
            println!("{line}");
        }
    }
}
