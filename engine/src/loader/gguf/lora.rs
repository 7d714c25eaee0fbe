//! llama.cpp's LoRA adapters: the GGUFs `convert_lora_to_gguf.py` writes from a PEFT folder
//! (`general.type` "adapter", `adapter.type` "lora", `adapter.lora.alpha`; per adapted
//! weight `<its GGUF name>.lora_a`, ne `[n_in, r]`, and `.lora_b`, ne `[r, n_out]`), read
//! into the pairs a PEFT adapter gives, as llama.cpp's `llama_adapter_lora_init`
//! (src/llama-adapter.cpp) reads them:
//!
//! - the adapter's `general.architecture` must be the one llama.cpp's converter writes for
//!   the base model ([`gguf_arch`]);
//! - the scale of each pair is `alpha / r`, `r` its B's rank, or 1 where alpha is 0 or absent
//!   (`llama_adapter_lora_weight::get_scale`); the converter writes PEFT's `lora_alpha` alone,
//!   so an adapter trained with rsLoRA or an `alpha_pattern` scales as llama.cpp scales it,
//!   not as PEFT did;
//! - the converter passes each pair through the base model's own tensor transforms (its
//!   `LoraTorchTensor`): a `llama`-converted B has its q/k rows permuted as the base weights
//!   are ([`super::names::permuted_qk`]; restored here), Falcon's and GPT-NeoX's q/k/v rows are
//!   regrouped [q; k; v] (the order loading gives an HF checkpoint's, so kept as they are),
//!   Phi-3's and GLM's stacked modules stay stacked (split here per part, one A);
//! - norm vectors (`*_norm.weight`, which mergekit-extract-lora adds) are skipped, as llama.cpp
//!   skips them; any other tensor that is not a `.lora_a`/`.lora_b` is refused.
//!
//! What llama.cpp would apply but this engine does not is refused by name: activated LoRA
//! (`adapter.alora.invocation_tokens`), LoRA on the token embeddings or the output head. One
//! form llama.cpp refuses is read: a pair on `attn_qkv` where the base holds q, k and v apart
//! (or the reverse), which llama.cpp applies only to a base of the same form; the product is
//! the same either way (one A, B's rows per part).

use std::collections::BTreeMap;
use std::path::Path;

use super::{names, GgufFile, GgufValue};
use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::loader::peft::{AdapterFormat, LoraPair, PeftAdapter, MAX_SCALE};
use crate::tensor::HostTensor;
use crate::LoraModule;

/// The `general.architecture` llama.cpp's converter writes for a model of `arch` (its
/// `convert_hf_to_gguf.py` registry: Mistral and InternLM3 are `llama`, OLMo 3 `olmo2`),
/// which a LoRA adapter for that model carries; `None` where llama.cpp converts no such model
/// (Ministral, Helium, GPT-J, VaultGemma).
pub fn gguf_arch(arch: Arch) -> Option<&'static str> {
    Some(match arch {
        Arch::Llama | Arch::Mistral | Arch::InternLM3 => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Qwen3 => "qwen3",
        Arch::Phi3 => "phi3",
        Arch::Gemma => "gemma",
        Arch::Gemma2 => "gemma2",
        Arch::Gemma3 => "gemma3",
        Arch::Granite => "granite",
        Arch::SmolLM3 => "smollm3",
        Arch::Olmo2 | Arch::Olmo3 => "olmo2",
        Arch::Exaone4 => "exaone4",
        Arch::SeedOss => "seed_oss",
        Arch::Glm => "chatglm",
        Arch::Glm4 => "glm4",
        Arch::Ernie45 => "ernie4_5",
        Arch::Exaone => "exaone",
        Arch::Cohere => "command-r",
        Arch::Cohere2 => "cohere2",
        Arch::StableLm => "stablelm",
        Arch::Starcoder2 => "starcoder2",
        Arch::Phi => "phi2",
        Arch::Falcon => "falcon",
        Arch::Arcee => "arcee",
        Arch::Nemotron => "nemotron",
        Arch::Jais2 => "jais2",
        Arch::Ministral3 => "mistral3",
        Arch::Hunyuan => "hunyuan-dense",
        Arch::Apertus => "apertus",
        Arch::GptNeoX => "gptneox",
        Arch::Olmo => "olmo",
        Arch::Ministral | Arch::Helium | Arch::GptJ | Arch::VaultGemma => return None,
    })
}

