//! The bf16 compute mode's tensor-core GEMM: `to_bf16` then cublasGemmEx, x rounded once for
//! the weights that read it, and the bias added after.

use std::ffi::c_void;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, PushKernelArg};
use dlp_engine::backend::LinearJob;
use dlp_engine::Result;

use crate::launch::{check_len, grid_1d, int};
use crate::{err, CudaBackend};

impl CudaBackend {
    /// The bf16 compute mode's GEMMs of weights that read the same `x` (`[rows, k]`, `k` each
    /// weight's columns): `x` rounded to bf16 once (`to_bf16`), then for each job
    /// `out[rows, n] = x @ W^T` by cublasGemmEx (bf16 inputs, f32 output and accumulation,
    /// `CUBLAS_COMPUTE_32F`: tensor cores) and its bias added. The jobs' LoRA is not read.
    pub(crate) fn gemm_bf16_each(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        k: usize,
        jobs: &mut [LinearJob<'_, CudaBackend>],
    ) -> Result<()> {
        let len = rows * k;
        check_len("matmul", "x", x.len(), len)?;
        let mut scratch = self.scratch_bf16.lock().unwrap_or_else(|p| p.into_inner());
        let xb = self.scratch_at_least(&mut scratch, len, "matmul (bf16 input)", || {
            // SAFETY: every value read below is written by `to_bf16` first.
            unsafe { self.stream().alloc::<u16>(len.max(1)) }
                .map_err(|e| err(format!("cuMemAlloc of {len} bf16 values: {e}")))
        })?;
        let nn = int("matmul", len)?;
        let mut a = self.args(&self.k.to_bf16);
        a.arg(x).arg(&nn).arg(&mut *xb);
        self.go("matmul (to bf16)", a, grid_1d(len))?;
        let stream = self.stream();
        let (xp, _g2) = xb.device_ptr(stream);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let blas = self.blas.lock().unwrap_or_else(|p| p.into_inner());
        for j in jobs.iter_mut() {
            let (w, out) = (j.w, &mut *j.out);
            let wb = w
                .bf16
                .as_ref()
                .ok_or_else(|| err("matmul: weight is not bf16"))?;
            let (n, wk) = (w.rows, w.cols);
            if wk != k {
                return Err(err(format!("matmul: a {n}x{wk} weight for {k} inputs")));
            }
            check_len("matmul", "out", out.len(), rows * n)?;
            {
                let (wp, _g1) = wb.device_ptr(stream);
                let (op, _g3) = out.device_ptr_mut(stream);
                // SAFETY: W holds n*k and xb at least rows*k bf16 values, out at least rows*n f32
                // (checked above and by the callers); alpha/beta are host scalars (the default
                // pointer mode).
                unsafe {
                    cudarc::cublas::result::gemm_ex(
                        *blas.handle(),
                        cublasOperation_t::CUBLAS_OP_T,
                        cublasOperation_t::CUBLAS_OP_N,
                        int("matmul", n)?,
                        int("matmul", rows)?,
                        int("matmul", k)?,
                        (&alpha as *const f32).cast::<c_void>(),
                        wp as *const c_void,
                        cudaDataType::CUDA_R_16BF,
                        int("matmul", k)?,
                        xp as *const c_void,
                        cudaDataType::CUDA_R_16BF,
                        int("matmul", k)?,
                        (&beta as *const f32).cast::<c_void>(),
                        op as *mut c_void,
                        cudaDataType::CUDA_R_32F,
                        int("matmul", n)?,
                        cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
                .map_err(|e| {
                    err(format!(
                        "matmul: cublasGemmEx bf16 ({rows}x{k} @ {k}x{n}): {e:?}"
                    ))
                })?;
            } // the buffers' use guards end before the bias is added
            if let Some(b) = j.bias {
                self.bias_add(out, b, rows, n)?;
            }
        }
        Ok(())
    }

    /// `out[r, c] += bias[c]` for `rows` rows of `n`.
    pub(crate) fn bias_add(
        &self,
        out: &mut CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        rows: usize,
        n: usize,
    ) -> Result<()> {
        check_len("matmul", "bias", bias.len(), n)?;
        let (r, nn) = (int("matmul", rows)?, int("matmul", n)?);
        let mut a = self.args(&self.k.bias_add);
        a.arg(&mut *out).arg(bias).arg(&r).arg(&nn);
        self.go("matmul bias", a, grid_1d(rows * n))
    }
}
