//! The token ids a config names: `bos_token_id` / `eos_token_id` as read, each family's end
//! ids where its config names none, and the end ids a vocabulary can produce.

use std::path::Path;

use serde_json::Value;

use super::Arch;
use crate::error::{Error, Result};

/// `bos_token_id` / `eos_token_id`: a token id, a list of them, or null (none). Anything else
/// is an error: dropped silently, generation would never stop at the end token.
pub(super) fn ids_of(path: &Path, field: &str, v: Option<&Value>) -> Result<Vec<u32>> {
    let id = |x: &Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("field `{field}`: expected a token id (a non-negative integer), a list of them or null, found {x}"),
                )
            })
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(id).collect(),
        Some(x) => Ok(vec![id(x)?]),
    }
}

/// `eos_token_id` ([`ids_of`]), or where the config names none, its class's default for the
/// families whose default ends generation.
///
/// # Errors
/// As [`ids_of`].
pub(super) fn eos_ids(v: &Value, arch: Arch, path: &Path) -> Result<Vec<u32>> {
    Ok(match v.get("eos_token_id") {
        // GlmConfig's and Glm4Config's ends where the config names none.
        None | Some(Value::Null) if arch.is_glm() => vec![151_329, 151_336, 151_338],
        // CohereConfig's and Cohere2Config's: `<|END_OF_TURN_TOKEN|>`.
        None if arch.is_cohere() => vec![255_001],
        // ExaoneConfig's: EXAONE 3's `[|endofturn|]`. (LlamaConfig's 2, InternLM3Config's
        // and HeliumConfig's, is a placeholder no tokenizer is known to share: not set.)
        None if arch == Arch::Exaone => vec![361],
        // FalconConfig's: Falcon's `<|endoftext|>`.
        None if arch == Arch::Falcon => vec![11],
        // GPTJConfig's: GPT-2's `<|endoftext|>`.
        None if arch == Arch::GptJ => vec![50256],
        // ArceeConfig's: Llama 3's `<|end_of_text|>`, AFM's too.
        None if arch == Arch::Arcee => vec![128_001],
        // NemotronConfig's: Nemotron-4's and Minitron's `</s>`.
        None if arch == Arch::Nemotron => vec![3],
        // ApertusConfig's: Apertus's `</s>`.
        None if arch == Arch::Apertus => vec![2],
        // Jais2Config's.
        None if arch == Arch::Jais2 => vec![150_024],
        // OlmoConfig's: OLMo's `<|endoftext|>`.
        None if arch == Arch::Olmo => vec![50_279],
        eos => ids_of(path, "eos_token_id", eos)?,
    })
}

/// The end-token ids of `ids` inside a vocabulary of `vocab` tokens. One outside can never be
/// produced, so it ends nothing: it is dropped with a warning rather than refused (a config out
/// of step with its weights still runs; the other end ids, the tokenizer's and `max_tokens`
/// still end generation).
pub(super) fn end_ids_in_vocab(path: &Path, ids: &[u32], vocab: usize) -> Vec<u32> {
    let (keep, drop): (Vec<u32>, Vec<u32>) = ids.iter().partition(|&&i| (i as usize) < vocab);
    if !drop.is_empty() {
        tracing::warn!(
            "{}: end-of-sequence id(s) {drop:?} (eos_token_id; GGUF: tokenizer.ggml.eos/eot/eom_token_id or llama.cpp's end tokens by text) \
             are outside the vocabulary of {vocab} tokens and can never be produced; ignored",
            path.display()
        );
    }
    keep
}
