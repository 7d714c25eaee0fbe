//! The `exp`s' arithmetic: `x = n ln2 + r` with ln 2 split in two (Cephes, [`LN2_HI`],
//! [`LN2_LO`]; the sampler's `exp_neg` too, on every CPU), then, in the x86 vector
//! kernels (`avx512::exp16`, `avx2::exp8`), `exp(r)` by its Taylor polynomial of degree 7,
//! coefficients 1/7!, 1/6!, ..., 1/0! in Horner order.

pub const LN2_HI: f32 = 0.693_359_4;
pub const LN2_LO: f32 = -2.121_944_4e-4;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the x86 kernels' only
pub const TAYLOR: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// The vector `exp`s' common check: `exp` of `lanes` values at a time by `f(x, y)` against
/// float64 on a dense grid over the normal range, each within 3 ulp of f32 (relative);
/// returns the worst relative error.
#[cfg(test)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub fn worst_on_grid(name: &str, lanes: usize, f: impl Fn(&[f32], &mut [f32])) -> f64 {
    let xs: Vec<f32> = (0..200_000)
        .map(|i| -87.0 + 175.0 * i as f32 / 200_000.0)
        .chain([0.0, -0.0, 1e-8, -1e-8, 88.7, -87.3])
        .collect();
    let mut worst = 0f64;
    let (mut x, mut y) = (vec![0f32; lanes], vec![0f32; lanes]);
    for chunk in xs.chunks(lanes) {
        x.fill(0.0);
        x[..chunk.len()].copy_from_slice(chunk);
        f(&x, &mut y);
        for (x, y) in x.iter().zip(&y) {
            let want = (*x as f64).exp();
            let rel = (*y as f64 - want).abs() / want;
            assert!(
                rel <= 3.0 * f32::EPSILON as f64,
                "{name}({x}) = {y}, float64 {want}"
            );
            worst = worst.max(rel);
        }
    }
    worst
}
