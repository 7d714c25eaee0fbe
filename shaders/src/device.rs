//! The wgpu device: adapter choice, the pipeline cache, recording dispatches into one pending
//! command encoder (submitted lazily, so a forward pass does not wait on the GPU), and reading
//! buffers back.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};

use dlp_engine::{Error, Result};

use crate::backend::WeightStore;
use wgpu::util::DeviceExt;

/// Uniform slots (256 bytes each) recorded before the pending work is submitted.
const ARENA_SLOTS: usize = 1024;
/// Bytes per uniform slot: at least every adapter's `min_uniform_buffer_offset_alignment`.
const SLOT: usize = 256;

/// Which adapters [`crate::WgpuBackend::new`] may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only real GPUs (discrete, integrated, virtual); never a CPU rasteriser.
    HardwareOnly,
    /// A real GPU if there is one, else a software adapter (lavapipe, llvmpipe, SwiftShader).
    AllowSoftware,
}

/// Whether an adapter is a software rasteriser rather than a GPU.
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let n = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "swiftshader"]
            .iter()
            .any(|s| n.contains(s))
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter this machine offers (all backends compiled in).
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| a.get_info())
        .collect()
}

/// Rank of an adapter for automatic choice (lower is better).
fn rank(info: &wgpu::AdapterInfo) -> u32 {
    match info.device_type {
        _ if is_software(info) => 4,
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    }
}

fn backend_err(msg: impl Into<String>) -> Error {
    Error::Backend {
        backend: "wgpu".into(),
        msg: msg.into(),
    }
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    uniforms: Vec<u8>,
}

/// Which build of an op's shader a dispatch uses; the pipeline cache is keyed by
/// `(op, entry, variant)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The tiled matmul's rows per invocation (0: as written).
    pub tm: u32,
    /// How the weights the shader reads are stored.
    pub weights: WeightStore,
}

impl Variant {
    /// The shader as written: f32 weights.
    pub const PLAIN: Variant = Variant {
        tm: 0,
        weights: WeightStore::F32,
    };
}

/// The line of matmul.wgsl that sets the tiled kernel's rows per invocation.
const TM_LINE: &str = "const TM: u32 = 8u;";

/// The line of a weight-reading shader that names its weights' storage type.
const WT_F32: &str = "alias WT = f32;";

/// The line of a weight-reading shader that reads weight `i` as f32.
const WVAL_F32: &str = "fn wval(i: u32) -> f32 { return f32(w[i]); }";

type PipeKey = (&'static str, &'static str, Variant);

