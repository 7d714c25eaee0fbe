//! `logits`: final RMSNorm and lm_head, only for the rows whose logits are wanted.

use super::{check_len, rms_norm::rms_norm, CpuWeight};
use crate::error::Result;

/// `out[i, :] = rms_norm(x[rows[i]]) @ lm_head^T`; `scratch` holds the normalised rows; `opts`
/// pick the matmul kernels ([`super::CpuOptions`]).
#[allow(clippy::too_many_arguments)]
pub fn logits(
    x: &[f32],
    norm: &[f32],
    eps: f32,
    lm_head: &CpuWeight,
    rows: &[u32],
    hidden: usize,
    vocab: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    opts: super::CpuOptions,
) -> Result<()> {
    let n = rows.len();
    check_len("logits", "out", out.len(), n * vocab)?;
    if lm_head.rows != vocab || lm_head.cols != hidden {
        return Err(crate::error::Error::invalid(format!(
            "logits: lm_head is [{}, {}], expected [{vocab}, {hidden}]",
            lm_head.rows, lm_head.cols
        )));
    }
    scratch.resize(n * hidden, 0.0);
    for (i, &r) in rows.iter().enumerate() {
        let r = r as usize;
        check_len("logits", "x", x.len(), (r + 1) * hidden)?;
        rms_norm(
            &x[r * hidden..(r + 1) * hidden],
            norm,
            hidden,
            1,
            eps,
            &mut scratch[i * hidden..(i + 1) * hidden],
        );
    }
    super::matmul::matmul(&scratch[..], lm_head, None, n, &mut out[..n * vocab], opts);
    Ok(())
}
