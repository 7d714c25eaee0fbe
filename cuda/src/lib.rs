//! The CUDA backend of dlp-run: every engine op as a CUDA kernel (`kernels/<op>.cu`, compiled at
//! start with NVRTC for the device's architecture) plus cuBLAS sgemm for the large products.
//!
//! All CUDA libraries are loaded at run time (cudarc `dynamic-loading`): this crate builds and
//! its tests run on machines without CUDA, and [`CudaBackend::new`] then returns an error that
//! says which library is missing. Buffers are plain device allocations (no managed memory).

mod kernels;
mod launch;
pub mod nvrtc;
mod ops;
mod probe;

use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use dlp_engine::backend::{LoraStackHost, StepPlan};
use dlp_engine::{Error, Result};

pub use kernels::Kernels;

/// A 2-D weight `[rows, cols]` in device memory: f32, or bf16 with
/// [`CudaOptions::bf16_weights`].
pub struct CudaWeight {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Row-major values (one unused value when `bf16` holds them).
    pub data: CudaSlice<f32>,
    /// Row-major bf16 bit patterns, when stored in bf16.
    pub bf16: Option<CudaSlice<u16>>,
}

/// Storage choices of the CUDA backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaOptions {
    /// Store the 2-D weights (matmul weights, lm_head, embedding table) in bf16: half the
    /// memory and bytes per token of f32. Activations, accumulation, KV cache, LoRA and norms
    /// stay f32; the matmuls run in `matmul_bf16` instead of cuBLAS sgemm.
    pub bf16_weights: bool,
}

/// A [`StepPlan`] on the device; the host copy is kept for the index checks the CPU makes.
pub struct CudaStep {
    pub(crate) plan: StepPlan,
    pub(crate) token_ids: CudaSlice<u32>,
    pub(crate) positions: CudaSlice<u32>,
    pub(crate) kv_slots: CudaSlice<u32>,
    pub(crate) segment_of_token: CudaSlice<u32>,
    pub(crate) mix_slots: CudaSlice<u32>,
    pub(crate) mix_weights: CudaSlice<f32>,
    pub(crate) logit_rows: CudaSlice<u32>,
}

/// A [`LoraStackHost`] on the device: stacked A and B^T with the rank-offset table.
pub struct CudaLora {
    pub(crate) in_dim: usize,
    pub(crate) out_dim: usize,
    pub(crate) max_rank: usize,
    pub(crate) n_slots: usize,
    pub(crate) a: CudaSlice<f32>,
    pub(crate) bt: CudaSlice<f32>,
    pub(crate) slot_offset: CudaSlice<u32>,
    pub(crate) slot_rank: CudaSlice<u32>,
    pub(crate) slot_scale: CudaSlice<f32>,
}

/// The CUDA backend on one device: a context, one stream, the kernels and a cuBLAS handle.
pub struct CudaBackend {
    ordinal: usize,
    device_name: String,
    arch: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pub(crate) blas: Mutex<CudaBlas>,
    pub(crate) k: Kernels,
    /// Normalised rows of `logits`, grown on demand and reused.
    pub(crate) scratch: Mutex<Option<CudaSlice<f32>>>,
    /// `DLP_CUDA_SYNC=1`: synchronise after every launch so an asynchronous fault names its op.
    pub(crate) sync_each: bool,
    pub(crate) options: CudaOptions,
}

/// An engine error from a CUDA failure.
pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda".into(),
        msg: msg.into(),
    }
}

/// Runs `f`, turning a panic inside cudarc (a library it cannot load, a missing symbol) into an
/// error, so that a machine without CUDA gets a message rather than an abort.
fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    match r {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("{what}: {msg}"))
        }
    }
}

impl CudaBackend {
    /// Opens device `ordinal`, compiles (or loads cached) kernels for its architecture and
    /// creates a cuBLAS handle. Fails with a clear message when there is no driver, no device,
    /// no NVRTC or no cuBLAS.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    /// As [`CudaBackend::new`], with `options`.
    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<CudaBackend> {
        let mut b = Self::open(ordinal).map_err(|m| err(format!("cuda:{ordinal}: {m}")))?;
        b.options = options;
        Ok(b)
    }

