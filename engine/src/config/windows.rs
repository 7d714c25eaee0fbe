//! Each layer's sliding attention window, as transformers' configs read it.

use std::path::Path;

use serde_json::Value;

use super::{gemma, Arch};
use crate::error::{Error, Result};

/// Which of `layers` layers slide with a period `p`: all but every `p`-th (layer `i` slides
/// where `i % p < p - 1`, llama.cpp's `set_swa_pattern`; transformers' Gemma 2 and 3 configs
/// write the same as `(i + 1) % p != 0`); `p` = 0: every layer.
pub(crate) fn sliding_every(layers: usize, p: usize) -> Vec<bool> {
    (0..layers).map(|i| p == 0 || i % p < p - 1).collect()
}

/// Families whose configs have no window: transformers' LlamaConfig, GemmaConfig,
/// GraniteConfig, OlmoConfig, Olmo2Config, SeedOssConfig, GlmConfig, Glm4Config, Ernie4_5Config,
/// ExaoneConfig, InternLM3Config, HeliumConfig, ArceeConfig, NemotronConfig, ApertusConfig,
/// Jais2Config and HunYuanDenseV1Config read no `layer_types`, and every layer attends to
/// everything.
fn windowless(arch: Arch) -> bool {
    match arch {
        Arch::Llama
        | Arch::Gemma
        | Arch::Granite
        | Arch::Olmo
        | Arch::Olmo2
        | Arch::SeedOss
        | Arch::Glm
        | Arch::Glm4
        | Arch::Ernie45
        | Arch::Exaone
        | Arch::InternLM3
        | Arch::Helium
        | Arch::Cohere
        | Arch::StableLm
        | Arch::Phi
        | Arch::GptNeoX
        | Arch::Falcon
        | Arch::GptJ
        | Arch::Arcee
        | Arch::Nemotron
        | Arch::Apertus
        | Arch::Jais2
        | Arch::Hunyuan => true,
        Arch::Mistral
        | Arch::Qwen2
        | Arch::Qwen3
        | Arch::Phi3
        | Arch::Gemma2
        | Arch::Gemma3
        | Arch::VaultGemma
        | Arch::SmolLM3
        | Arch::Olmo3
        | Arch::Exaone4
        | Arch::Ministral
        | Arch::Ministral3
        | Arch::Cohere2
        | Arch::Starcoder2 => false,
    }
}