/// A device and queue with the state needed to record and run the engine's shaders.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// The chosen adapter.
    pub info: wgpu::AdapterInfo,
    /// Largest buffer that may be bound as storage.
    pub max_binding: u64,
    /// Whether the device was opened with `SHADER_F16` (f16 weight storage).
    pub f16: bool,
    /// Whether the adapter offers `SHADER_F16` (whether or not it was asked for).
    pub adapter_f16: bool,
    arena: wgpu::Buffer,
    pipelines: Mutex<HashMap<PipeKey, Arc<wgpu::ComputePipeline>>>,
    pending: Mutex<Pending>,
    /// The scratch buffer of [`Gpu::copy_within`], kept and grown to the largest copy.
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// First uncaptured device error, reported by the next op.
    error: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gpu {
    /// Opens the best adapter allowed by `policy`; with `f16`, with the `SHADER_F16` feature,
    /// or an error naming the adapter when it lacks it (no fallback to f32).
    pub fn new(policy: AdapterPolicy, f16: bool) -> Result<Gpu> {
        let inst = instance();
        let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        adapters.sort_by_key(|a| rank(&a.get_info()));
        let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = adapters
            .into_iter()
            .find(|a| policy == AdapterPolicy::AllowSoftware || !is_software(&a.get_info()))
            .ok_or_else(|| {
                backend_err(if seen.is_empty() {
                    "no wgpu adapter found (no Vulkan/Metal/DX12 driver; on Linux install mesa-vulkan-drivers for lavapipe)".to_string()
                } else {
                    format!("no hardware wgpu adapter (only software: {}); ask for it with --backend wgpu", seen.join(", "))
                })
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        let adapter_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        if f16 {
            if !adapter_f16 {
                return Err(backend_err(format!(
                    "f16 weights asked, but adapter {} ({:?}) lacks the wgpu feature SHADER_F16 (WebGPU `shader-f16`); use f32 weights on it",
                    info.name, info.backend
                )));
            }
            features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("dlp-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| backend_err(format!("{}: requesting a device: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).get_or_insert_with(|| e.to_string());
        }));
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: (ARENA_SLOTS * SLOT) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Gpu {
            device,
            queue,
            info,
            max_binding,
            f16,
            adapter_f16,
            arena,
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending {
                encoder: None,
                uniforms: Vec::new(),
            }),
            scratch: Mutex::new(None),
            error,
        })
    }

    /// The first device error since the last check, as an engine error.
    pub fn check(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(backend_err(format!("{}: {e}", self.info.name))),
            None => Ok(()),
        }
    }

    /// A storage buffer of `bytes` (at least 16), refusing sizes past the binding limit.
    pub fn storage(&self, what: &str, bytes: u64, init: Option<&[u8]>) -> Result<wgpu::Buffer> {
        if bytes > self.max_binding {
            return Err(backend_err(format!(
                "{what}: {bytes} bytes exceed this adapter's max_storage_buffer_binding_size ({} bytes, {})",
                self.max_binding, self.info.name
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let size = bytes.max(16).next_multiple_of(4);
        Ok(match init {
            Some(data) if data.len() as u64 == size => {
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(what),
                        contents: data,
                        usage,
                    })
            }
            Some(data) => {
                let mut padded = data.to_vec();
                padded.resize(size as usize, 0);
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(what),
                        contents: &padded,
                        usage,
                    })
            }
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            }),
        })
    }

    /// Overwrites the start of `buf`. Pending work is submitted first: a queue write lands
    /// before the next submission, so recorded commands must not still wait to read old data.
    pub fn write(&self, buf: &wgpu::Buffer, data: &[u8]) {
        self.flush();
        self.queue.write_buffer(buf, 0, data);
    }

    fn pipeline(
        &self,
        op: &'static str,
        entry: &'static str,
        v: Variant,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (op, entry, v);
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let mut src = crate::source(op).to_string();
        if v.tm != 0 {
            // The tiled matmul's rows-per-invocation variant.
            if !src.contains(TM_LINE) {
                return Err(backend_err(format!(
                    "shader {op}.wgsl has no rows-per-invocation variant (no `{TM_LINE}` line)"
                )));
            }
            src = src.replace(TM_LINE, &format!("const TM: u32 = {}u;", v.tm));
        }
        if v.weights != WeightStore::F32 && !(src.contains(WT_F32) && src.contains(WVAL_F32)) {
            return Err(backend_err(format!(
                "shader {op}.wgsl has no {} variant (no `{WT_F32}` and `{WVAL_F32}` lines)",
                v.weights
            )));
        }
        match v.weights {
            WeightStore::F32 => {}
            WeightStore::F16 => {
                // The same shader with its weight array typed f16 (each value widened to f32
                // where it is read; accumulation stays f32).
                if !self.f16 {
                    return Err(backend_err(format!(
                        "shader {op}.wgsl: f16 variant asked on a device opened without SHADER_F16 ({})",
                        self.info.name
                    )));
                }
                src = format!("enable f16;\n{}", src.replace(WT_F32, "alias WT = f16;"));
            }
            WeightStore::Groups(g) => {
                // The weight array as u32 words and weight_groups.wgsl's reader of them.
                let mut reader = include_str!("../wgsl/weight_groups.wgsl").to_string();
                for (line, value) in [
                    (
                        "const GB: u32 = 4u;",
                        format!("const GB: u32 = {}u;", g.bits),
                    ),
                    (
                        "const GS: u32 = 32u;",
                        format!("const GS: u32 = {}u;", g.size),
                    ),
                    (
                        "const GH: u32 = 1u;",
                        format!("const GH: u32 = {}u;", g.has_min as u32),
                    ),
                    ("const GZ: i32 = 0;", format!("const GZ: i32 = {};", g.zero)),
                ] {
                    if !reader.contains(line) {
                        return Err(backend_err(format!(
                            "weight_groups.wgsl has no `{line}` line to set the layout's constant"
                        )));
                    }
                    reader = reader.replace(line, &value);
                }
                src = src
                    .replace(WT_F32, "alias WT = u32;")
                    .replace(WVAL_F32, &reader);
            }
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(op),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipe = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(backend_err(format!(
                "shader {op}.wgsl entry `{entry}` ({} weights): {e}",
                v.weights
            )));
        }
        let pipe = Arc::new(pipe);
        lock(&self.pipelines).insert(key, pipe.clone());
        Ok(pipe)
    }

    /// Records one dispatch of `op.wgsl`'s `entry` with uniform `params` at binding 0 and
    /// `bufs` at their binding numbers; `variant` selects a build of the shader.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        op: &'static str,
        entry: &'static str,
        variant: Variant,
        params: &P,
        bufs: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let pipe = self.pipeline(op, entry, variant)?;
        let bytes = bytemuck::bytes_of(params);
        debug_assert!(bytes.len() <= SLOT && bytes.len().is_multiple_of(16));
        let mut pend = lock(&self.pending);
        if pend.uniforms.len() >= ARENA_SLOTS * SLOT {
            self.flush_locked(&mut pend);
        }
        let off = pend.uniforms.len();
        pend.uniforms.extend_from_slice(bytes);
        pend.uniforms.resize(off + SLOT, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset: off as u64,
                size: NonZeroU64::new(bytes.len() as u64),
            }),
        }];
        entries.extend(bufs.iter().map(|(i, b)| wgpu::BindGroupEntry {
            binding: *i,
            resource: b.as_entire_binding(),
        }));
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        });
        let enc = pend.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        drop(pend);
        self.check()
    }

    fn flush_locked(&self, pend: &mut Pending) {
        if let Some(enc) = pend.encoder.take() {
            self.queue.write_buffer(&self.arena, 0, &pend.uniforms);
            self.queue.submit([enc.finish()]);
        }
        pend.uniforms.clear();
    }

    /// Records a copy of `bytes` bytes of `buf` from offset `from` to offset `to` (multiples
    /// of 4, ranges apart), ordered after the dispatches recorded before it. WebGPU copies
    /// only between two buffers, so it goes through one scratch buffer, reused: commands of
    /// an encoder run in order, so copies recorded together never overlap in it (a buffer
    /// per copy had held every copied prefix at once until the next submission).
    pub fn copy_within(&self, buf: &wgpu::Buffer, from: u64, to: u64, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let mut kept = lock(&self.scratch);
        if kept.as_ref().is_none_or(|s| s.size() < bytes) {
            // A smaller one still in a recorded copy lives until that has run.
            *kept = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy_within"),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let scratch = kept.as_ref().expect("set above");
        let mut pend = lock(&self.pending);
        let enc = pend.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        enc.copy_buffer_to_buffer(buf, from, scratch, 0, bytes);
        enc.copy_buffer_to_buffer(scratch, 0, buf, to, bytes);
        drop(pend);
        drop(kept);
        self.check()
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) {
        self.flush_locked(&mut lock(&self.pending));
    }

    /// Reads the first `len` f32 of `buf` (waits for all recorded work).
    pub fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        if bytes > buf.size() {
            return Err(backend_err(format!(
                "download: {len} values asked from a buffer of {} bytes",
                buf.size()
            )));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        self.flush();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| backend_err(format!("waiting for the GPU: {e}")))?;
        rx.recv()
            .map_err(|_| backend_err("download: map callback dropped"))?
            .map_err(|e| backend_err(format!("download: mapping failed: {e}")))?;
        self.check()?;
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| backend_err(format!("download: {e}")))?;
            bytemuck::cast_slice(&view[..]).to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

/// Workgroup counts for `n` invocations of `per` threads each, folded into 2-D so that no
/// dimension passes the 65535 limit (shaders rebuild the index from `num_workgroups`).
pub fn groups_1d(n: usize, per: usize) -> [u32; 3] {
    let g = n.div_ceil(per);
    let x = g.min(65535);
    [x as u32, g.div_ceil(x.max(1)) as u32, 1]
}
