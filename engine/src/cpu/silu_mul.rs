//! `silu_mul`: the SwiGLU activation, `silu(gate) * up`.

use rayon::prelude::*;

/// `out[i] = gate[i] * sigmoid(gate[i]) * up[i]`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let f = |(o, (g, u)): (&mut f32, (&f32, &f32))| *o = g / (1.0 + (-g).exp()) * u;
    if out.len() < 1 << 14 {
        out.iter_mut().zip(gate.iter().zip(up)).for_each(f);
    } else {
        out.par_iter_mut()
            .zip(gate.par_iter().zip(up.par_iter()))
            .for_each(f);
    }
}
