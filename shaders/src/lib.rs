//! dlp-run's wgpu backend: every op of [`dlp_engine::Backend`] as a WGSL compute shader
//! (`wgsl/<op>.wgsl`, named as the CPU reference's files), f32 throughout by default.
//!
//! With [`WgpuOptions::f16_weights`] (adapters with `SHADER_F16`) the large weights (matmul
//! weights, lm_head, embedding table) are stored as f16: the weight-reading shaders
//! (`matmul.wgsl`, `embedding.wgsl`) name their weights' type once (`alias WT = f32;`) and
//! are built a second time with `WT = f16` (and `enable f16;`), widening each value to f32
//! where it is read. Activations, accumulation, the KV cache, LoRA and norms stay f32.
//!
//! A GGUF's quantised matrices (Q4_K, Q8_0, ...) stay quantised on the device in either mode:
//! regrouped at upload (`dlp_engine::weight_groups`) and read by a third build of the same
//! shaders, whose `fn wval` is `wgsl/weight_groups.wgsl`'s decoder (the CPU's values exactly).
//!
//! Dispatches are recorded into one pending command encoder and submitted when something is
//! read back (or a reused buffer is overwritten), so a forward pass never waits on the GPU.
//! Weights larger than the adapter's storage binding limit are split into row blocks.

#![warn(missing_docs)]

mod backend;
mod device;
mod half;
mod ops;
mod params;

pub use backend::{WeightStore, WgpuBackend, WgpuBuf, WgpuLora, WgpuOptions, WgpuStep, WgpuWeight};
pub use device::{is_software, list_adapters, AdapterPolicy};
pub use half::{f16_bits, f16_to_f32, round_f16};

/// The WGSL source of an op family.
pub(crate) fn source(op: &str) -> &'static str {
    match op {
        "embedding" => include_str!("../wgsl/embedding.wgsl"),
        "rms_norm" => include_str!("../wgsl/rms_norm.wgsl"),
        "center" => include_str!("../wgsl/center.wgsl"),
        "matmul" => include_str!("../wgsl/matmul.wgsl"),
        "rope" => include_str!("../wgsl/rope.wgsl"),
        // The soft caps' tanh (`tanh_f32`) is appended to the shaders that cap.
        "attention" => concat!(
            include_str!("../wgsl/attention.wgsl"),
            include_str!("../wgsl/tanh.wgsl")
        ),
        // The gated activations' bindings and entry point, then each op's `op`.
        "silu_mul" => concat!(
            include_str!("../wgsl/gated.wgsl"),
            include_str!("../wgsl/silu_mul.wgsl")
        ),
        "gelu_mul" => concat!(
            include_str!("../wgsl/gated.wgsl"),
            include_str!("../wgsl/gelu_mul.wgsl")
        ),
        "add" => include_str!("../wgsl/add.wgsl"),
        "add_bias" => include_str!("../wgsl/add_bias.wgsl"),
        // The unary ops' bindings and entry point, then each op's `op`.
        "gelu" => concat!(
            include_str!("../wgsl/unary.wgsl"),
            include_str!("../wgsl/gelu.wgsl")
        ),
        "gelu_erf" => concat!(
            include_str!("../wgsl/unary.wgsl"),
            include_str!("../wgsl/gelu_erf.wgsl")
        ),
        "relu_sq" => concat!(
            include_str!("../wgsl/unary.wgsl"),
            include_str!("../wgsl/relu_sq.wgsl")
        ),
        "xielu" => concat!(
            include_str!("../wgsl/unary.wgsl"),
            include_str!("../wgsl/xielu.wgsl")
        ),
        // The in-place ops' bindings and entry point, then each op's `op`.
        "scale" => concat!(
            include_str!("../wgsl/in_place.wgsl"),
            include_str!("../wgsl/scale.wgsl")
        ),
        "clamp" => concat!(
            include_str!("../wgsl/in_place.wgsl"),
            include_str!("../wgsl/clamp.wgsl")
        ),
        "softcap" => concat!(
            include_str!("../wgsl/in_place.wgsl"),
            include_str!("../wgsl/softcap.wgsl"),
            include_str!("../wgsl/tanh.wgsl")
        ),
        "argmax" => include_str!("../wgsl/argmax.wgsl"),
        "lora" => include_str!("../wgsl/lora.wgsl"),
        "logits" => include_str!("../wgsl/logits.wgsl"),
        _ => unreachable!("no shader named {op}"),
    }
}

/// One line per wgpu adapter on this machine, for `dlp-run inspect --backends`.
pub fn describe_adapters() -> Vec<String> {
    list_adapters()
        .iter()
        .map(|i| {
            format!(
                "{} ({:?}, {:?}{}, driver {} {})",
                i.name,
                i.backend,
                i.device_type,
                if is_software(i) { ", software" } else { "" },
                i.driver,
                i.driver_info
            )
        })
        .collect()
}
