//! Choosing and creating the compute backend a command runs on: `--backend`, or under `auto`
//! CUDA, then a wgpu GPU, then the CPU; backend-specific flags checked against the choice.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use anyhow::Context;
use anyhow::{bail, Result};
use clap::ValueEnum;
use dlp_engine::cpu::{CpuBackend, CpuOptions};
use dlp_engine::Backend;

use crate::common::{BackendChoice, ModelArgs};

/// Something to run with whichever backend was chosen (a generic closure).
pub trait WithBackend {
    /// The result.
    type Out;
    /// Runs with `backend`.
    fn run<B: Backend>(self, backend: B) -> Result<Self::Out>;
}

/// Creates the backend that `model` asks for (`--backend`, `--wgpu-f16-weights`) and runs
/// `job` on it.
pub fn with_backend<J: WithBackend>(model: &ModelArgs, job: J) -> Result<J::Out> {
    let (choice, chosen_by) = backend_for_flags(model)?;
    let f16 = model.wgpu_f16_weights;
    if model.cpu_amx && !dlp_engine::cpu::amx_available() {
        bail!("--cpu-amx: this CPU or OS has no AMX-BF16 (needs AMX-TILE and AMX-BF16 in CPUID, AVX-512, and Linux granting the tile state)");
    }
    let cpu = || {
        CpuBackend::with_options(CpuOptions {
            lora_f16: model.lora_f16,
            amx: model.cpu_amx,
            int8: model.cpu_int8,
        })
    };
    match choice {
        BackendChoice::Auto => {
            #[cfg(feature = "cuda")]
            match dlp_cuda::CudaBackend::new(0) {
                Ok(b) => return job.run(b),
                Err(e) => tracing::info!("auto backend: no CUDA ({e})"),
            }
            #[cfg(feature = "wgpu")]
            if gpu_device_present() {
                // Vulkan drivers print warnings of their own while probing (Mesa's
                // `XDG_RUNTIME_DIR is invalid` on a headless machine): not ours to show.
                match crate::stderr::quiet(|| {
                    dlp_wgpu::WgpuBackend::new(dlp_wgpu::AdapterPolicy::HardwareOnly)
                }) {
                    Ok(b) => return job.run(b),
                    Err(e) => tracing::info!("auto backend: no wgpu GPU ({e}); using cpu"),
                }
            } else {
                tracing::info!("auto backend: no GPU device on this machine; using cpu");
            }
            job.run(cpu())
        }
        BackendChoice::Cpu => job.run(cpu()),
        BackendChoice::Wgpu => wgpu_backend(job, f16, chosen_by),
        BackendChoice::Cuda => cuda_backend(job, model, chosen_by),
    }
}

/// The backend to run: `--backend`, or with `auto` the one that backend-specific flags name
/// (`--cpu-amx` asks for the CPU, `--cuda-bf16-weights` for CUDA). A flag for another backend
/// than `--backend`'s, or flags for two backends under `auto`, are an error naming them.
/// Also returns, under `auto`, the flag that chose the backend (`--cuda-bf16-weights`), for
/// messages; None where `--backend` named it.
fn backend_for_flags(model: &ModelArgs) -> Result<(BackendChoice, Option<&'static str>)> {
    let groups = [
        (
            BackendChoice::Cpu,
            vec![
                (model.lora_f16, "--lora-f16"),
                (model.cpu_amx, "--cpu-amx"),
                (model.cpu_int8, "--cpu-int8"),
            ],
        ),
        (
            BackendChoice::Cuda,
            vec![
                (model.cuda_bf16_weights, "--cuda-bf16-weights"),
                (model.cuda_bf16_compute, "--cuda-bf16-compute"),
                (model.cuda_lora_bf16, "--cuda-lora-bf16"),
                (model.cuda_kv_bf16, "--cuda-kv-bf16"),
                (!model.cuda_experimental.is_empty(), "--cuda-experimental"),
            ],
        ),
        (
            BackendChoice::Wgpu,
            vec![(model.wgpu_f16_weights, "--wgpu-f16-weights")],
        ),
    ];
    // The first flag given of each backend.
    let asked: Vec<(BackendChoice, &str)> = groups
        .iter()
        .filter_map(|(b, flags)| flags.iter().find(|f| f.0).map(|f| (*b, f.1)))
        .collect();
    let name = |b: BackendChoice| {
        b.to_possible_value()
            .map_or_else(|| format!("{b:?}"), |v| v.get_name().to_string())
    };
    let (choice, chosen_by) = match (model.backend, &asked[..]) {
        (BackendChoice::Auto, [(b, flag)]) => {
            tracing::info!("{flag}: using --backend {}", name(*b));
            (*b, Some(*flag))
        }
        (BackendChoice::Auto, [(b1, f1), (b2, f2), ..]) => bail!(
            "{f1} is for --backend {} and {f2} for --backend {}: give one backend's flags",
            name(*b1),
            name(*b2)
        ),
        (b, _) => (b, None),
    };
    if let Some((b, flag)) = asked.iter().find(|(b, _)| *b != choice) {
        bail!(
            "{flag} needs --backend {} (the backend asked for is {})",
            name(*b),
            name(choice)
        );
    }
    Ok((choice, chosen_by))
}