    fn open(ordinal: usize) -> Result<CudaBackend, String> {
        // SAFETY: only dlopen()s candidate library names; no CUDA function is called.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(
                "no CUDA driver found (libcuda.so): this machine has no NVIDIA driver \
                        installed, or its library folder is not on LD_LIBRARY_PATH"
                    .into(),
            );
        }
        nvrtc::probe()?;
        // SAFETY: as above.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(
                "no cuBLAS library found (libcublas.so.13/.12): install the CUDA \
                        toolkit or add its lib folder to LD_LIBRARY_PATH"
                    .into(),
            );
        }
        no_panic("CUDA initialisation", || {
            let n = CudaContext::device_count()
                .map_err(|e| format!("no usable CUDA device (cuInit/cuDeviceGetCount: {e})"))?;
            if ordinal >= n.max(0) as usize {
                return Err(format!("no CUDA device {ordinal} (found {n})"));
            }
            let ctx = CudaContext::new(ordinal).map_err(|e| format!("creating a context: {e}"))?;
            let device_name = ctx.name().unwrap_or_else(|_| "unknown".into());
            let (maj, min) = ctx
                .compute_capability()
                .map_err(|e| format!("reading the compute capability: {e}"))?;
            let arch = format!("sm_{maj}{min}");
            let k = Kernels::load(&ctx, &arch)?;
            let stream = ctx.default_stream();
            let blas =
                CudaBlas::new(stream.clone()).map_err(|e| format!("creating cuBLAS: {e:?}"))?;
            Ok(CudaBackend {
                ordinal,
                device_name,
                arch,
                ctx,
                stream,
                blas: Mutex::new(blas),
                k,
                scratch: Mutex::new(None),
                sync_each: std::env::var("DLP_CUDA_SYNC").is_ok_and(|v| v == "1"),
                options: CudaOptions::default(),
            })
        })
    }

    /// The device's name (e.g. `NVIDIA H200`).
    pub fn device_name(&self) -> &str {
        &self.device_name
    }
    /// The architecture the kernels were compiled for (e.g. `sm_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }
    /// The device context (for benchmarks: events, raw copies).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// The stream every op runs on, in order.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// Waits for all queued work; surfaces asynchronous kernel faults.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| err(format!("synchronize: {e}")))
    }

    /// A device copy of `data` (at least one element: CUDA allocates nothing for zero).
    pub(crate) fn put<T: DeviceRepr + ValidAsZeroBits>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        if data.is_empty() {
            return self
                .stream
                .alloc_zeros::<T>(1)
                .map_err(|e| err(format!("alloc: {e}")));
        }
        self.stream
            .clone_htod(data)
            .map_err(|e| err(format!("upload of {} values: {e}", data.len())))
    }

    /// Like [`Self::put`], writing into `reuse` when it is large enough.
    fn put_into<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        data: &[T],
        reuse: Option<CudaSlice<T>>,
    ) -> Result<CudaSlice<T>> {
        match reuse {
            Some(mut r) if r.len() >= data.len().max(1) => {
                if !data.is_empty() {
                    self.stream
                        .memcpy_htod(data, &mut r.slice_mut(0..data.len()))
                        .map_err(|e| err(format!("upload of {} values: {e}", data.len())))?;
                }
                Ok(r)
            }
            _ => self.put(data),
        }
    }

    pub(crate) fn upload_step_impl(
        &self,
        p: &StepPlan,
        reuse: Option<CudaStep>,
    ) -> Result<CudaStep> {
        let r = reuse.map(|s| {
            (
                s.token_ids,
                s.positions,
                s.kv_slots,
                s.segment_of_token,
                s.mix_slots,
                s.mix_weights,
                s.logit_rows,
            )
        });
        let (a, b, c, d, e, f, g) = match r {
            Some((a, b, c, d, e, f, g)) => (
                Some(a),
                Some(b),
                Some(c),
                Some(d),
                Some(e),
                Some(f),
                Some(g),
            ),
            None => Default::default(),
        };
        Ok(CudaStep {
            plan: p.clone(),
            token_ids: self.put_into(&p.token_ids, a)?,
            positions: self.put_into(&p.positions, b)?,
            kv_slots: self.put_into(&p.kv_slots, c)?,
            segment_of_token: self.put_into(&p.segment_of_token, d)?,
            mix_slots: self.put_into(&p.mix_slots, e)?,
            mix_weights: self.put_into(&p.mix_weights, f)?,
            logit_rows: self.put_into(&p.logit_rows, g)?,
        })
    }

    pub(crate) fn upload_lora_impl(&self, s: &LoraStackHost) -> Result<CudaLora> {
        let n = s.slot_rank.len();
        if s.slot_offset.len() != n || s.slot_scale.len() != n {
            return Err(Error::invalid(format!(
                "upload_lora: {n} slot ranks but {} offsets and {} scales",
                s.slot_offset.len(),
                s.slot_scale.len()
            )));
        }
        let total = s.total_rank();
        if s.a.len() < total * s.in_dim || s.bt.len() < total * s.out_dim {
            return Err(Error::invalid(format!(
                "upload_lora: total rank {total} needs {} A and {} B values, got {} and {}",
                total * s.in_dim,
                total * s.out_dim,
                s.a.len(),
                s.bt.len()
            )));
        }
        Ok(CudaLora {
            in_dim: s.in_dim,
            out_dim: s.out_dim,
            max_rank: s.max_rank,
            n_slots: n,
            a: self.put(&s.a)?,
            bt: self.put(&s.bt)?,
            slot_offset: self.put(&s.slot_offset)?,
            slot_rank: self.put(&s.slot_rank)?,
            slot_scale: self.put(&s.slot_scale)?,
        })
    }

    /// `cuda:<ordinal>`.
    pub(crate) fn short_name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
}
