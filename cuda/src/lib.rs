//! The CUDA backend of dlp-run: every engine op as a CUDA kernel (`kernels/<op>.cu`, compiled at
//! start with NVRTC for the device's architecture) plus cuBLAS sgemm for the large products.
//!
//! All CUDA libraries are loaded at run time (cudarc `dynamic-loading`): this crate builds and
//! its tests run on machines without CUDA, and [`CudaBackend::new`] then returns an error that
//! says which library is missing. Buffers are plain device allocations (no managed memory).

mod argmax;
mod attention;
mod counts;
mod elementwise;
mod experimental;
mod fused_linears;
mod gemm;
pub mod graphs;
mod kernels;
pub mod kv;
mod launch;
mod linears;
mod lora;
mod lora_prefetch;
pub mod lora_tiled;
pub mod matvec;
pub mod nvrtc;
mod ops;
pub mod probe;
pub mod ptx_cache;
mod sample;
pub mod sgmv;
mod step;
pub mod tune;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use dlp_engine::{Error, Result};

pub use counts::{LaunchCounter, LaunchCounts};
pub use experimental::Experimental;
pub use kernels::Kernels;
pub use linears::NORM_FOLD_MAX_ROWS;
pub use lora::CudaLora;
pub use step::CudaStep;

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

/// Storage and compute choices of the CUDA backend. The default is the f32 parity path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Store the 2-D weights (matmul weights, lm_head, embedding table) in bf16: half the
    /// memory and bytes per token of f32. Activations, accumulation, KV cache, LoRA and norms
    /// stay f32 (LoRA bf16 with [`Self::lora_bf16`]); the matmuls run in `matmul_bf16` instead
    /// of cuBLAS sgemm.
    pub bf16_weights: bool,
    /// The bf16 compute mode (implies [`Self::bf16_weights`]): every base matmul and the
    /// lm_head round their inputs to bf16 and accumulate in f32, as production engines run;
    /// the products go through cublasGemmEx on tensor cores, except those of at most
    /// [`matvec::MATVEC_MAX_ROWS`] rows with [`Experimental::decode_matvec`] (the matvec
    /// rounds its inputs the same way). LoRA, attention, norms and the KV cache stay f32. Its logit bound is
    /// measured on the CPU with the same rounding (`golden_cpu bf16_compute`).
    pub bf16_compute: bool,
    /// Store LoRA A and B^T in bf16 (`--cuda-lora-bf16`): half the memory and bytes per
    /// adapter; the shrink and expand read them into f32. Tolerance measured on the CPU with
    /// the adapters rounded the same way (`golden_cpu lora_bf16`: up to 6.9e-3 on the tiny
    /// fixtures, 1.15e-2 on SmolLM2). Its tests pass on an H200.
    pub lora_bf16: bool,
    /// Store the KV cache in bf16 (`--cuda-kv-bf16`): half its memory (twice the sequences or
    /// context in the same memory) and half the bytes attention reads per position, which at
    /// long contexts rivals the weights (Llama-2-7B at 4,096 positions: 4.3 GB per step in
    /// f32). Keys and values are rounded to nearest even when stored and read back exactly;
    /// the products stay f32. Tolerance measured on the CPU with the same rounding
    /// (`golden_cpu kv_bf16`: up to 1.25e-2 on the tiny fixtures, 1.50e-1 on SmolLM2). Its tests
    /// pass on an H200.
    pub kv_bf16: bool,
    /// GPU paths written without a GPU, off by default (each has passed its tests on an H200,
    /// the later ones with the tiny test models only, but the four not yet run on a GPU:
    /// see [`Experimental`]).
    pub experimental: Experimental,
    /// For tests: before each fused shrink, fill the LoRA scratch's partial sums with NaN and
    /// its entry table with (offset 0, rank 1), so that an expand that read either before its
    /// shrink wrote it makes the output NaN every time, not by chance; before each split
    /// attention, fill its partials with NaN, so that a merge that read a split before it was
    /// written does the same.
    pub poison_scratch: bool,
    /// For tests: these kernel tuning knobs instead of `DLP_CUDA_TUNE`'s ([`tune::Tune`]), so
    /// that one process can hold backends of several block sizes side by side.
    pub tune: Option<tune::Tune>,
}

impl CudaOptions {
    /// Whether the 2-D weights are stored in bf16.
    pub fn bf16_storage(&self) -> bool {
        self.bf16_weights || self.bf16_compute
    }
}

