//! The feed-forward's activation of every family: of the gate (`act(gate) * up`: SwiGLU,
//! Gemma's GeGLU) or, where the MLP has no gate, of its up projection (`act(up)`), read from
//! each transformers config class's key and default.

use std::path::Path;

use serde_json::Value;

use super::{Arch, Fields};
use crate::error::{Error, Result};

/// The feed-forward's activation: of the gate, `act(gate) * up`, or of the ungated
/// `act(up)` ([`Arch::gated_mlp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Mistral, Qwen, Phi-3.
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`, GeGLU): Gemma; ungated: StarCoder2, Phi.
    GeluTanh,
    /// The exact GELU (`gelu`, with erf), ungated: GPT-NeoX (Pythia), Falcon.
    GeluErf,
    /// The squared ReLU (`relu2`), ungated: Arcee, Nemotron, Jais 2.
    Relu2,
    /// xIELU (`xielu`), ungated, with constants learned per layer: Apertus.
    Xielu,
}

/// The feed-forward activation of an HF config: `hidden_act` (`silu`, or `swish`, the same in
/// transformers' ACT2FN), Gemma 3's `hidden_activation` (`gelu_pytorch_tanh`), Gemma's
/// `hidden_act` (`gelu_pytorch_tanh`, or `gelu`, which GemmaConfig replaces by it).
pub(super) fn gated(v: &Value, arch: Arch, path: &Path) -> Result<Activation> {
    let f = Fields { v, path };
    let (key, default) = match arch {
        Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma => {
            ("hidden_activation", "gelu_pytorch_tanh")
        }
        Arch::Gemma => ("hidden_act", "gelu_pytorch_tanh"),
        _ => ("hidden_act", "silu"),
    };
    let act = f.str_or(key, default)?;
    match (arch, act.as_str()) {
        (Arch::Gemma, "gelu" | "gelu_pytorch_tanh") => Ok(Activation::GeluTanh),
        (Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma, "gelu_pytorch_tanh") => {
            Ok(Activation::GeluTanh)
        }
        (Arch::Gemma | Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma, other) => {
            Err(Error::unsupported(format!(
            "{}: {key} `{other}` (Gemma models use gelu_pytorch_tanh, GELU's tanh approximation)",
            path.display()
        )))
        }
        (_, "silu" | "swish") => Ok(Activation::Silu),
        (_, other) => Err(Error::unsupported(format!(
            "{}: hidden_act `{other}` (only silu, also named swish, is supported)",
            path.display()
        ))),
    }
}

/// The ungated feed-forward's activation, read as each family's config reads it: StarCoder2's
/// `hidden_act` (default `gelu_pytorch_tanh`), Phi's (`gelu_new`), GPT-NeoX's (`gelu`), Arcee's
/// and Nemotron's (`relu2`), Apertus's (`xielu`), Falcon's `activation` (`gelu`) and GPT-J's
/// `activation_function` (`gelu_new`); a null is refused for Falcon, GPT-J, Arcee, Nemotron
/// and Apertus, whose MLPs then fail. Read: GELU's tanh approximation under any of its three
/// names (transformers' PytorchGELUTanh, NewGELUActivation, FastGELUActivation; GPT-NeoX-20B's
/// `gelu_fast`), the exact GELU (`gelu`), the squared ReLU (`relu2`, ReLUSquaredActivation;
/// each family's MLP runs ACT2FN of the key) or, for Apertus, xIELU (`xielu`,
/// XIELUActivation); `None` for the other families.
///
/// # Errors
/// Another activation, or a value that is not a string.
pub(super) fn ungated(v: &Value, arch: Arch, path: &Path) -> Result<Option<Activation>> {
    let (key, default) = match arch {
        Arch::Starcoder2 => ("hidden_act", "gelu_pytorch_tanh"),
        Arch::Phi => ("hidden_act", "gelu_new"),
        Arch::GptNeoX => ("hidden_act", "gelu"),
        Arch::Falcon => ("activation", "gelu"),
        Arch::GptJ => ("activation_function", "gelu_new"),
        Arch::Arcee | Arch::Nemotron | Arch::Jais2 => ("hidden_act", "relu2"),
        Arch::Apertus => ("hidden_act", "xielu"),
        _ => return Ok(None),
    };
    let null_fails = matches!(
        arch,
        Arch::Falcon | Arch::GptJ | Arch::Arcee | Arch::Nemotron | Arch::Apertus | Arch::Jais2
    );
    if null_fails && v.get(key).is_some_and(Value::is_null) {
        return Err(Error::format(
            path,
            format!("field `{key}`: expected an activation's name (null is none)"),
        ));
    }
    match (Fields { v, path }).str_or(key, default)?.as_str() {
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Some(Activation::GeluTanh)),
        "gelu" => Ok(Some(Activation::GeluErf)),
        "relu2" => Ok(Some(Activation::Relu2)),
        // ApertusMLP's own activation, with its learned constants; not read for another
        // family (whose checkpoints have none to read).
        "xielu" if arch == Arch::Apertus => Ok(Some(Activation::Xielu)),
        other => Err(Error::unsupported(format!(
            "{}: {key} `{other}` (supported for this family: {}relu2, gelu, or GELU's tanh approximation, gelu_pytorch_tanh, gelu_new or gelu_fast)",
            path.display(),
            if arch == Arch::Apertus { "xielu, " } else { "" }
        ))),
    }
}
