//! Model and adapter loaders. Everything is converted to f32 [`crate::HostTensor`]s under HF
//! tensor names, so the model is built the same way whatever the file format.

pub mod apertus;
pub mod exaone;
pub mod fp8;
pub mod fused;
pub mod gemma;
pub mod gguf;
pub mod multimodal;
pub mod partial_rotary;
pub mod peft;
mod peft_config;
mod peft_features;
mod peft_selector;
pub mod prefixed;
pub mod qk_norm;
mod renamed;
pub mod safetensors_dir;
pub mod source;

pub use source::ModelFiles;
