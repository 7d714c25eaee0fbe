//! Linear modules as a model's files store them. Most architectures store each of this
//! engine's seven modules alone; Phi-3 stacks q/k/v in one matrix (`self_attn.qkv_proj`) and
//! gate/up in another (`mlp.gate_up_proj`), and its PEFT adapters adapt those. Loading splits
//! them into row blocks, so the forward pass (and each backend) sees the same seven modules
//! for every architecture: `y = W x` for a stacked `W` is the stacked products of its blocks,
//! and a LoRA `B A x` on it is, per block, the same `A` with that block's rows of `B`.

use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::tensor::WeightMap;
use crate::LoraModule;

/// A linear module as the files name it: one of the engine's modules, or several stacked by
/// rows in `parts`' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredModule {
    /// The path inside a decoder layer (`self_attn.qkv_proj`).
    pub hf_path: &'static str,
    /// The engine's modules it holds, first rows first.
    pub parts: &'static [LoraModule],
}

impl StoredModule {
    /// PEFT's short name (`qkv_proj`).
    pub fn peft_name(&self) -> &'static str {
        self.hf_path.rsplit('.').next().unwrap_or(self.hf_path)
    }

    /// Input width and the rows of each part, for `cfg`.
    pub fn dims(&self, cfg: &ModelConfig) -> (usize, Vec<usize>) {
        let n_in = cfg.module_dims(self.parts[0]).0;
        (
            n_in,
            self.parts.iter().map(|&m| cfg.module_dims(m).1).collect(),
        )
    }
}

macro_rules! single {
    ($($m:ident),*) => {
        [$(StoredModule { hf_path: LoraModule::$m.hf_path(), parts: &[LoraModule::$m] }),*]
    };
}

/// Llama, Mistral, Qwen2, Qwen3: every module alone.
const SINGLE: [StoredModule; 7] = single!(Q, K, V, O, Gate, Up, Down);

/// Phi-3 (transformers' Phi3Attention and Phi3MLP; llama.cpp's `attn_qkv` and the `ffn_up` of
/// twice the feed-forward width).
const PHI3: [StoredModule; 4] = [
    StoredModule {
        hf_path: "self_attn.qkv_proj",
        parts: &[LoraModule::Q, LoraModule::K, LoraModule::V],
    },
    SINGLE[3],
    StoredModule {
        hf_path: "mlp.gate_up_proj",
        parts: &[LoraModule::Gate, LoraModule::Up],
    },
    SINGLE[6],
];

/// The linear modules of `arch`'s decoder layers as its files store them, in forward order.
pub fn stored_modules(arch: Arch) -> &'static [StoredModule] {
    match arch {
        Arch::Phi3 => &PHI3,
        Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 => &SINGLE,
    }
}

/// Splits every stacked module's weight of `w` into its parts' weights (`qkv_proj.weight` into
/// `q_proj.weight`, `k_proj.weight`, `v_proj.weight`), kept as stored (f32 or packed blocks).
/// A layer may hold the parts already (llama.cpp writes some Phi-3 files with separate q/k/v);
/// one with neither is refused, naming the stacked tensor.
///
/// Errors: a stacked tensor whose shape is not `[sum of the parts' rows, in]`, or a missing one.
pub fn split_stacked(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    for layer in 0..cfg.num_layers {
        for m in stored_modules(cfg.arch)
            .iter()
            .filter(|m| m.parts.len() > 1)
        {
            let stem = format!("model.layers.{layer}");
            let (n_in, rows) = m.dims(cfg);
            let parts: Vec<(String, usize)> = (m.parts.iter().zip(&rows))
                .map(|(p, &r)| (format!("{stem}.{}.weight", p.hf_path()), r))
                .collect();
            let name = format!("{stem}.{}.weight", m.hf_path);
            if !w.split_rows(&name, n_in, &parts)? && !w.contains(&parts[0].0) {
                let (what, shape) = w.described(&name, &[rows.iter().sum(), n_in]);
                let parts: Vec<&str> = m.parts.iter().map(|p| p.peft_name()).collect();
                return Err(Error::format(
                    &w.origin,
                    format!(
                        "missing tensor {what} (expected shape {shape}: the rows of {} stacked)",
                        parts.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
