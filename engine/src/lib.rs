//! dlp-engine: the backend-agnostic core of dlp-run.
//!
//! - [`backend::Backend`]: the op-level trait every backend implements; [`cpu::CpuBackend`] is
//!   the reference.
//! - [`model::Model`]: the Llama-family forward pass, written once over the trait, with the
//!   sentence-level fused multi-LoRA of DLP-LoRA applied to every targeted linear layer.
//! - Loaders: HF safetensors directories, GGUF files, PEFT adapters, tokenizers and chat
//!   templates.
//! - [`generate`]: KV cache, batched prefill/decode of many sequences with different mixtures.

pub mod backend;
pub mod config;
pub mod constraint;
pub mod cpu;
pub mod error;
pub mod gbnf;
pub mod generate;
pub mod kv_cache;
pub mod loader;
pub mod lora;
pub mod model;
pub mod prefix;
pub mod rope_table;
pub mod sampler;
pub mod scheduler;
pub mod structured;
pub mod tensor;
pub mod tokenizer;
pub mod weight_groups;

pub use backend::{AttnShape, Backend, LoraStackHost, StepPlan, StepShape, Xielu, NO_ADAPTER};
pub use config::{Arch, ModelConfig};
pub use error::{Error, Result};
pub use sampler::{Sampler, SamplingParams};
pub use tensor::{HostTensor, WeightMap};

/// The linear modules of a decoder layer that a LoRA can target (PEFT's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraModule {
    /// `self_attn.q_proj`
    Q,
    /// `self_attn.k_proj`
    K,
    /// `self_attn.v_proj`
    V,
    /// `self_attn.o_proj`
    O,
    /// `mlp.gate_proj`
    Gate,
    /// `mlp.up_proj`
    Up,
    /// `mlp.down_proj`
    Down,
}

impl LoraModule {
    /// All modules, in forward order.
    pub const ALL: [LoraModule; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// PEFT's short name (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The HF tensor-name stem inside a layer (`self_attn.q_proj`, ...).
    pub const fn hf_path(self) -> &'static str {
        match self {
            Self::Q => "self_attn.q_proj",
            Self::K => "self_attn.k_proj",
            Self::V => "self_attn.v_proj",
            Self::O => "self_attn.o_proj",
            Self::Gate => "mlp.gate_proj",
            Self::Up => "mlp.up_proj",
            Self::Down => "mlp.down_proj",
        }
    }

    /// Parses PEFT's short name.
    pub fn from_peft_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.peft_name() == s)
    }

    /// Index in [`LoraModule::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}
