//! NoPE layers (SmolLM3's, EXAONE 4's): which layers rotate their query and key.

use std::path::Path;

use serde_json::Value;

use super::Arch;
use crate::error::{Error, Result};

/// llama.cpp's fixed NoPE step for a `smollm3` GGUF (`n_no_rope_layer_step`, set in its source
/// and read from no key), and SmolLM3Config's default `no_rope_layer_interval`.
pub(crate) const NOPE_EVERY: usize = 4;

/// Whether each of `layers` layers applies RoPE when every `interval`-th is NoPE (layer `i`
/// rotates where `(i + 1) % interval != 0`, SmolLM3Config's and llama.cpp's rule).
pub(crate) fn rope_every(layers: usize, interval: usize) -> Vec<bool> {
    (0..layers).map(|i| (i + 1) % interval != 0).collect()
}

/// Each layer's RoPE flag as transformers reads a config: SmolLM3's `no_rope_layers` (at least
/// one entry per layer, 1 = RoPE, 0 = NoPE), or, where that is null or absent, a NoPE layer
/// every `no_rope_layer_interval` (default 4) layers; every other family rotates in every
/// layer.
///
/// # Errors
/// A list shorter than the model, or with an entry that is not an integer (booleans, strings,
/// null: SmolLM3Config's typed field refuses them) or is neither 0 nor 1 (transformers reads 2
/// as RoPE; refused here as a likely mistake); an interval that is not an integer (null
/// included, as SmolLM3Config refuses it), or, where it is used, not a positive one (transformers
/// makes every layer NoPE for -1 and fails on 0).
pub(super) fn rope_layers(v: &Value, arch: Arch, layers: usize, path: &Path) -> Result<Vec<bool>> {
    if arch != Arch::SmolLM3 {
        return Ok(vec![true; layers]);
    }
    let err = |m: String| Error::format(path, m);
    // Any integer (Python's); only the default reading needs a positive one.
    let interval = match v.get("no_rope_layer_interval") {
        None => NOPE_EVERY as i128,
        Some(x) => (x.as_i64().map(i128::from).or_else(|| x.as_u64().map(i128::from))).ok_or_else(|| {
            err(format!("field `no_rope_layer_interval`: expected an integer (a NoPE layer every that many layers), found {x}"))
        })?,
    };
    if let Some(list) = v.get("no_rope_layers").filter(|l| !l.is_null()) {
        let Some(items) = list.as_array().filter(|a| a.len() >= layers) else {
            return Err(err(format!(
                "field `no_rope_layers`: expected a list of at least {layers} entries (one per layer: 1 = RoPE, 0 = NoPE), found {list}"
            )));
        };
        let mut flags = (items.iter().enumerate())
            .map(|(i, x)| match x.as_u64() {
                Some(n @ (0 | 1)) => Ok(n == 1),
                _ => Err(err(format!(
                    "field `no_rope_layers`[{i}]: expected 1 (RoPE) or 0 (NoPE), found {x}"
                ))),
            })
            .collect::<Result<Vec<bool>>>()?;
        // transformers reads the first `layers` entries only (and checks them all).
        flags.truncate(layers);
        return Ok(flags);
    }
    if interval <= 0 {
        return Err(err(format!("field `no_rope_layer_interval`: expected a positive integer (a NoPE layer every that many layers), found {interval}")));
    }
    Ok(rope_every(
        layers,
        interval.min(usize::MAX as i128) as usize,
    ))
}

/// EXAONE 4's and Cohere 2's RoPE flags, given each layer's window
/// ([`super::windows::attention_windows`]): only the sliding layers rotate and the
/// full-attention ones are NoPE (Cohere2Attention rotates where its own window is set).
/// Without a `sliding_window` (null), EXAONE 4 rotates every layer (Exaone4Attention rotates
/// where `sliding_window is None or is_sliding`); Cohere 2 has none then (refused). `None` for
/// the other families.
pub(super) fn sliding_rope_layers(
    v: &Value,
    arch: Arch,
    windows: &[Option<usize>],
) -> Option<Vec<bool>> {
    let windowed = !matches!(v.get("sliding_window"), Some(Value::Null));
    match arch {
        Arch::Exaone4 => Some(windows.iter().map(|w| !windowed || w.is_some()).collect()),
        Arch::Cohere2 => Some(windows.iter().map(Option::is_some).collect()),
        _ => None,
    }
}
