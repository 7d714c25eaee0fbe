//! Apertus 1.5's pruned output head ([`pruned_head`]), and ApertusConfig's RoPE default: where a config sets no RoPE settings (no `rope_parameters`,
//! or null, and no `rope_scaling` either, or an empty one), ApertusConfig's own, Llama 3's
//! scaling at base 12e6, in which a top-level `rope_theta` is not read (transformers 5.25
//! ignores it there too). An empty `rope_parameters` is a setting: default RoPE.

use std::path::Path;

use serde_json::{json, Value};

use super::rope;
use crate::error::{Error, Result};

/// The `(logits, embedding rows)` of an Apertus 1.5 text config (`apertus1p5_text`,
/// Apertus1p5TextConfig): `output_vocab_size` logits where it is set and below `vocab_size`
/// (its lm_head pruned to the text-only ids `0..output_vocab_size`; the embedding keeps
/// `vocab_size` rows), `(vocab_size, Some(vocab_size))` then; `(vocab_size, None)` where it is
/// null, absent or equal (the config class's canonical unpruned form).
///
/// # Errors
/// An `output_vocab_size` outside `1..=vocab_size` (Apertus1p5TextConfig refuses it), or a
/// pruned head with `tie_word_embeddings` (a head of other rows than the embedding's cannot
/// be tied to it; the released checkpoints are untied).
pub(super) fn pruned_head(v: &Value, tie: bool, path: &Path) -> Result<(usize, Option<usize>)> {
    let f = super::Fields { v, path };
    let vocab = f.usize("vocab_size")?;
    let out = match v.get("output_vocab_size").filter(|o| !o.is_null()) {
        None => return Ok((vocab, None)),
        Some(_) => f.usize("output_vocab_size")?,
    };
    match out {
        o if o == vocab => Ok((vocab, None)),
        o if o == 0 || o > vocab => Err(Error::format(
            path,
            format!("`output_vocab_size` is {o}; expected 1 to `vocab_size` ({vocab}), or null for an unpruned head"),
        )),
        _ if tie => Err(Error::unsupported(format!(
            "{}: `tie_word_embeddings` with a pruned head (`output_vocab_size` {out} of `vocab_size` {vocab}): the head's rows are not the embedding's",
            path.display()
        ))),
        o => Ok((o, Some(vocab))),
    }
}

/// `v` with ApertusConfig's RoPE settings where it has none ([`rope::settings`]) and no
/// `rope_parameters` object, not even an empty one (ApertusConfig fills in only a None, and `{}`
/// then reads as default RoPE at the top-level `rope_theta` or 12e6); `v` as it is otherwise (a
/// settings object's own rules then apply: a top-level `rope_theta` fills one without a base,
/// `rope_scaling` is preferred over `rope_parameters`).
///
/// # Errors
/// RoPE settings that are not an object ([`rope::settings`]).
pub(super) fn apertus_view(v: &Value, path: &Path) -> Result<Value> {
    let mut out = v.clone();
    let own = v.get("rope_parameters").is_some_and(Value::is_object);
    if rope::settings(v, path)?.is_none() && !own {
        out["rope_parameters"] = json!({
            "rope_type": "llama3",
            "rope_theta": 12_000_000.0,
            "factor": 8.0,
            "original_max_position_embeddings": 8192,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
        });
    }
    Ok(out)
}
