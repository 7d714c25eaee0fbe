//! Launch plumbing of the CUDA backend: grid shapes, checked launches, and the cuBLAS sgemm
//! and `matmul_bf16` calls, the device addresses of launch descriptors (`Ptrs`).

use std::ffi::c_void;
use std::sync::atomic::Ordering;

use cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig};
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchArgs, LaunchConfig,
    PushKernelArg, SyncOnDrop,
};
use dlp_engine::Result;

use crate::{err, CudaBackend, CudaWeight};

/// Threads per block of the element-wise and row kernels.
pub(crate) const BLOCK: u32 = 256;
/// Grid cap of the grid-stride kernels (enough blocks to fill any current GPU).
const MAX_GRID: usize = 8192;
/// Largest head width of the attention kernel (`ATTN_MAX_HEAD_DIM` in attention.cu).
pub(crate) const ATTN_MAX_HEAD_DIM: usize = 256;
/// Threads per block of the attention kernel.
pub(crate) const ATTN_THREADS: u32 = 128;

/// Checks that a buffer holds at least `need` values (an error naming the op otherwise).
pub(crate) fn check_len(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(err(format!(
            "{op}: buffer `{what}` holds {have} values, needs {need}"
        )));
    }
    Ok(())
}

/// `v` as a kernel's `int` argument, or an error naming the op.
pub(crate) fn int(op: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| err(format!("{op}: size {v} does not fit a kernel argument")))
}

/// A grid-stride launch over `n` elements.
pub(crate) fn grid_1d(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as usize).clamp(1, MAX_GRID) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A launch of `grid` blocks of `block` threads with `shared` bytes of shared memory.
pub(crate) fn cfg(grid: (u32, u32, u32), block: u32, shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: shared,
    }
}

impl CudaBackend {
    /// A launch of `f` on this backend's stream.
    pub(crate) fn args<'a>(&'a self, f: &'a CudaFunction) -> LaunchArgs<'a> {
        self.stream().launch_builder(f)
    }

    /// Launches and checks the launch (and, with `DLP_CUDA_SYNC=1`, its completion).
    pub(crate) fn go(&self, op: &str, mut a: LaunchArgs<'_>, c: LaunchConfig) -> Result<()> {
        // SAFETY: each caller passes the kernel's parameters in its declared order and types,
        // with buffers checked above to hold every element the launch touches.
        unsafe { a.launch(c) }.map_err(|e| err(format!("{op}: launch: {e}")))?;
        self.sync_if_asked(op)
    }

