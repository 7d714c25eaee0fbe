//! What the configs of the LayerNorm-with-bias families add to the Llama reading
//! (`StableLmConfig`, `Starcoder2Config`, `PhiConfig`, `GPTNeoXConfig`, `FalconConfig`,
//! `GPTJConfig`): their bias keys, the parallel block, and the per-head
//! query/key LayerNorms that are refused.

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

/// `qk_layernorm` refused on StableLM and Phi (LayerNorms of each head's query and key, whose
/// weights differ per head in StableLM 2 12B: not supported).
///
/// # Errors
/// `qk_layernorm` true, or a value that is not true or false.
pub(super) fn refuse_qk_layernorm(v: &Value, arch: Arch, path: &Path) -> Result<()> {
    let f = Fields { v, path };
    if matches!(arch, Arch::StableLm | Arch::Phi) && f.bool_or("qk_layernorm", false)? {
        return Err(Error::unsupported(format!(
            "{}: `qk_layernorm` (LayerNorms of each head's query and key) is not supported",
            path.display()
        )));
    }
    Ok(())
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
