//! The elementwise unary ops' loop (`gelu_erf`, `relu_sq`, `xielu`; WGSL's `unary.wgsl`): `out[i] =
//! f(x[i])`, split over the thread pool past a length where that pays.

use rayon::prelude::*;

/// Below this many values one thread is faster than waking the pool.
const PAR_MIN: usize = 1 << 14;

/// `out[i] = f(x[i])` for every `i` of `out` (`x` at least as long).
pub(super) fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let f = |(o, &x): (&mut f32, &f32)| *o = f(x);
    if out.len() < PAR_MIN {
        out.iter_mut().zip(x).for_each(f);
    } else {
        out.par_iter_mut().zip(x.par_iter()).for_each(f);
    }
}
