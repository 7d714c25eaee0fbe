//! The default compositions of [`Backend`]'s fused methods (`rope_qk`, `add_rms_norm`,
//! `rope_attention`, `linears`, `linears_silu_mul`, `linear_add_rms_norm`) from its plain ops:
//! each backend's path where it does not fuse them, and the reference the fused ones match.

use super::{AttnShape, Backend, LinearJob};
use crate::error::{Error, Result};

/// [`Backend::rope_qk`] as two [`Backend::rope`] calls: the default, and a backend's path when
/// it does not fuse them.
#[allow(clippy::too_many_arguments)]
pub fn rope_each<B: Backend>(
    b: &B,
    q: &mut B::Buf,
    k: &mut B::Buf,
    cos_sin: &B::Buf,
    step: &B::Step,
    n_tokens: usize,
    (n_heads, n_kv_heads): (usize, usize),
    head_dim: usize,
) -> Result<()> {
    b.rope(q, cos_sin, step, n_tokens, n_heads, head_dim)?;
    b.rope(k, cos_sin, step, n_tokens, n_kv_heads, head_dim)
}

/// [`Backend::add_rms_norm`] as [`Backend::add`] then [`Backend::rms_norm`]: the default, and a
/// backend's path when it does not fuse them.
#[allow(clippy::too_many_arguments)]
pub fn add_then_rms_norm<B: Backend>(
    b: &B,
    x: &mut B::Buf,
    y: &B::Buf,
    w: &B::Buf,
    rows: usize,
    dim: usize,
    eps: f32,
    out: &mut B::Buf,
) -> Result<()> {
    b.add(x, y, rows * dim)?;
    b.rms_norm(x, w, rows, dim, 1, eps, out)
}

/// [`Backend::rope_attention`] as [`Backend::rope_qk`] then [`Backend::attention`]: the
/// default, and a backend's path when it does not fuse them.
#[allow(clippy::too_many_arguments)]
pub fn rope_then_attention<B: Backend>(
    b: &B,
    q: &mut B::Buf,
    k: &mut B::Buf,
    v: &B::Buf,
    cos_sin: &B::Buf,
    k_cache: &mut B::Buf,
    v_cache: &mut B::Buf,
    step: &B::Step,
    shape: AttnShape,
    out: &mut B::Buf,
) -> Result<()> {
    let heads = (shape.n_heads, shape.n_kv_heads);
    b.rope_qk(q, k, cos_sin, step, shape.n_tokens, heads, shape.head_dim)?;
    b.attention(q, k, v, k_cache, v_cache, step, shape, out)
}

/// [`Backend::linears`] op by op: for each job, `matmul`, then `lora_shrink` and
/// `lora_expand` when it has LoRA.
pub fn linears_each<B: Backend>(
    b: &B,
    x: &B::Buf,
    n_tokens: usize,
    n_in: usize,
    step: &B::Step,
    jobs: &mut [LinearJob<'_, B>],
    u: &mut B::Buf,
) -> Result<()> {
    for j in jobs.iter_mut() {
        b.matmul(x, j.w, j.bias, n_tokens, n_in, j.n_out, j.out)?;
        if let Some(l) = j.lora {
            b.lora_shrink(x, l, step, n_tokens, u)?;
            b.lora_expand(u, l, step, n_tokens, j.out)?;
        }
    }
    Ok(())
}

/// [`Backend::linears_silu_mul`] as [`Backend::linears`] on the gate/up pair, then
/// [`Backend::silu_mul`] of their outputs into `act`: the default, and a backend's path when
/// it does not fold them.
#[allow(clippy::too_many_arguments)]
pub fn linears_then_silu_mul<B: Backend>(
    b: &B,
    x: &B::Buf,
    n_tokens: usize,
    n_in: usize,
    step: &B::Step,
    gate_up: &mut [LinearJob<'_, B>; 2],
    u: &mut B::Buf,
    act: &mut B::Buf,
) -> Result<()> {
    let n = gate_silu_width(gate_up)?;
    b.linears(x, n_tokens, n_in, step, gate_up, u)?;
    b.silu_mul(gate_up[0].out, gate_up[1].out, n_tokens * n, act)
}

/// Which residual add of a decoder layer a [`Backend::linear_add_rms_norm`] call is: after the
/// attention block (the o projection, then the FFN's norm) or after the feed-forward block
/// (the down projection, then the next layer's attention norm). A backend that keeps state per
/// call (CUDA's counters of `norm-in-matvec`) keeps the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualSite {
    /// After the attention block's output projection.
    Attention,
    /// After the feed-forward block's down projection.
    FeedForward,
}

/// The residual add and RMSNorm that read a linear layer's output `y` (`[n_tokens, dim]`,
/// `dim` = the layer's `n_out`): `residual += y`, then `out = rms_norm(residual) * w`, as
/// [`Backend::add_rms_norm`] computes them.
pub struct ResidualNorm<'a, B: Backend> {
    /// The residual stream, `[n_tokens, dim]`, updated in place.
    pub residual: &'a mut B::Buf,
    /// The norm's weight, `[dim]`.
    pub w: &'a B::Buf,
    /// The norm's epsilon.
    pub eps: f32,
    /// The normed rows, `[n_tokens, dim]`.
    pub out: &'a mut B::Buf,
    /// Which residual add of the layer this is.
    pub site: ResidualSite,
}

/// [`Backend::linear_add_rms_norm`] as [`Backend::linears`] on the one job, then
/// [`Backend::add_rms_norm`] of its output: the default, and a backend's path when it does not
/// fold them.
#[allow(clippy::too_many_arguments)]
pub fn linear_then_add_rms_norm<B: Backend>(
    b: &B,
    x: &B::Buf,
    n_tokens: usize,
    n_in: usize,
    step: &B::Step,
    job: &mut [LinearJob<'_, B>; 1],
    u: &mut B::Buf,
    norm: ResidualNorm<'_, B>,
) -> Result<()> {
    b.linears(x, n_tokens, n_in, step, job, u)?;
    let dim = job[0].n_out;
    b.add_rms_norm(
        norm.residual,
        job[0].out,
        norm.w,
        n_tokens,
        dim,
        norm.eps,
        norm.out,
    )
}

/// The width `n` of a [`Backend::linears_silu_mul`] pair: both jobs' `n_out`, else an error.
pub fn gate_silu_width<B: Backend>(gate_up: &[LinearJob<'_, B>; 2]) -> Result<usize> {
    let (g, u) = (gate_up[0].n_out, gate_up[1].n_out);
    if g != u {
        return Err(Error::invalid(format!(
            "linears_silu_mul: gate is {g} wide, up {u}: silu(gate) * up needs them equal"
        )));
    }
    Ok(g)
}