/// The CUDA backend on one device: a context, one stream, the kernels and a cuBLAS handle.
pub struct CudaBackend {
    ordinal: usize,
    device_name: String,
    arch: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Recorded decode steps, with [`Experimental::graphs`]. Declared before `blas` so that
    /// the graphs (which hold cuBLAS kernels) are destroyed before the handle.
    pub(crate) graphs: Option<Mutex<graphs::GraphCache<graphs::Recorded>>>,
    pub(crate) blas: Mutex<CudaBlas>,
    pub(crate) k: Kernels,
    /// Normalised rows of `logits`, grown on demand and reused.
    pub(crate) scratch: Mutex<Option<CudaSlice<f32>>>,
    /// The fused LoRA's shrink outputs: per module, one `[T, K, max_rank]` region of partial
    /// sums per in_dim chunk.
    pub(crate) scratch_u: Mutex<Option<CudaSlice<f32>>>,
    /// Programmatic dependent launches are available (sm_90 or newer); cleared if the driver
    /// refuses one (the launches then run in plain stream order).
    pub(crate) pdl: AtomicBool,
    /// The kernel tuning knobs (`DLP_CUDA_TUNE`; the defaults unless a sweep sets them).
    pub(crate) tune: tune::Tune,
    /// Streaming multiprocessors of the device.
    pub(crate) sms: usize,
    /// Split-attention partials, grown on demand and reused.
    pub(crate) scratch_attn: Mutex<Option<CudaSlice<f32>>>,
    /// `inline-combine`'s counts of finished split blocks per (token, head): zero between
    /// launches (allocated zeroed, grown on demand, each launch leaves them zero).
    pub(crate) scratch_attn_counts: Mutex<Option<CudaSlice<u32>>>,
    /// `norm-in-matvec`'s counts of finished blocks, one per residual site
    /// ([`linears::NORM_SYNC_WORDS`]): zero between launches (allocated zeroed, each launch
    /// leaves its count zero).
    pub(crate) norm_sync: Mutex<CudaSlice<u32>>,
    /// bf16 copies of GEMM inputs in the bf16 compute mode, grown on demand and reused.
    pub(crate) scratch_bf16: Mutex<Option<CudaSlice<u16>>>,
    /// `DLP_CUDA_SYNC=1`: synchronise after every launch so an asynchronous fault names its op.
    pub(crate) sync_each: bool,
    pub(crate) options: CudaOptions,
    /// Set while a step is being captured: allocations and synchronisation are refused.
    capturing: AtomicBool,
    /// Bumped whenever a scratch buffer is reallocated (recorded graphs hold its address).
    scratch_gen: AtomicU64,
    /// Launches of the kernels whose switches tests must see take effect ([`Self::launches`]).
    pub(crate) counts: std::sync::Arc<counts::LaunchCounters>,
    /// cuBLAS's workspace when graphs are on (cuBLAS must not allocate during a capture).
    _blas_workspace: Option<CudaSlice<u8>>,
}

/// Steps of more rows than this keep the narrow grids under [`Experimental::wide_grids`].
pub const WIDE_GRID_MAX_ROWS: usize = 64;

/// Steps of more tokens than this (prefill) keep one attention block per (token, head).
pub const SPLIT_ATTENTION_MAX_TOKENS: usize = 64;

/// The split rule of [`Experimental::split_attention`]: `ceil(capacity / per_split)` blocks per
/// (token, head), clamped to 1..=16, for steps of at most [`SPLIT_ATTENTION_MAX_TOKENS`];
/// `per_split` is [`tune::Tune::attn_split_positions`] (16 unless tuned).
pub fn attention_splits(capacity: usize, n_tokens: usize, per_split: usize) -> usize {
    if n_tokens > SPLIT_ATTENTION_MAX_TOKENS {
        1
    } else {
        capacity.div_ceil(per_split.max(1)).clamp(1, 16)
    }
}

/// cuBLAS workspace set with graphs on: what cuBLAS asks for on Hopper (32 MiB).
const BLAS_WORKSPACE_BYTES: usize = 32 << 20;

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