/// The engine's modules a layer tensor of an `arch` model holds, first rows first: Phi-3's and
/// GLM's `ffn_up` stacks gate and up; `attn_qkv` (native, or llama.cpp's `--fuse-qkv`) stacks
/// q, k and v. `None` for a module no LoRA here applies to.
fn parts(arch: Arch, module: &str) -> Option<&'static [LoraModule]> {
    use LoraModule::*;
    Some(match module {
        "attn_q" => &[Q],
        "attn_k" => &[K],
        "attn_v" => &[V],
        "attn_qkv" => &[Q, K, V],
        "attn_output" => &[O],
        "ffn_gate" => &[Gate],
        "ffn_up" if matches!(arch, Arch::Phi3 | Arch::Glm | Arch::Glm4) => &[Gate, Up],
        "ffn_up" => &[Up],
        "ffn_down" => &[Down],
        _ => return None,
    })
}

/// One adapted weight's halves as read: (A `[r, n_in]`, B `[n_out, r]`).
type Halves = (Option<HostTensor>, Option<HostTensor>);

/// The adapted weights, by (layer, GGUF name): the modules each holds ([`parts`]), its halves.
type Read = BTreeMap<(usize, String), (&'static [LoraModule], Halves)>;

/// Loads the llama.cpp LoRA GGUF at `path` as adapter `name` of a model of `cfg`.
///
/// Errors: a file that is not a LoRA adapter (`general.type`, `adapter.type`), one for another
/// architecture, an `adapter.lora.alpha` that is not an f32 (llama.cpp reads no other type) or
/// gives a scale past [`MAX_SCALE`], activated LoRA, a tensor that is not a LoRA half of a
/// decoder layer's linear module, a half without its other, shapes the base model does not
/// have, non-finite values, two tensors adapting one module.
pub fn load(name: &str, path: &Path, cfg: &ModelConfig) -> Result<PeftAdapter> {
    let f = GgufFile::open(path)?;
    let bad = |m: String| Error::format(path, m);
    let meta_str = |k: &str| f.metadata.get(k).and_then(GgufValue::as_str);
    match meta_str("general.type") {
        Some("adapter") => {}
        // Models written before the key have none.
        Some("model") | None => {
            return Err(bad(format!(
                "is a model ({}), not a LoRA adapter: pass it with -m",
                match meta_str("general.type") {
                    Some(_) => "`general.type` \"model\"",
                    None => "no `general.type` \"adapter\"",
                }
            )))
        }
        Some(other) => {
            return Err(bad(format!(
                "`general.type` is \"{other}\", expected \"adapter\" (a llama.cpp LoRA adapter)"
            )))
        }
    }
    match meta_str("adapter.type") {
        Some("lora") => {}
        Some(t) => return Err(bad(format!("`adapter.type` is \"{t}\", expected \"lora\""))),
        None => {
            return Err(bad(
                "metadata `adapter.type` is missing, expected \"lora\"".into()
            ))
        }
    }
    let Some(a) = meta_str("general.architecture") else {
        return Err(bad(
            "metadata `general.architecture` is missing: which model family the adapter is for"
                .into(),
        ));
    };
    match gguf_arch(cfg.arch) {
        Some(want) if want == a => {}
        Some(want) => {
            return Err(bad(format!(
                "an adapter for a `{a}` model (`general.architecture`), but the base model is a `{want}` one (llama.cpp refuses it too: model arch and LoRA arch mismatch)"
            )))
        }
        None => {
            return Err(Error::unsupported(format!(
                "{}: llama.cpp converts no {:?} model, so no LoRA GGUF for one is read: pass the PEFT adapter folder",
                path.display(),
                cfg.arch
            )))
        }
    }
    // Mistral's and InternLM3's adapters are `llama` ones: llama.cpp's `llama` converter wrote them.
    let file_arch = match a {
        "llama" => Arch::Llama,
        _ => cfg.arch,
    };
    let alpha = match f.metadata.get("adapter.lora.alpha") {
        None => 0.0,
        Some(GgufValue::F32(x)) if x.is_finite() => f64::from(*x),
        Some(v) => {
            return Err(bad(format!(
                "metadata `adapter.lora.alpha`: expected a finite f32 (the only type llama.cpp reads), found {v:?}"
            )))
        }
    };
    if f.metadata.contains_key("adapter.alora.invocation_tokens") {
        return Err(Error::unsupported(format!(
            "{}: activated LoRA (`adapter.alora.invocation_tokens`: the adapter applies only after its invocation tokens) is not supported",
            path.display()
        )));
    }
    let mut halves = Read::new();
    let mut norms = 0;
    for t in &f.tensors {
        let (base, is_a) = match (t.name.strip_suffix(".lora_a"), t.name.strip_suffix(".lora_b")) {
            (Some(b), _) => (b, true),
            (_, Some(b)) => (b, false),
            _ if t.name.ends_with("_norm.weight") => {
                norms += 1;
                continue;
            }
            _ => {
                return Err(bad(format!(
                    "tensor `{}` has an unexpected suffix: a LoRA adapter holds `<weight>.lora_a` and `<weight>.lora_b` (and norm vectors)",
                    t.name
                )))
            }
        };
        let adapted = names::layer_tensor(base)
            .filter(|(_, _, suffix)| *suffix == "weight")
            .and_then(|(layer, module, _)| Some((layer, parts(cfg.arch, module)?)));
        let Some((layer, parts)) = adapted else {
            return Err(bad(not_adaptable(&t.name, base)));
        };
        if layer >= cfg.num_layers {
            return Err(bad(format!(
                "tensor `{}`: layer {layer}, but the base model has {} layers (an adapter for a different model?)",
                t.name, cfg.num_layers
            )));
        }
        // Dimensions past the second of size 1 are ggml's own padding (ne is always 4 long):
        // llama.cpp reads such a half as the matrix it is.
        if t.dims.len() < 2 || t.dims[2..].iter().any(|&d| d != 1) {
            return Err(bad(format!(
                "tensor `{}` has {} dimensions {:?}; a LoRA half has 2",
                t.name,
                t.dims.len(),
                t.dims
            )));
        }
        let mut ht = f.dequantize(t)?;
        ht.shape = vec![t.dims[1] as usize, t.dims[0] as usize];
        if let Some((i, v)) = ht.first_non_finite() {
            return Err(bad(format!(
                "tensor `{}` holds a non-finite value ({v}) at flat index {i}",
                t.name
            )));
        }
        let e = &mut halves
            .entry((layer, base.to_string()))
            .or_insert((parts, (None, None)))
            .1;
        match is_a {
            true => e.0 = Some(ht),
            false => e.1 = Some(ht),
        }
    }
    if norms > 0 {
        tracing::warn!(
            "adapter `{name}`: {norms} norm vectors (`*_norm.weight`) left out, as llama.cpp leaves them out"
        );
    }
    let mut pairs = BTreeMap::new();
    // The stacked tensor each (layer, module) was read from, for messages.
    let mut from: BTreeMap<(usize, LoraModule), String> = BTreeMap::new();
    let mut rank = 0;
    for ((layer, base), (parts, (a, b))) in halves {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(bad(format!(
                "the LoRA pair of `{base}` is missing one half (`{base}.lora_a` and `{base}.lora_b` are both needed)"
            )));
        };
        if let Some(m) = parts.iter().find(|&&m| !cfg.has_module(m)) {
            return Err(bad(format!(
                "`{base}` holds LoRA for {}, which the base model does not have (an adapter for a different model?)",
                m.peft_name()
            )));
        }
        let n_in = parts.first().map_or(0, |&m| cfg.module_dims(m).0);
        let rows: Vec<usize> = parts.iter().map(|&m| cfg.module_dims(m).1).collect();
        let (n_out, r) = (rows.iter().sum::<usize>(), a.shape[0]);
        if r == 0 {
            return Err(bad(format!(
                "`{base}.lora_a` has rank 0 (ne {:?}): a LoRA pair has rank 1 or more",
                ggml_order(&a)
            )));
        }
        if a.shape != [r, n_in] || b.shape != [n_out, r] {
            return Err(bad(format!(
                "`{base}.lora_a` has ne {:?} and `.lora_b` {:?} (GGUF order); the base model needs [{n_in}, r] and [r, {n_out}] with one rank r (an adapter for a different model?)",
                ggml_order(&a),
                ggml_order(&b)
            )));
        }
        let scale = match alpha == 0.0 {
            true => 1.0,
            false => (alpha / r as f64) as f32,
        };
        if scale.abs() > MAX_SCALE {
            return Err(bad(format!(
                "metadata `adapter.lora.alpha` {alpha} gives `{base}` (rank {r}) a scale of {scale}; expected at most {MAX_SCALE:e} in magnitude"
            )));
        }
        rank = rank.max(r);
        for (part, mut pair) in LoraPair::per_part(a, b, scale, parts, &rows) {
            let heads = match part {
                LoraModule::Q => Some(cfg.num_heads),
                LoraModule::K => Some(cfg.num_kv_heads),
                _ => None,
            };
            if let Some(n) = heads.filter(|_| names::permuted_qk(file_arch)) {
                if !super::weights::unpermute_heads(&mut pair.b, n) {
                    return Err(bad(format!(
                        "`{base}.lora_b`: {} rows are not {n} heads of even size",
                        pair.b.shape[0]
                    )));
                }
            }
            if let Some(first) = from.insert((layer, part), base.clone()) {
                return Err(bad(format!(
                    "`{first}` and `{base}` both hold LoRA for layer {layer}'s {}; keep one",
                    part.peft_name()
                )));
            }
            pairs.insert((layer, part), pair);
        }
    }
    if pairs.is_empty() {
        return Err(bad("holds no LoRA tensors".into()));
    }
    Ok(PeftAdapter {
        name: name.to_string(),
        dir: path.to_path_buf(),
        format: AdapterFormat::LlamaCppGguf,
        base_model: meta_str("general.base_model.0.name").map(String::from),
        r: rank,
        alpha,
        rslora: false,
        targets: Vec::new(),
        pairs,
    }
    .in_model_order(cfg))
}

