//! `scale`: every value times one factor, in place (Gemma's embedding scale).

/// `x[i] *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    x.iter_mut().for_each(|v| *v *= s);
}
