//! What bounds a decode step on the GPU: the bytes of each weight as stored
//! ([`CudaWeight::bytes`]) and the device's own memory bandwidth, measured by a
//! device-to-device copy ([`CudaBackend::copy_bandwidth_gbs`]), so that `dlp-run bench` can
//! print each decode figure as a share of it, as it does on the CPU; and the profiler's
//! capture range ([`CudaBackend::set_profiler_range`]), so that a profile can hold the decode
//! steps alone; and the device as `inspect` shows it ([`CudaBackend::describe_device`]).

use cudarc::driver::sys::CUevent_flags;

use crate::{CudaBackend, CudaWeight};

impl CudaWeight {
    /// Bytes of this weight in device memory as the matmuls read them: 2 per value in bf16
    /// ([`crate::CudaOptions::bf16_weights`]), else 4.
    pub fn bytes(&self) -> usize {
        self.rows * self.cols * if self.bf16.is_some() { 2 } else { 4 }
    }
}

/// Bytes the copy probe moves per pass (read; as many written): far past the L2 of any GPU.
pub const COPY_PROBE_BYTES: usize = 1 << 30;

impl CudaBackend {
    /// Device copy bandwidth in GB/s, counting bytes read plus bytes written (the figure
    /// `nvbandwidth` and `cuda/examples/lora_bench` report): the median of 7 timed passes of
    /// 4 copies of [`COPY_PROBE_BYTES`], timed with CUDA events on the backend's stream after
    /// one warm-up copy. Errors: allocation (2 GiB) or event failures, as messages.
    pub fn copy_bandwidth_gbs(&self) -> Result<f64, String> {
        let n = COPY_PROBE_BYTES / 4;
        let stream = self.stream();
        let src = stream.alloc_zeros::<f32>(n).map_err(|e| e.to_string())?;
        let mut dst = stream.alloc_zeros::<f32>(n).map_err(|e| e.to_string())?;
        let ev = || {
            self.context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| e.to_string())
        };
        stream
            .memcpy_dtod(&src, &mut dst)
            .map_err(|e| e.to_string())?;
        const ITERS: usize = 4;
        let mut ms = Vec::with_capacity(7);
        for _ in 0..7 {
            let (start, end) = (ev()?, ev()?);
            start.record(stream).map_err(|e| e.to_string())?;
            for _ in 0..ITERS {
                stream
                    .memcpy_dtod(&src, &mut dst)
                    .map_err(|e| e.to_string())?;
            }
            end.record(stream).map_err(|e| e.to_string())?;
            end.synchronize().map_err(|e| e.to_string())?;
            ms.push(start.elapsed_ms(&end).map_err(|e| e.to_string())? as f64 / ITERS as f64);
        }
        ms.sort_by(f64::total_cmp);
        Ok(2.0 * COPY_PROBE_BYTES as f64 / (ms[ms.len() / 2] * 1e-3) / 1e9)
    }
}

impl CudaBackend {
    /// Device `ordinal` as `dlp-run inspect --backends` shows it: name, architecture, SM
    /// count and NVRTC version (the PTX cache's key), read without compiling a kernel (a
    /// backend's first start compiles every module: seconds to a minute). Errors as
    /// [`CudaBackend::new`]'s.
    pub fn describe_device(ordinal: usize) -> dlp_engine::Result<String> {
        let d = Self::open_device(ordinal).and_then(|dev| {
            let (ctx, name, arch) = (dev.ctx, dev.name, dev.arch);
            use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
            let sms = crate::no_panic("CUDA device attributes", || {
                ctx.attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                    .map_err(|e| format!("reading the SM count: {e}"))
            })?;
            let nvrtc = crate::nvrtc::nvrtc_version();
            Ok(format!("{name} ({arch}, {sms} SMs; NVRTC {nvrtc})"))
        });
        d.map_err(|m| crate::err(format!("cuda:{ordinal}: {m}")))
    }

    /// Starts (`capture`) or stops the profiler's capture range on this backend's context
    /// (`cuProfilerStart`/`cuProfilerStop`, after the stream's queued work so that the range
    /// holds exactly the launches made in between). Without a profiler attached both do
    /// nothing. A stop is attempted even when waiting for the stream failed. Errors: the
    /// driver's, as messages (the wait's first).
    pub fn set_profiler_range(&self, capture: bool) -> Result<(), String> {
        // The wait also makes the context current on this thread.
        let waited = self.stream().synchronize().map_err(|e| e.to_string());
        if capture && waited.is_err() {
            return waited;
        }
        let r = if capture {
            cudarc::driver::profiler_start()
        } else {
            cudarc::driver::profiler_stop()
        }
        .map_err(|e| format!("cuProfiler{}: {e}", if capture { "Start" } else { "Stop" }));
        waited.and(r)
    }
}
