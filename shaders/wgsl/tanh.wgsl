
// tanh with a small relative error everywhere, for the soft caps (`cap * tanh(x / cap)`):
// WGSL's built-in may carry an absolute error of about 1e-7 near 0, which a large cap
// multiplies. The odd Taylor polynomial to x^11 below |x| = 0.3 (the next term is about 2e-9
// of the value there), `1 - 2 / (exp(2|x|) + 1)` above, clamped at 10 (tanh(10) rounds to 1
// in f32, and exp cannot overflow); a NaN stays NaN (WGSL's min of a NaN is not defined),
// unless the platform's compiler assumes no NaN (fast math) and folds the test away.
fn tanh_f32(x: f32) -> f32 {
    let a = min(abs(x), 10.0);
    let a2 = a * a;
    let p = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0
        + a2 * (62.0 / 2835.0 + a2 * (-1382.0 / 155925.0))))));
    let t = select(1.0 - 2.0 / (exp(2.0 * a) + 1.0), p, a < 0.3);
    return select(sign(x) * t, x, x != x);
}