/// Each layer's sliding window, as transformers reads the config: `layer_types`
/// (`sliding_attention` / `full_attention`) when given; otherwise Qwen2's and Qwen3's
/// `use_sliding_window` from layer `max_window_layers` on, or Mistral's, Phi-3's and StarCoder2's
/// `sliding_window` in every layer (Phi-3 and StarCoder2 read no `layer_types`; Ministral's
/// default 4096),
/// or Gemma 3's in every layer
/// but each `sliding_window_pattern`-th (default 6), or Gemma 2's in every other layer, or
/// OLMo 3's in three layers of four, or EXAONE 4's in all but each
/// `sliding_window_pattern`-th (default 4), or
/// SmolLM3's `use_sliding_window` in its NoPE layers (`rope_layers` false).
pub(super) fn attention_windows(
    v: &Value,
    arch: Arch,
    rope_layers: &[bool],
    path: &Path,
) -> Result<Vec<Option<usize>>> {
    let layers = rope_layers.len();
    let window = match v.get("sliding_window") {
        // The configs' default where the key is absent, 4096 (MistralConfig's and
        // MinistralConfig's too; Qwen2Config's and Qwen3Config's apply with
        // `use_sliding_window`); an explicit null is none.
        None if arch.qwen_windows()
            || matches!(
                arch,
                Arch::Mistral
                    | Arch::Ministral
                    | Arch::Gemma2
                    | Arch::Gemma3
                    | Arch::VaultGemma
                    | Arch::Olmo3
                    | Arch::Exaone4
                    | Arch::Cohere2
            ) =>
        {
            Some(4096)
        }
        None | Some(Value::Null) => None,
        Some(x) => Some(x.as_u64().filter(|&w| w > 0).ok_or_else(|| {
            Error::format(
                path,
                format!("field `sliding_window`: expected a positive integer or null, found {x}"),
            )
        })? as usize),
    };
    // transformers' Qwen2Config and Qwen3Config keep `sliding_window` only with
    // `use_sliding_window`; a sliding layer without a window then attends to everything.
    // Qwen2Config, Qwen3Config and SmolLM3Config type it as a bool (another value is refused
    // there, and had read as false here); the other families do not read it.
    let typed = arch.qwen_windows() || arch == Arch::SmolLM3;
    let use_sliding = match v.get("use_sliding_window") {
        None | Some(Value::Null) => false,
        Some(x) if !typed => x.as_bool() == Some(true),
        Some(x) => x.as_bool().ok_or_else(|| {
            Error::format(
                path,
                format!("field `use_sliding_window`: expected true or false, found {x}"),
            )
        })?,
    };
    // SmolLM3Config's `layer_types` where none is given: sliding in its NoPE layers.
    let smollm3_default = rope_layers
        .iter()
        .map(|&r| use_sliding && window.is_some() && !r);
    let window = match arch {
        a if a.qwen_windows() && !use_sliding => None,
        _ => window,
    };
    let layer_types = v.get("layer_types").filter(|t| !t.is_null());
    let every_layer = matches!(arch, Arch::Phi3 | Arch::Starcoder2 | Arch::Ministral3);
    if let (Some(_), true) = (layer_types, every_layer) {
        // Phi3Model, Starcoder2Model and Ministral3Model apply `sliding_window` to every layer
        // whatever else the config says.
        tracing::warn!(
            "{}: layer_types is not read for {arch:?} models (transformers applies `sliding_window`, if set, in every layer)",
            path.display()
        );
    }
    if let Some(types) = layer_types.filter(|_| !every_layer) {
        // EXAONE 4.5's releases list their multi-token-prediction layers' types after the
        // model's (`num_nextn_predict_layers`); vLLM drops them, as here (those layers do not
        // run), where transformers 5.25 refuses the config.
        let mtp = match arch {
            Arch::Exaone4 => v.get("num_nextn_predict_layers").and_then(Value::as_u64),
            _ => None,
        };
        let fits = |n: usize| n == layers || mtp.is_some_and(|m| n as u64 == layers as u64 + m);
        let with_mtp = match mtp {
            Some(m) if m > 0 => {
                format!(", or {} with the {m} prediction layers'", layers as u64 + m)
            }
            _ => String::new(),
        };
        let types = types.as_array().filter(|a| fits(a.len())).ok_or_else(|| {
            Error::format(path, format!("field `layer_types`: expected a list of {layers} strings (one per layer{with_mtp}), found {types}"))
        })?;
        // Every entry checked; the prediction layers' then dropped.
        let mut sliding = (types.iter().enumerate())
            .map(|(i, t)| match t.as_str() {
                Some("full_attention") => Ok(false),
                Some("sliding_attention") => Ok(true),
                _ => Err(Error::unsupported(format!(
                    "{}: layer_types[{i}] = {t} (supported: full_attention, sliding_attention)",
                    path.display()
                ))),
            })
            .collect::<Result<Vec<bool>>>()?;
        sliding.truncate(layers);
        let asks = sliding.contains(&true);
        if asks && windowless(arch) {
            tracing::warn!(
                "{}: layer_types asks for sliding attention, which {arch:?} models do not have (transformers ignores it); every layer attends to the whole context",
                path.display()
            );
        }
        if asks && arch.qwen_windows() && window.is_none() {
            tracing::warn!(
                "{}: layer_types has sliding_attention layers but no window (`use_sliding_window` is not true, or `sliding_window` is null; transformers fails on them at run time); they attend to the whole context",
                path.display()
            );
        }
        return (sliding.iter().enumerate())
            .map(|(i, &s)| match (s, window) {
                (false, _) => Ok(None),
                _ if windowless(arch) => Ok(None),
                (true, w) if arch.qwen_windows() => Ok(w),
                // SmolLM3's sliding mask reads `sliding_window` whatever `use_sliding_window`
                // says (transformers' eager and SDPA attention).
                (true, Some(w)) => Ok(Some(w)),
                // transformers fails on these at run time (Olmo3Attention, for one).
                (true, None) => Err(Error::format(
                    path,
                    format!(
                        "layer_types[{i}] is sliding_attention but `sliding_window` is not set"
                    ),
                )),
            })
            .collect();
    }
    Ok(match arch {
        Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma | Arch::Olmo3 | Arch::Exaone4 => {
            let sliding = match arch {
                // Olmo3Config's `layer_types` where none is given.
                Arch::Olmo3 => sliding_every(layers, 4),
                Arch::Exaone4 => exaone4_sliding(v, layers, window.is_some(), path)?,
                _ => gemma::gemma_sliding(v, arch, layers, path)?,
            };
            match window {
                Some(_) => sliding.iter().map(|&s| window.filter(|_| s)).collect(),
                None if sliding.contains(&true) => {
                    return Err(Error::format(
                        path,
                         "`sliding_window` is null, but Gemma 2's, Gemma 3's, VaultGemma's, OLMo 3's and EXAONE 4's sliding layers need one",
                    ))
                }
                None => vec![None; layers],
            }
        }
        // Cohere2Config's `layer_types` where none is given: all but each
        // `sliding_window_pattern`-th (default 4). Cohere2Model makes a sliding mask whatever
        // the layers, and fails without a window.
        Arch::Cohere2 => {
            let sliding = pattern_sliding(v, layers, path)?;
            let Some(w) = window else {
                return Err(Error::format(
                    path,
                    "`sliding_window` is null, but Cohere 2 needs one (transformers' Cohere2Model fails without it)",
                ));
            };
            sliding.iter().map(|&s| s.then_some(w)).collect()
        }
        // MinistralConfig's `layer_types` where none is given: every layer slides. Ministral
        // 3's attention reads `sliding_window` (absent: none) and no `layer_types`.
        Arch::Mistral | Arch::Phi3 | Arch::Ministral | Arch::Ministral3 | Arch::Starcoder2 => {
            vec![window; layers]
        }
        Arch::SmolLM3 => smollm3_default.map(|s| window.filter(|_| s)).collect(),
        Arch::Qwen2 | Arch::Qwen3 => {
            let from = v
                .get("max_window_layers")
                .and_then(|x| x.as_u64())
                .map_or(28, |x| x as usize); // Qwen2Config's and Qwen3Config's default
            (0..layers).map(|i| window.filter(|_| i >= from)).collect()
        }
        // The families [`windowless`] lists (its match names every family).
        _ => vec![None; layers],
    })
}