/// Whether the machine shows a GPU device to probe (Linux: a DRM render node, an NVIDIA device,
/// WSL's GPU); elsewhere, assume it may.
#[cfg(feature = "wgpu")]
fn gpu_device_present() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let render_node = std::fs::read_dir("/dev/dri").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    });
    render_node
        || std::path::Path::new("/dev/nvidia0").exists()
        || std::path::Path::new("/dev/dxg").exists()
}

/// `--backend wgpu`: the best adapter, a software one (lavapipe, llvmpipe) included; with
/// `f16`, weights stored as f16 (`--wgpu-f16-weights`).
#[cfg(feature = "wgpu")]
fn wgpu_backend<J: WithBackend>(job: J, f16: bool, _chosen_by: Option<&str>) -> Result<J::Out> {
    let opts = dlp_wgpu::WgpuOptions {
        f16_weights: f16,
        ..Default::default()
    };
    // What the driver prints while the adapter opens (Mesa's `XDG_RUNTIME_DIR is invalid`,
    // twice, on a headless machine) is shown with -vv, or with the error if opening fails.
    let (b, driver) = crate::stderr::captured(|| {
        dlp_wgpu::WgpuBackend::with_options(dlp_wgpu::AdapterPolicy::AllowSoftware, opts)
    });
    let driver = driver.trim();
    if !driver.is_empty() {
        tracing::debug!("the Vulkan driver said while opening the adapter:\n{driver}");
    }
    let b = b.with_context(|| {
        let flags = if f16 {
            "--backend wgpu --wgpu-f16-weights"
        } else {
            "--backend wgpu"
        };
        match driver {
            "" => flags.to_string(),
            said => format!("{flags} (the driver said: {said})"),
        }
    })?;
    tracing::info!("backend {}", b.name());
    job.run(b)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_backend<J: WithBackend>(_job: J, _f16: bool, chosen_by: Option<&str>) -> Result<J::Out> {
    not_in_build("wgpu", "wgpu", chosen_by)
}

/// The error for a backend this build lacks, naming what asked for it: `--backend`, or under
/// `auto` the backend's flag (`--cuda-kv-bf16`), which was the one given.
#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
fn not_in_build<T>(backend: &str, name: &str, chosen_by: Option<&str>) -> Result<T> {
    let rebuild = format!("rebuild with `--features {backend}`");
    match chosen_by {
        None => bail!("--backend {backend}: this build has no {name} backend ({rebuild})"),
        Some(flag) => bail!(
            "{flag} is a flag of the {name} backend, which this build does not have \
             ({rebuild}, or leave out the --{backend}-* flags)"
        ),
    }
}

/// `--backend cuda`: device 0; a clear error (not a panic) without a driver or GPU.
#[cfg(feature = "cuda")]
fn cuda_backend<J: WithBackend>(
    job: J,
    model: &ModelArgs,
    chosen_by: Option<&str>,
) -> Result<J::Out> {
    use crate::common::CudaExperimental;
    let on = |p| model.cuda_experimental_on(p);
    let opts = dlp_cuda::CudaOptions {
        bf16_weights: model.cuda_bf16_weights,
        bf16_compute: model.cuda_bf16_compute,
        lora_bf16: model.cuda_lora_bf16,
        kv_bf16: model.cuda_kv_bf16,
        experimental: dlp_cuda::Experimental {
            decode_matvec: on(CudaExperimental::DecodeMatvec),
            fused_lora: on(CudaExperimental::FusedLora),
            wide_grids: on(CudaExperimental::WideGrids),
            split_attention: on(CudaExperimental::SplitAttention),
            graphs: on(CudaExperimental::Graphs),
            sgmv: on(CudaExperimental::Sgmv),
            fused_norm: on(CudaExperimental::FusedNorm),
            fused_rope: on(CudaExperimental::FusedRope),
            fused_kv_store: on(CudaExperimental::FusedKvStore),
            fused_shrink: on(CudaExperimental::FusedShrink),
            dependent_launch: on(CudaExperimental::DependentLaunch),
            batch_lora: on(CudaExperimental::BatchLora),
            inline_shrink: on(CudaExperimental::InlineShrink),
            tiled_lora: on(CudaExperimental::TiledLora),
            inline_combine: on(CudaExperimental::InlineCombine),
            rope_in_attention: on(CudaExperimental::RopeInAttention),
            fused_silu: on(CudaExperimental::FusedSilu),
            norm_in_matvec: on(CudaExperimental::NormInMatvec),
            kv_copy: on(CudaExperimental::KvCopy),
            expand_launch: on(CudaExperimental::ExpandLaunch),
            lora_prefetch: on(CudaExperimental::LoraPrefetch),
            device_argmax: on(CudaExperimental::DeviceArgmax),
            device_sampling: on(CudaExperimental::DeviceSampling),
            packed_upload: on(CudaExperimental::PackedUpload),
        },
        poison_scratch: false,
        tune: None,
    };
    let flags = model.cuda_flags();
    let b = dlp_cuda::CudaBackend::with_options(0, opts).with_context(|| match chosen_by {
        None => flags.clone(),
        // `--backend cuda` was not given: say what chose it.
        Some(flag) => format!("{flag} asks for the CUDA backend ({flags})"),
    })?;
    let (name, dev, arch) = (b.name(), b.device_name(), b.arch());
    tracing::info!("backend {name} ({dev}, {arch}, {flags})");
    job.run(b)
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend<J: WithBackend>(
    _job: J,
    _model: &ModelArgs,
    chosen_by: Option<&str>,
) -> Result<J::Out> {
    not_in_build("cuda", "CUDA", chosen_by)
}
