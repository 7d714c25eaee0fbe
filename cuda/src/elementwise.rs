//! The embedding rows' gather, the gated activations (`silu_mul`, `gelu_mul`: one launch
//! shape, two kernels) and the ungated ones (`gelu`, `gelu_erf`, `relu_sq`, and `xielu` with
//! its constants), the in-place ones (`scale`, `softcap`, `clamp`), the row-wise norms
//! (`rms_norm`, `center`, the fused `add_rms_norm`), the residual `add` and `add_bias`, with
//! the CPU reference's checks.

use cudarc::driver::{CudaFunction, CudaSlice, PushKernelArg};
use dlp_engine::{Error, Result};

use std::sync::atomic::AtomicU64;

use crate::counts::LaunchCounters;
use crate::launch::{cfg, check_len, grid_1d, int, BLOCK};
use crate::{CudaBackend, CudaStep, CudaWeight};

impl CudaBackend {
    /// `embedding` ([`dlp_engine::Backend::embedding`]): one block per token, each copying
    /// its table row (f32, or bf16 widened) into `out`, after the CPU reference's checks.
    pub(crate) fn embedding_impl(
        &self,
        table: &CudaWeight,
        step: &CudaStep,
        n_tokens: usize,
        dim: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("embedding", "out", out.len(), n_tokens * dim)?;
        if table.cols != dim {
            return Err(Error::invalid(format!(
                "embedding: table has {} columns, expected {dim}",
                table.cols
            )));
        }
        check_len(
            "embedding",
            "token_ids",
            step.plan.token_ids.len(),
            n_tokens,
        )?;
        if let Some(&id) = step.plan.token_ids[..n_tokens]
            .iter()
            .find(|&&id| id as usize >= table.rows)
        {
            return Err(Error::invalid(format!(
                "token id {id} is outside the vocabulary (size {})",
                table.rows
            )));
        }
        if n_tokens == 0 {
            return Ok(());
        }
        let d = int("embedding", dim)?;
        let c = cfg((n_tokens as u32, 1, 1), BLOCK, 0);
        let ids = step.token_ids();
        if let Some(t) = &table.bf16 {
            let mut a = self.args(&self.k.embedding_bf16);
            a.arg(t).arg(&ids).arg(&d).arg(out);
            return self.go("embedding", a, c);
        }
        let mut a = self.args(&self.k.embedding);
        a.arg(&table.data).arg(&ids).arg(&d).arg(out);
        self.go("embedding", a, c)
    }

    /// `out[i] = act(gate[i]) * up[i]` for `n` values by kernel `f` (`op`: `silu_mul` or
    /// `gelu_mul`, whose parameters are `(gate, up, n, out)`); `count`: the launch counter to
    /// bump, after the checks, where a launch is made.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gated_impl(
        &self,
        op: &str,
        f: &CudaFunction,
        count: Option<&AtomicU64>,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        n: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len(op, "gate", gate.len(), n)?;
        check_len(op, "up", up.len(), n)?;
        check_len(op, "out", out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let nn = int(op, n)?;
        if let Some(c) = count {
            LaunchCounters::bump(c);
        }
        let mut a = self.args(f);
        a.arg(gate).arg(up).arg(&nn).arg(out);
        self.go(op, a, grid_1d(n))
    }

    /// `x[i] = f(x[i], s)` for `n` values: kernel `op(x, s, n)`, `scale` (`x * s`),
    /// `softcap` (`s * tanh(x / s)`) or `clamp` (to `[-s, s]`).
    pub(crate) fn in_place_impl(
        &self,
        op: &'static str,
        f: &CudaFunction,
        x: &mut CudaSlice<f32>,
        s: f32,
        n: usize,
    ) -> Result<()> {
        check_len(op, "x", x.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let nn = int(op, n)?;
        let mut a = self.args(f);
        a.arg(x).arg(&s).arg(&nn);
        self.go(op, a, grid_1d(n))
    }

    /// `rms_norm` ([`dlp_engine::Backend::rms_norm`]): one block per row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rms_norm_impl(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
        w_rows: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        dlp_engine::backend::check_norm_weight_rows(rows, w_rows)?;
        check_len("rms_norm", "x", x.len(), rows * dim)?;
        check_len("rms_norm", "out", out.len(), rows * dim)?;
        check_len("rms_norm", "w", w.len(), w_rows * dim)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let (d, wr) = (int("rms_norm", dim)?, int("rms_norm", w_rows)?);
        let mut a = self.args(&self.k.rms_norm);
        a.arg(x).arg(w).arg(&d).arg(&wr).arg(&eps).arg(out);
        let block = self.row_block(rows);
        self.go("rms_norm", a, cfg((rows as u32, 1, 1), block, 0))
    }

