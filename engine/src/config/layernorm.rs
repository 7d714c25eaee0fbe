//! What the configs of the LayerNorm-with-bias families add to the Llama reading
//! (`StableLmConfig`, `Starcoder2Config`, `PhiConfig`, `GPTNeoXConfig`, `FalconConfig`,
//! `GPTJConfig`): their bias keys, the parallel block, and the query/key LayerNorms
//! (StableLM 2 12B's and Command R+'s per head; Phi's shared one, refused).

use std::path::Path;

use serde_json::Value;

use super::fields::Fields;
use super::Arch;
use crate::error::{Error, Result};

/// `(q/k/v, o_proj, feed-forward)` biases of StableLM (`use_qkv_bias`, default false; its
/// o_proj and MLP have none), StarCoder2 (`use_bias`, default true, on every projection), Phi
/// (always, every projection), GPT-NeoX (`attention_bias`, default true, on the attention's;
/// the MLP's always), Falcon (`bias`, default false, on every linear) and GPT-J (its MLP's
/// only); `None` for the other families (read as Llama's).
///
/// # Errors
/// A key that is not true or false.
pub(super) fn biases(v: &Value, arch: Arch, path: &Path) -> Result<Option<(bool, bool, bool)>> {
    let f = Fields { v, path };
    Ok(match arch {
        Arch::StableLm => Some((f.bool_or("use_qkv_bias", false)?, false, false)),
        Arch::Starcoder2 => {
            let b = f.bool_or("use_bias", true)?;
            Some((b, b, b))
        }
        Arch::Phi => Some((true, true, true)),
        // GPTNeoXAttention's query_key_value and dense with `attention_bias`; its MLP always.
        Arch::GptNeoX => {
            let b = f.bool_or("attention_bias", true)?;
            Some((b, b, true))
        }
        // GPTJAttention's linears have none, GPTJMLP's have theirs.
        Arch::GptJ => Some((false, false, true)),
        // FalconLinear's `bias` on every linear (a null is none, as in FalconConfig).
        Arch::Falcon => {
            let b = f.bool_or("bias", false)?;
            Some((b, b, b))
        }
        _ => None,
    })
}

/// Whether each head's query and key go through a LayerNorm with a weight per head
/// ([`super::ModelConfig::qk_norm_per_head`]): StableLM's `qk_layernorm` (StableLM 2 12B's),
/// Cohere's `use_qk_norm` (Command R+'s); default false. Cohere2Attention reads no
/// `use_qk_norm`.
///
/// # Errors
/// A key that is not true or false; Phi's `qk_layernorm` (one LayerNorm with a bias shared by
/// the heads, which no released Phi checkpoint sets), refused.
pub(super) fn qk_norm_per_head(v: &Value, arch: Arch, path: &Path) -> Result<bool> {
    let f = Fields { v, path };
    match arch {
        Arch::StableLm => f.bool_or("qk_layernorm", false),
        Arch::Cohere => f.bool_or("use_qk_norm", false),
        Arch::Phi if f.bool_or("qk_layernorm", false)? => Err(Error::unsupported(format!(
            "{}: Phi's `qk_layernorm` (one LayerNorm with a bias for every head's query and key) is not supported",
            path.display()
        ))),
        _ => Ok(false),
    }
}

/// Whether attention and the feed-forward sit side by side ([`super::ModelConfig::parallel_residual`]):
/// always for Cohere, Phi and GPT-J, with `use_parallel_residual` (default false for StableLM, true for
/// GPT-NeoX).
///
/// # Errors
/// A key that is not true or false.
pub(super) fn parallel_residual(v: &Value, arch: Arch, path: &Path) -> Result<bool> {
    let f = Fields { v, path };
    Ok(match arch {
        Arch::StableLm => f.bool_or("use_parallel_residual", false)?,
        Arch::GptNeoX => f.bool_or("use_parallel_residual", true)?,
        Arch::Phi | Arch::GptJ => true,
        _ => arch.is_cohere(),
    })
}