    /// Launches `f` as a programmatic dependent of the launch before it on the stream
    /// (`CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`, sm_90): it may start once
    /// every block of that launch has run `griddepcontrol.launch_dependents`, and reads that
    /// launch's results only after `griddepcontrol.wait` (`pdl_wait` in pdl.cuh). Whatever
    /// came before that launch has completed, as in plain stream order, unless that launch
    /// is itself a dependent one: `fused-silu`'s gate/up matvec and `norm-in-matvec`'s o and
    /// down matvecs release their dependent at their start, so with both a layer's o, gate/up
    /// and down grids and the next layer's q/k/v grid may all run at once (the attention
    /// launch before o is a plain one). `lora-prefetch` chains a LoRA group's shrink, plain
    /// matvec and expand the same way after the kernel writing x, each releasing the next at
    /// its start; every block of those kernels waits before it exits. Each waits (`pdl_wait`:
    /// `griddepcontrol.wait` waits for every prerequisite grid, and so transitively for all of
    /// them) before it reads what the others write, and their counters are apart
    /// (fused_linears.rs, `sync_set`).
    ///
    /// Returns true when queued. False when the driver refused it outside a capture:
    /// dependent launches are then off for this backend (a warning says so) and the caller
    /// launches `f` in plain stream order, which computes the same values (its waits return at
    /// once). A refusal inside a capture is an error, which ends that capture (the step then
    /// runs eagerly and tries again). Check completion with [`Self::sync_if_asked`] after.
    ///
    /// # Safety
    /// `params` points at `f`'s parameters, in order, with their declared types and sizes;
    /// device buffers among them stay alive (and their uses tracked) until the launch is queued.
    pub(crate) unsafe fn launch_dependent(
        &self,
        op: &str,
        f: &CudaFunction,
        params: &mut [*mut c_void],
        c: LaunchConfig,
    ) -> Result<bool> {
        use cudarc::driver::sys;
        let stream = self.stream();
        // SAFETY: an all-zero attribute is valid plain data; id and value are set below.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: c.grid_dim.0,
            gridDimY: c.grid_dim.1,
            gridDimZ: c.grid_dim.2,
            blockDimX: c.block_dim.0,
            blockDimY: c.block_dim.1,
            blockDimZ: c.block_dim.2,
            sharedMemBytes: c.shared_mem_bytes,
            hStream: stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: 1,
        };
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| err(format!("{op}: binding the CUDA context: {e}")))?;
        // SAFETY: the caller's contract on `params`; `config` and `attr` outlive the call.
        let launched = unsafe {
            sys::cuLaunchKernelEx(
                &config,
                f.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result();
        match launched {
            Ok(()) => Ok(true),
            Err(e)
                if !self.capturing.load(Ordering::Acquire)
                    && self.pdl.swap(false, Ordering::Relaxed) =>
            {
                tracing::warn!(
                    "{op}: dependent launch refused ({e}); launching in plain stream order \
                     from now on"
                );
                Ok(false)
            }
            Err(e) => Err(err(format!("{op}: launch (programmatic dependent): {e}"))),
        }
    }

    /// `out[rows, n] = x[rows, k] @ W^T` through cuBLAS (column-major: out^T = W x^T).
    pub(crate) fn sgemm(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaWeight,
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (n, k) = (w.rows, w.cols);
        let c = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: int("matmul", n)?,
            n: int("matmul", rows)?,
            k: int("matmul", k)?,
            alpha: 1.0f32,
            lda: int("matmul", k)?,
            ldb: int("matmul", k)?,
            beta: 0.0f32,
            ldc: int("matmul", n)?,
        };
        let blas = self.blas.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: W holds n*k, x at least rows*k and out at least rows*n values (checked).
        unsafe { blas.gemm(c, &w.data, x, out) }
            .map_err(|e| err(format!("matmul: cublasSgemm ({rows}x{k} @ {k}x{n}): {e:?}")))
    }

    /// `out[rows, n] = x[rows, k] @ W^T (+ bias)` with `W` in bf16 (`matmul_bf16`): one warp
    /// per output feature and eight rows, f32 accumulation. Sizes are checked by the callers.
    pub(crate) fn matmul_bf16(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaWeight,
        bias: Option<&CudaSlice<f32>>,
        rows: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const WARPS: usize = 8;
        const ROWS: usize = 8; // MATMUL_BF16_ROWS in matmul.cu
        let wb = w
            .bf16
            .as_ref()
            .ok_or_else(|| err("matmul: weight is not bf16"))?;
        let (k, n) = (int("matmul", w.cols)?, int("matmul", w.rows)?);
        let r = int("matmul", rows)?;
        let grid = (
            int("matmul", w.rows.div_ceil(WARPS))? as u32,
            int("matmul", rows.div_ceil(ROWS))? as u32,
            1,
        );
        let has_bias = i32::from(bias.is_some());
        let mut a = self.args(&self.k.matmul_bf16);
        // Without a bias the kernel never reads it; `x` stands in for the pointer.
        a.arg(x)
            .arg(wb)
            .arg(bias.unwrap_or(x))
            .arg(&has_bias)
            .arg(&r)
            .arg(&k)
            .arg(&n)
            .arg(out);
        self.go("matmul (bf16)", a, cfg(grid, (WARPS * 32) as u32, 0))
    }
}

/// Device addresses for a launch descriptor (`MatvecJobs`, `LoraJobs`), keeping cudarc's
/// use-tracking guards alive until the launch is queued. Fixed capacity `N`: these launches
/// run per layer per token, so nothing is allocated.
pub(crate) struct Ptrs<'a, const N: usize> {
    stream: &'a CudaStream,
    guards: [Option<SyncOnDrop<'a>>; N],
    n: usize,
}

impl<'a, const N: usize> Ptrs<'a, N> {
    pub(crate) fn new(stream: &'a CudaStream) -> Self {
        Ptrs {
            stream,
            guards: [const { None }; N],
            n: 0,
        }
    }

    fn keep(&mut self, g: SyncOnDrop<'a>) {
        assert!(
            self.n < N,
            "Ptrs<{N}>: more buffers than the descriptor holds"
        );
        self.guards[self.n] = Some(g);
        self.n += 1;
    }

    /// The address of a buffer the launch reads.
    pub(crate) fn read<T, B: DevicePtr<T>>(&mut self, b: &'a B) -> u64 {
        let (p, g) = b.device_ptr(self.stream);
        self.keep(g);
        p
    }

    /// The address of a buffer the launch writes.
    pub(crate) fn write<T>(&mut self, b: &'a mut CudaSlice<T>) -> u64 {
        let (p, g) = b.device_ptr_mut(self.stream);
        self.keep(g);
        p
    }
}