    /// `center` ([`dlp_engine::Backend::center`]): one block per row, as `rms_norm`.
    pub(crate) fn center_impl(
        &self,
        x: &mut CudaSlice<f32>,
        rows: usize,
        dim: usize,
    ) -> Result<()> {
        check_len("center", "x", x.len(), rows * dim)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let d = int("center", dim)?;
        let mut a = self.args(&self.k.center);
        a.arg(x).arg(&d);
        let block = self.row_block(rows);
        self.go("center", a, cfg((rows as u32, 1, 1), block, 0))
    }

    /// The fused `add_rms_norm` ([`dlp_engine::Backend::add_rms_norm`]): one block per row,
    /// `rms_norm`'s block size (the same sums in the same order).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_rms_norm_impl(
        &self,
        x: &mut CudaSlice<f32>,
        y: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("add_rms_norm", "x", x.len(), rows * dim)?;
        check_len("add_rms_norm", "y", y.len(), rows * dim)?;
        check_len("add_rms_norm", "out", out.len(), rows * dim)?;
        check_len("add_rms_norm", "w", w.len(), dim)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let d = int("add_rms_norm", dim)?;
        let mut a = self.args(&self.k.add_rms_norm);
        a.arg(x).arg(y).arg(w).arg(&d).arg(&eps).arg(out);
        let block = self.row_block(rows);
        self.go("add_rms_norm", a, cfg((rows as u32, 1, 1), block, 0))
    }

    /// `add` ([`dlp_engine::Backend::add`]): `dst[i] += src[i]`.
    pub(crate) fn add_impl(
        &self,
        dst: &mut CudaSlice<f32>,
        src: &CudaSlice<f32>,
        n: usize,
    ) -> Result<()> {
        check_len("add", "dst", dst.len(), n)?;
        check_len("add", "src", src.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let nn = int("add", n)?;
        let mut a = self.args(&self.k.add);
        a.arg(dst).arg(src).arg(&nn);
        self.go("add", a, grid_1d(n))
    }

    /// `out[i] = f(x[i])` for `n` values by kernel `f` (`op`: `gelu`, as `gelu_mul` computes
    /// it, `gelu_erf`, `relu_sq`, or `xielu` with its constants `c`, empty for the others;
    /// parameters `(x, n, c..., out)`).
    pub(crate) fn unary_impl(
        &self,
        op: &'static str,
        f: &CudaFunction,
        x: &CudaSlice<f32>,
        n: usize,
        c: &[f32],
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len(op, "x", x.len(), n)?;
        check_len(op, "out", out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let nn = int(op, n)?;
        let mut a = self.args(f);
        a.arg(x).arg(&nn);
        for v in c {
            a.arg(v);
        }
        a.arg(out);
        self.go(op, a, grid_1d(n))
    }

    /// `add_bias` ([`dlp_engine::Backend::add_bias`]): `x[r, :] += bias` over `rows * dim`
    /// values, by the kernel that adds a linear's bias (`bias_add`, in matmul.cu).
    pub(crate) fn add_bias_impl(
        &self,
        x: &mut CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
    ) -> Result<()> {
        check_len("add_bias", "x", x.len(), rows * dim)?;
        check_len("add_bias", "bias", bias.len(), dim)?;
        let n = rows * dim;
        if n == 0 {
            return Ok(());
        }
        // matmul.cu's `bias_add`, which adds a linear's bias after cuBLAS.
        self.bias_add(x, bias, rows, dim)
    }
}
