//! The attention's head counts and width as each family's config class reads them: defaults,
//! nulls, and the widths some attention modules fix.

use std::path::Path;

use serde_json::Value;

use super::fields::Fields;
use super::Arch;
use crate::error::{Error, Result};

/// `num_key_value_heads`: `default` where absent (`None`: every query head); a null is every
/// head (the classes' `__post_init__`), but for GLM, whose attention divides by it and fails,
/// and Helium, StableLM and StarCoder2, whose typed configs take no null; Nemotron's must be
/// given (NemotronConfig keeps a missing or null count, on which its attention fails). GPT-NeoX's and
/// GPT-J's is every head whatever the config says (their configs read no such key); Falcon's is
/// its own keys' ([`super::falcon::falcon_view`]).
///
/// # Errors
/// A null where refused, or a value that is not a count.
pub(super) fn kv_heads(
    v: &Value,
    arch: Arch,
    num_heads: usize,
    default: Option<usize>,
    path: &Path,
) -> Result<usize> {
    // GPTNeoXConfig and GPTJConfig have no such key (their attention has a key/value head per
    // query head).
    if matches!(arch, Arch::GptNeoX | Arch::GptJ) {
        return Ok(num_heads);
    }
    // Falcon's, from its own keys ([`super::falcon::falcon_view`]).
    if arch == Arch::Falcon {
        return Fields { v, path }.usize("num_key_value_heads");
    }
    // Their attention fails on a null count (NemotronConfig leaves it as it is).
    let strict = arch.is_glm()
        || matches!(
            arch,
            Arch::Helium | Arch::StableLm | Arch::Starcoder2 | Arch::Nemotron
        );
    match v.get("num_key_value_heads") {
        None if arch == Arch::Nemotron => Err(Error::format(
            path,
            "missing field `num_key_value_heads` (NemotronConfig has no default: its attention fails without it)",
        )),
        Some(Value::Null) if strict => Err(Error::format(
            path,
            "field `num_key_value_heads`: expected a positive integer (null is no count)",
        )),
        Some(Value::Null) => Ok(num_heads),
        _ => Fields { v, path }.usize_or("num_key_value_heads", default.unwrap_or(num_heads)),
    }
}

/// `head_dim`: `default` where absent (`None`: hidden_size / num_attention_heads), each family's
/// null rule; Helium's heads must fill hidden_size (its o_proj is hidden x hidden), and
/// StableLM's, GPT-NeoX's, Falcon's and GPT-J's width is hidden_size / num_attention_heads
/// whatever the config says (their attention reads no `head_dim`; StableLM's rotary embedding
/// would, so a different one is refused).
///
/// # Errors
/// A null or absent width where the family's attention fails on it, a value that is not a
/// count, widths that do not fit together as above, or (Llama, Gemma 2 and 3, EXAONE 3,
/// InternLM3, GPT-NeoX, Falcon, GPT-J, Arcee, Jais 2) a hidden size the heads do not divide.
pub(super) fn head_dim(
    v: &Value,
    arch: Arch,
    hidden_size: usize,
    num_heads: usize,
    default: Option<usize>,
    path: &Path,
) -> Result<usize> {
    let f = Fields { v, path };
    // These classes' `validate_architecture`, and Falcon's and GPT-J's attention, refuse it
    // whatever `head_dim` says (GPT-J's keys named as its own).
    let (hidden_key, heads_key, why) = match arch {
        Arch::GptJ => ("n_embd", "n_head", "GPTJAttention refuses it"),
        Arch::Falcon => (
            "hidden_size",
            "num_attention_heads",
            "FalconAttention refuses it",
        ),
        Arch::Llama
        | Arch::Gemma2
        | Arch::Gemma3
        | Arch::VaultGemma
        | Arch::Exaone
        | Arch::InternLM3
        | Arch::GptNeoX
        | Arch::Arcee
        | Arch::Jais2 => (
            "hidden_size",
            "num_attention_heads",
            "its config class refuses it",
        ),
        _ => ("", "", ""),
    };
    if !why.is_empty() && !hidden_size.is_multiple_of(num_heads) {
        return Err(Error::format(
            path,
            format!(
                "{hidden_key} {hidden_size} must be a multiple of {heads_key} {num_heads} ({why})"
            ),
        ));
    }
    let head_dim = match v.get("head_dim") {
        // Qwen3Config's default (its models' heads are wider than hidden / heads), null too.
        Some(Value::Null) if arch == Arch::Qwen3 => 128,
        // MinistralAttention takes MinistralConfig's null default as the width and fails.
        Some(Value::Null) | None if arch == Arch::Ministral => {
            return Err(Error::format(
                path,
                "field `head_dim`: expected a positive integer (MinistralConfig has no default width)",
            ))
        }
        // GlmAttention, Glm4Attention and CohereAttention take a null as the width and
        // fail; HeliumConfig takes none.
        Some(Value::Null) if arch.is_glm() || arch.is_cohere() || arch == Arch::Helium => {
            return Err(Error::format(
                path,
                "field `head_dim`: expected a positive integer (the default is 128; null is no width)",
            ))
        }
        // ApertusAttention and OlmoAttention read `getattr(config, "head_dim", hidden //
        // heads)`: a null is taken as the width, and fails.
        Some(Value::Null) if matches!(arch, Arch::Apertus | Arch::Olmo) => {
            return Err(Error::format(
                path,
                "field `head_dim`: expected a positive integer (null is no width; leave the key out for hidden_size / num_attention_heads)",
            ))
        }
        // GemmaConfig's, Gemma2Config's and Gemma3TextConfig's default, null too.
        Some(Value::Null) if arch.is_gemma() => 256,
        None => default.unwrap_or(hidden_size / num_heads),
        Some(Value::Null) => hidden_size / num_heads,
        Some(_) => f.usize("head_dim")?,
    };
    // HeliumAttention's o_proj is hidden x hidden.
    if arch == Arch::Helium && num_heads * head_dim != hidden_size {
        return Err(Error::format(
            path,
            format!("Helium's o_proj is hidden_size x hidden_size, so num_attention_heads {num_heads} x head_dim {head_dim} must be hidden_size {hidden_size}"),
        ));
    }
    let family = match arch {
        Arch::StableLm => Some("StableLM"),
        Arch::GptNeoX => Some("GPT-NeoX"),
        Arch::Falcon => Some("Falcon"),
        Arch::GptJ => Some("GPT-J"),
        _ => None,
    };
    if let Some(family) = family.filter(|_| head_dim != hidden_size / num_heads) {
        return Err(Error::format(
            path,
            format!("field `head_dim` = {head_dim}: {family}'s attention heads are hidden_size / num_attention_heads = {} wide (its attention reads no head_dim)", hidden_size / num_heads),
        ));
    }
    Ok(head_dim)
}
