//! Helpers every case file shares: random inputs, comparisons, the row kernels' block.

use rand::{rngs::StdRng, Rng, SeedableRng};

/// Threads per block of the row and segment kernels (`BLOCK` in launch.rs).
pub const BLOCK: u32 = 256;

/// `v` rounded to bf16 (to nearest even, as the backend stores weights): its value and its
/// bit pattern.
pub fn to_bf16(v: f32) -> (f32, u16) {
    let b = half::bf16::from_f32(v);
    (b.to_f32(), b.to_bits())
}

/// Random values in [-1, 1).
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// The largest |a - b| / (1 + |b|) over the entries where b is not NaN (infinite where a is
/// not finite there).
pub fn worst(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .filter(|(_, b)| !b.is_nan())
        .map(|(a, b)| {
            if a.is_finite() {
                (*a as f64 - b).abs() / (1.0 + b.abs())
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// The bit patterns of `v` (what "bit for bit" compares; NaNs included).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// How many values of `a` and `b` (buffer by buffer) differ in their bits, a value one of
/// them lacks counting as different.
pub fn bits_differ(a: &[Vec<f32>], b: &[Vec<f32>]) -> usize {
    let lens = |v: &[Vec<f32>]| v.iter().map(Vec::len).collect::<Vec<_>>();
    let (la, lb) = (lens(a), lens(b));
    let missing: usize = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| x.abs_diff(*y))
        .sum::<usize>()
        + la.iter()
            .skip(lb.len())
            .chain(lb.iter().skip(la.len()))
            .sum::<usize>();
    let (a, b) = (a.iter().flatten(), b.iter().flatten());
    missing + a.zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count()
}

/// Failures of a test's runs, reported together at the end.
#[derive(Default)]
pub struct Runs {
    ran: usize,
    failures: Vec<String>,
}

impl Runs {
    /// Records run `label`'s result.
    pub fn check(&mut self, label: String, r: Result<(), String>) {
        self.ran += 1;
        if let Err(e) = r {
            self.failures.push(format!("{label}: {e}"));
        }
    }

    /// Panics naming every failed run.
    pub fn finish(self) {
        let (n, ran) = (self.failures.len(), self.ran);
        assert!(
            n == 0,
            "{n} of {ran} runs failed:\n{}",
            self.failures.join("\n")
        );
    }
}