/// Cohere 2's sliding layers where the config lists no `layer_types`, as Cohere2Config makes
/// them: all but each `sliding_window_pattern`-th layer (default 4).
///
/// # Errors
/// A pattern that is not a positive integer (Cohere2Config divides by it).
fn pattern_sliding(v: &Value, layers: usize, path: &Path) -> Result<Vec<bool>> {
    let key = "sliding_window_pattern";
    let period = match v.get(key) {
        None => 4,
        Some(x) => x.as_u64().filter(|&p| p > 0).ok_or_else(|| {
            Error::format(
                path,
                format!("field `{key}`: expected a positive integer (a full-attention layer every that many), found {x}"),
            )
        })?,
    };
    Ok(sliding_every(
        layers,
        period.min(layers as u64 + 1) as usize,
    ))
}

/// EXAONE 4's sliding layers where the config lists no `layer_types`, as Exaone4Config makes
/// them: all but each `sliding_window_pattern`-th layer (default 4).
///
/// # Errors
/// Where Exaone4Config fails: a pattern that is a string (its `"LLLG"` form, which it
/// documents but does not read without `layer_types`), not an integer, or 0 (also what a null
/// `sliding_window` makes it), which it divides by.
fn exaone4_sliding(v: &Value, layers: usize, windowed: bool, path: &Path) -> Result<Vec<bool>> {
    let key = "sliding_window_pattern";
    // A null window makes Exaone4Config's pattern 0.
    let period = match v.get(key) {
        None => Some(4),
        Some(x) => x.as_u64(),
    }
    .filter(|&p| p > 0 && windowed);
    let period = period.ok_or_else(|| {
        Error::format(
            path,
            format!(
                "no `layer_types`, and `{key}` is {} with `sliding_window` {}: transformers' Exaone4Config makes the layer types only from a positive integer pattern with a window; list `layer_types`",
                v.get(key).map_or("absent".into(), |x| x.to_string()),
                v.get("sliding_window").map_or("absent".into(), |x| x.to_string()),
            ),
        )
    })?;
    Ok(sliding_every(
        layers,
        period.min(layers as u64 + 1) as usize,
    ))
}