/// What a llama.cpp LoRA GGUF holds, in a few lines for `inspect` (which has no base model to
/// check it against); `None` for a GGUF that is not an adapter (`general.type`).
pub fn describe(f: &GgufFile) -> Option<String> {
    let meta_str = |k: &str| f.metadata.get(k).and_then(GgufValue::as_str);
    if meta_str("general.type") != Some("adapter") {
        return None;
    }
    let mut modules = std::collections::BTreeSet::new();
    let (mut layers, mut ranks) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let mut pairs = 0;
    for t in &f.tensors {
        let Some(base) = t.name.strip_suffix(".lora_b") else {
            continue;
        };
        pairs += 1;
        ranks.insert(t.dims.first().copied().unwrap_or(0));
        match names::layer_tensor(base) {
            Some((layer, module, _)) => {
                layers.insert(layer);
                modules.insert(module.to_string());
            }
            None => {
                modules.insert(base.to_string());
            }
        }
    }
    let (alpha, scales) = match f.metadata.get("adapter.lora.alpha") {
        Some(GgufValue::F32(a)) if !a.is_finite() => (format!("{a} (refused at load)"), vec![]),
        Some(GgufValue::F32(a)) if *a != 0.0 => {
            let s = ranks
                .iter()
                .map(|&r| format!("{} at r {r}", a / r.max(1) as f32));
            (format!("{a} (scale alpha / r)"), s.collect())
        }
        Some(GgufValue::F32(_)) | None => ("0 (scale 1)".into(), vec![]),
        Some(v) => (format!("{v:?} (not an f32: refused at load)"), vec![]),
    };
    let kind = match meta_str("adapter.type") {
        Some("lora") => String::new(),
        t => format!(" (`adapter.type` {t:?}, not \"lora\": refused at load)"),
    };
    let list =
        |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    Some(format!(
        "llama.cpp LoRA adapter{kind} for `{}` models\n  adapter.lora.alpha = {alpha}{}\n  ranks: {:?}\n  pairs: {pairs} on {}\n  layers: {} ({}..={}){}\nload it with --adapter NAME=PATH on a base model of that family (--mix NAME=W is llama.cpp's --lora-scaled PATH W)",
        meta_str("general.architecture").unwrap_or("?"),
        match scales.is_empty() {
            true => String::new(),
            false => format!(": scale {}", scales.join(", ")),
        },
        ranks,
        list(&modules),
        layers.len(),
        layers.first().unwrap_or(&0),
        layers.last().unwrap_or(&0),
        match f.metadata.contains_key("adapter.alora.invocation_tokens") {
            true => "\n  activated LoRA (adapter.alora.invocation_tokens): not supported",
            false => "",
        },
    ))
}

/// Why GGUF tensor `name` (a LoRA half of `base`) is not read.
fn not_adaptable(name: &str, base: &str) -> String {
    let layer = base
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .map(|l| l.0);
    if layer.is_some_and(|l| l.parse::<usize>().map_or(true, |n| n.to_string() != l)) {
        return format!(
            "tensor `{name}`: a layer number as llama.cpp never writes it (`blk.N.`, N in decimal without sign or leading zeros)"
        );
    }
    match base {
        "token_embd.weight" | "output.weight" => format!(
            "tensor `{name}`: LoRA on the token embeddings or the output head is not supported (only on the decoder layers' linear modules)"
        ),
        _ => format!(
            "tensor `{name}`: `{base}` is not a linear module of a decoder layer that LoRA applies to here (attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down)"
        ),
    }
}

/// `t`'s shape in GGUF order (ne0 first), as llama.cpp's messages and gguf-py show it.
fn ggml_order(t: &HostTensor) -> Vec<usize> {
    t.shape.iter().rev().copied().collect()
}