/// A device opened by [`CudaBackend::open_device`]: its context, name, compute capability's
/// major number and architecture name (`sm_90`).
struct OpenDevice {
    ctx: Arc<CudaContext>,
    name: String,
    major: i32,
    arch: String,
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
        Self::open(ordinal, options).map_err(|m| err(format!("cuda:{ordinal}: {m}")))
    }

    /// The libraries present (driver, NVRTC, cuBLAS), then device `ordinal` opened; no kernel
    /// is compiled.
    fn open_device(ordinal: usize) -> Result<OpenDevice, String> {
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
            Ok(OpenDevice {
                ctx,
                name: device_name,
                major: maj,
                arch,
            })
        })
    }

    fn open(ordinal: usize, options: CudaOptions) -> Result<CudaBackend, String> {
        let OpenDevice {
            ctx,
            name: device_name,
            major: maj,
            arch,
        } = Self::open_device(ordinal)?;
        no_panic("CUDA initialisation", || {
            if options.experimental.sgmv && maj < 8 {
                return Err(format!(
                    "--cuda-experimental sgmv needs TF32 tensor cores (compute capability 8.0 \
                     or newer); this device is {arch}"
                ));
            }
            let tune = match options.tune {
                Some(t) => t,
                None => tune::Tune::from_env()?,
            };
            use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
            let sms = ctx
                .attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(|e| format!("reading the SM count: {e}"))?
                .max(1) as usize;
            // The kernels before a dependent matvec release it early only with -DDLP_PDL.
            // The fold entries only where a fold can run: on the decode matvec, which reads
            // bf16 weights.
            let x = &options.experimental;
            let folds =
                x.decode_matvec && options.bf16_storage() && (x.fused_silu || x.norm_in_matvec);
            let k = Kernels::load(&ctx, &arch, x.dependent_launch && maj >= 9, folds, &tune)?;
            let graphs = options.experimental.graphs;
            let stream = if graphs {
                // Capture needs a stream of its own; one stream needs no cross-stream events
                // (whose waits a capture would refuse). Set before any buffer exists.
                // SAFETY: every buffer of this backend lives and is used on this one stream.
                unsafe { ctx.disable_event_tracking() };
                ctx.new_stream()
                    .map_err(|e| format!("creating a stream: {e}"))?
            } else {
                ctx.default_stream()
            };
            let blas =
                CudaBlas::new(stream.clone()).map_err(|e| format!("creating cuBLAS: {e:?}"))?;
            let blas_workspace = if graphs {
                let ws = stream
                    .alloc_zeros::<u8>(BLAS_WORKSPACE_BYTES)
                    .map_err(|e| format!("allocating the cuBLAS workspace: {e}"))?;
                let (p, _g) = cudarc::driver::DevicePtr::device_ptr(&ws, &stream);
                // SAFETY: the workspace outlives the handle's use (both live in the backend).
                let r = unsafe {
                    cudarc::cublas::sys::cublasSetWorkspace_v2(
                        *blas.handle(),
                        p as *mut std::ffi::c_void,
                        BLAS_WORKSPACE_BYTES,
                    )
                };
                if r != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                    return Err(format!("cublasSetWorkspace: {r:?}"));
                }
                drop(_g);
                Some(ws)
            } else {
                None
            };
            let norm_sync = stream
                .alloc_zeros::<u32>(linears::NORM_SYNC_WORDS)
                .map_err(|e| format!("allocating the norm-in-matvec counters: {e}"))?;
            Ok(CudaBackend {
                ordinal,
                device_name,
                arch,
                ctx,
                stream,
                blas: Mutex::new(blas),
                k,
                scratch: Mutex::new(None),
                scratch_bf16: Mutex::new(None),
                scratch_attn: Mutex::new(None),
                scratch_attn_counts: Mutex::new(None),
                scratch_u: Mutex::new(None),
                norm_sync: Mutex::new(norm_sync),
                pdl: AtomicBool::new(maj >= 9),
                tune,
                sms,
                sync_each: std::env::var("DLP_CUDA_SYNC").is_ok_and(|v| v == "1"),
                options,
                graphs: graphs.then(|| {
                    Mutex::new(graphs::GraphCache::new(
                        graphs::GRAPH_CAPACITY,
                        graphs::GRAPH_MAX_TOKENS,
                    ))
                }),
                capturing: AtomicBool::new(false),
                scratch_gen: AtomicU64::new(0),
                counts: Default::default(),
                _blas_workspace: blas_workspace,
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

    /// Blocks per (token, head) of the attention: with [`Experimental::split_attention`] and
    /// at most [`SPLIT_ATTENTION_MAX_TOKENS`] tokens, one per 16 positions of capacity (or
    /// the tuned count), at most 16 (a function of the step's shape, so graphs stay valid);
    /// else 1.
    pub(crate) fn attention_splits(&self, capacity: usize, n_tokens: usize) -> usize {
        if self.options.experimental.split_attention {
            attention_splits(capacity, n_tokens, self.tune.attn_split_positions as usize)
        } else {
            1
        }
    }

    /// Threads per row of the RMSNorm kernels for `rows` rows (see
    /// [`Experimental::wide_grids`]).
    pub(crate) fn row_block(&self, rows: usize) -> u32 {
        if self.options.experimental.wide_grids && rows <= WIDE_GRID_MAX_ROWS {
            1024
        } else {
            launch::BLOCK
        }
    }

    /// Blocks per token of the KV store (see [`Experimental::wide_grids`]).
    pub(crate) fn kv_store_chunks(&self, n_tokens: usize, kv_dim: usize) -> usize {
        if self.options.experimental.wide_grids && n_tokens <= WIDE_GRID_MAX_ROWS {
            kv_dim.div_ceil(launch::BLOCK as usize).clamp(1, 65535)
        } else {
            1
        }
    }

    /// The scratch generation: recorded graphs made under another one are stale.
    pub(crate) fn scratch_generation(&self) -> u64 {
        self.scratch_gen.load(Ordering::Acquire)
    }

    pub(crate) fn set_capturing(&self, on: bool) {
        self.capturing.store(on, Ordering::Release);
    }

    /// Called before a scratch buffer is reallocated: refused during a capture (the graph
    /// would hold memory that is then freed), else bumps the scratch generation.
    pub(crate) fn may_regrow_scratch(&self, what: &str) -> Result<()> {
        if self.capturing.load(Ordering::Acquire) {
            return Err(err(format!(
                "{what}: a scratch buffer would be reallocated during a CUDA graph capture"
            )));
        }
        self.scratch_gen.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// `slot`'s scratch buffer, holding at least `len` elements: replaced by `fresh()` when it
    /// is missing or shorter, after [`Self::may_regrow_scratch`] (`what` names it).
    pub(crate) fn scratch_at_least<'a, T>(
        &self,
        slot: &'a mut Option<CudaSlice<T>>,
        len: usize,
        what: &str,
        fresh: impl FnOnce() -> Result<CudaSlice<T>>,
    ) -> Result<&'a mut CudaSlice<T>> {
        if slot.as_ref().is_none_or(|s| s.len() < len) {
            self.may_regrow_scratch(what)?;
            *slot = Some(fresh()?);
        }
        Ok(slot.as_mut().expect("filled above"))
    }

    /// Sets `bytes` bytes at device address `ptr` to `value`, queued on the stream (a
    /// scratch's counters zeroed, or the tests' poison); `what` names it in the error.
    ///
    /// # Safety
    /// `ptr` addresses at least `bytes` bytes of device memory that live until the stream
    /// has run the memset.
    pub(crate) unsafe fn memset_bytes(
        &self,
        ptr: u64,
        value: u8,
        bytes: usize,
        what: &str,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe {
            cudarc::driver::result::memset_d8_async(ptr, value, bytes, self.stream.cu_stream())
        }
        .map_err(|e| err(format!("{what}: {e}")))
    }

    /// With `DLP_CUDA_SYNC=1` (and not capturing): waits for the queued work, naming `op`.
    pub(crate) fn sync_if_asked(&self, op: &str) -> Result<()> {
        if self.sync_each && !self.capturing.load(Ordering::Acquire) {
            self.synchronize()
                .map_err(|e| err(format!("{op}: after the kernel: {e}")))?;
        }
        Ok(())
    }

    /// `cuda:<ordinal>`.
    pub(crate) fn short_name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
}

#[cfg(test)]
mod tests {
    use super::attention_splits;

    #[test]
    fn attention_splits_follow_capacity_and_leave_prefill_alone() {
        assert_eq!(attention_splits(8, 1, 16), 1);
        assert_eq!(attention_splits(80, 2, 16), 5);
        assert_eq!(attention_splits(4096, 1, 16), 16);
        assert_eq!(attention_splits(4096, 64, 16), 16);
        assert_eq!(attention_splits(4096, 65, 16), 1);
        // Tuned to 256 positions a split: short contexts take one block (no combine).
        assert_eq!(attention_splits(128, 1, 256), 1);
        assert_eq!(attention_splits(1000, 1, 256), 4);
    }
}
