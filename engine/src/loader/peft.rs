//! PEFT LoRA adapters: `adapter_config.json` + `adapter_model.safetensors`, as written by
//! `save_pretrained`. Everything PEFT can express that this engine would silently get wrong
//! (DoRA, trained biases, `modules_to_save`, other PEFT types, the variants of
//! [`super::peft_features`]) is refused with a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::fused::{stored_modules, StoredModule};
use super::peft_config::parse_config;
use super::safetensors_dir::for_each_tensor;
use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::tensor::HostTensor;
use crate::LoraModule;

/// One (layer, module) of an adapter: `delta W = scale * B @ A`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `[r, in]`
    pub a: HostTensor,
    /// `[out, r]`
    pub b: HostTensor,
    /// `alpha / r` (rsLoRA: `alpha / sqrt(r)`), with rank/alpha patterns applied.
    pub scale: f32,
}

impl LoraPair {
    /// The rank of this pair.
    pub fn rank(&self) -> usize {
        self.a.shape[0]
    }

    /// A stacked module's pair (`a` `[r, in]`, `b` `[sum(rows), r]`) as one pair per part in
    /// `parts`: the same A, that part's `rows` of B (`B A x` stacked is the parts' products
    /// stacked). The caller checked B's rows.
    pub(crate) fn per_part(
        a: HostTensor,
        b: HostTensor,
        scale: f32,
        parts: &[LoraModule],
        rows: &[usize],
    ) -> Vec<(LoraModule, LoraPair)> {
        if let [part] = parts {
            return vec![(*part, LoraPair { a, b, scale })];
        }
        let mut start = 0;
        (parts.iter().zip(rows))
            .map(|(&part, &n)| {
                let b = b.gather_rows(start..start + n);
                start += n;
                let a = a.clone();
                (part, LoraPair { a, b, scale })
            })
            .collect()
    }
}

/// Where an adapter was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterFormat {
    /// A PEFT folder (`adapter_config.json` + `adapter_model.safetensors`).
    Peft,
    /// A llama.cpp LoRA GGUF ([`crate::loader::gguf::lora`]).
    LlamaCppGguf,
}

/// A loaded LoRA adapter: a PEFT folder or a llama.cpp LoRA GGUF ([`AdapterFormat`]).
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// The name it is referred to by (in mixtures, router labels).
    pub name: String,
    /// Its directory (a PEFT adapter) or file (a GGUF).
    pub dir: PathBuf,
    /// What it was read from.
    pub format: AdapterFormat,
    /// `base_model_name_or_path` from the config (a GGUF's `general.base_model.0.name`), for
    /// `inspect`.
    pub base_model: Option<String>,
    /// Default rank `r` (a GGUF: the largest of its tensors').
    pub r: usize,
    /// Default `lora_alpha` (a GGUF: `adapter.lora.alpha`, 0 where absent).
    pub alpha: f64,
    /// `use_rslora`.
    pub rslora: bool,
    /// Modules it holds weights for in some layer (sorted).
    pub targets: Vec<LoraModule>,
    /// The weights per (layer, module).
    pub pairs: BTreeMap<(usize, LoraModule), LoraPair>,
}

/// The largest scale (`alpha / r`) an adapter's module may have: past it an update only
/// drowns the base model, and `lora_alpha: 1e38` made every logit NaN; refused at load, not
/// found out as a failed request.
pub(crate) const MAX_SCALE: f32 = 1e4;

/// Where a model holds its decoder layers: `model.layers.`; a text-and-image model's (Gemma 3's,
/// Mistral 3's) `language_model.model.layers.` (transformers 4's modules and the Hub's files) or
/// `model.language_model.layers.` (transformers 5's live modules, which PEFT saves).
const DECODER_PREFIXES: [&str; 3] = [
    "model.layers.",
    "language_model.model.layers.",
    "model.language_model.layers.",
];

/// Splits `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` into
/// (3, Q's entry of `modules`, is_a, the decoder's prefix `model.layers.`). `None` for names
/// that are not LoRA A/B weights of a decoder layer's module in `modules` (the model's
/// [`stored_modules`]).
fn parse_tensor_name(
    name: &str,
    modules: &'static [StoredModule],
) -> Option<(usize, &'static StoredModule, bool, &'static str)> {
    let rest = name.strip_prefix("base_model.model.").unwrap_or(name);
    let (prefix, rest) = DECODER_PREFIXES
        .iter()
        .find_map(|p| Some((*p, rest.strip_prefix(p)?)))?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, ab) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        (m, true)
    } else {
        (rest.strip_suffix(".lora_B.weight")?, false)
    };
    let m = modules.iter().find(|m| m.hf_path == module)?;
    Some((layer, m, ab, prefix))
}

/// Why `path`, which exists and is neither a folder nor a GGUF, is not an adapter.
pub const NOT_AN_ADAPTER: &str = "is neither a directory (a PEFT adapter: adapter_config.json and adapter_model.safetensors) nor a GGUF file (a llama.cpp LoRA adapter)";

impl PeftAdapter {
    /// Loads the adapter in `dir` (a PEFT folder, or a llama.cpp LoRA GGUF file:
    /// [`crate::loader::gguf::lora`]) and checks it against the base model's shapes.
    pub fn load(name: &str, dir: &Path, cfg: &ModelConfig) -> Result<Self> {
        // A `.gguf` that is not one is refused as GGUF's reader refuses it (bad magic, ...).
        let gguf = super::gguf::is_gguf_file(dir)
            || (dir.is_file() && dir.extension().is_some_and(|e| e == "gguf"));
        let a = match gguf {
            true => super::gguf::lora::load(name, dir, cfg)?,
            false => Self::load_peft(name, dir, cfg)?,
        };
        let layers: std::collections::BTreeSet<usize> = a.pairs.keys().map(|k| k.0).collect();
        tracing::info!(
            "adapter `{name}`: {:?} from {}: {} LoRA pairs on {} layers, rank up to {}",
            a.format,
            dir.display(),
            a.pairs.len(),
            layers.len(),
            a.r
        );
        Ok(a)
    }

    /// [`PeftAdapter::load`] of a PEFT folder.
    fn load_peft(name: &str, dir: &Path, cfg: &ModelConfig) -> Result<Self> {
        if !dir.is_dir() {
            let what = match dir.exists() {
                true => NOT_AN_ADAPTER,
                false => "does not exist",
            };
            return Err(Error::invalid(format!(
                "adapter `{name}`: {} {what}",
                dir.display()
            )));
        }
        if !dir.join("adapter_config.json").exists() {
            let ggufs = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "gguf"))
                .count();
            let hint = match ggufs {
                0 => String::new(),
                n => {
                    format!("; it holds {n} .gguf files: give one of them (a llama.cpp LoRA GGUF)")
                }
            };
            return Err(Error::format(
                dir,
                format!("not a PEFT adapter folder: no adapter_config.json{hint}"),
            ));
        }
        let ac = parse_config(&dir.join("adapter_config.json"))?;
        let file = dir.join("adapter_model.safetensors");
        if !file.exists() {
            if dir.join("adapter_model.bin").exists() {
                return Err(Error::unsupported(format!(
                    "{}: only adapter_model.bin found; convert it to safetensors (python: \
                     `import torch, safetensors.torch as st; st.save_file(torch.load('adapter_model.bin'), 'adapter_model.safetensors')`)",
                    dir.display()
                )));
            }
            return Err(Error::format(dir, "missing adapter_model.safetensors"));
        }
        type Halves = (Option<HostTensor>, Option<HostTensor>);
        let mut halves: BTreeMap<(usize, &str), (&StoredModule, &str, Halves)> = BTreeMap::new();
        let mut names: BTreeMap<(usize, &str, bool), String> = BTreeMap::new();
        let modules = stored_modules(cfg.arch);
        let supported = (modules.iter().map(|m| m.peft_name()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut vision = 0;
        // Modules named as EXAONE 3's remote code, GPT-NeoX, Falcon or GPT-J name them: the
        // config's selectors and patterns name them so too, and messages do.
        let mut stored_named = std::collections::BTreeSet::new();
        for_each_tensor(&file, |own, t| {
            let llama = match cfg.arch {
                Arch::Exaone => super::exaone::llama_name(&own),
                arch if super::prefixed::applies(arch) => super::prefixed::model_name(arch, &own),
                _ => None,
            };
            let tname = llama.as_deref().unwrap_or(&own);
            // A text-and-image model's vision tower and projector (an `all-linear` adapter on
            // the whole model): text alone never reaches them.
            if super::multimodal::vision_tensor(tname) {
                vision += 1;
                return Ok(());
            }
            let Some((layer, m, is_a, prefix)) = parse_tensor_name(tname, modules) else {
                let why = super::peft_features::not_a_lora_weight(tname, &supported);
                return Err(Error::format(&file, format!("tensor `{own}`: {why}")));
            };
            if llama.is_some() {
                stored_named.insert((layer, m.hf_path));
            }
            let tname = own;
            if let Some((i, v)) = t.first_non_finite() {
                return Err(Error::format(
                    &file,
                    format!("tensor `{tname}` holds a non-finite value ({v}) at flat index {i}"),
                ));
            }
            if layer >= cfg.num_layers {
                return Err(Error::format(&file, format!(
                    "tensor `{tname}`: layer {layer}, but the base model has {} layers (an adapter for a different model?)",
                    cfg.num_layers
                )));
            }
            // With and without the `base_model.model.` prefix, two tensors can name one
            // module's A (or B): which one PEFT would take is not for this loader to guess.
            if let Some(first) = names.insert((layer, m.hf_path, is_a), tname.clone()) {
                return Err(Error::format(
                    &file,
                    format!("tensors `{first}` and `{tname}` both hold one module's LoRA weight; keep one"),
                ));
            }
            // The module's name in the model the adapter was made on (its decoder's prefix),
            // which PEFT's selectors and patterns read: a text-and-image model's decoder is not
            // at `model.layers.`.
            let (_, under, e) =
                halves
                    .entry((layer, m.hf_path))
                    .or_insert((m, prefix, (None, None)));
            if *under != prefix {
                return Err(Error::format(&file, format!(
                    "tensor `{tname}`: its module is also named under `{under}`; one model's names, please"
                )));
            }
            if is_a {
                e.0 = Some(t)
            } else {
                e.1 = Some(t)
            }
            Ok(())
        })?;
        if vision > 0 {
            tracing::warn!(
                "adapter `{name}`: {vision} tensors on the vision tower or projector left out (text only)"
            );
        }
        let mut pairs = BTreeMap::new();
        for ((layer, _), (m, prefix, (a, b))) in halves {
            let key = format!("{prefix}{layer}.{}", m.hf_path);
            let key = match (stored_named.contains(&(layer, m.hf_path)), cfg.arch) {
                (true, arch) if super::prefixed::applies(arch) => {
                    super::prefixed::stored_name(arch, &key).unwrap_or(key)
                }
                (true, _) => super::exaone::exaone_name(&key),
                (false, _) => key,
            };
            let stem = format!("base_model.model.{key}");
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (a, _) => {
                    let missing = if a.is_none() { "lora_A" } else { "lora_B" };
                    return Err(Error::format(
                        &file,
                        format!("missing tensor `{stem}.{missing}.weight`"),
                    ));
                }
            };
            let (r, scale) = ac.rank_scale(&key);
            let (n_in, rows) = m.dims(cfg);
            let n_out: usize = rows.iter().sum();
            if a.shape != [r, n_in] || b.shape != [n_out, r] {
                return Err(Error::format(&file, format!(
                    "tensor `{stem}.lora_A.weight` has shape {:?} and `lora_B` {:?}; the base model needs [{r}, {n_in}] and [{n_out}, {r}] (rank {r} from the config; an adapter for a different model?)",
                    a.shape, b.shape
                )));
            }
            // The tensors say which modules the adapter touches; PEFT's rules in the config
            // must agree (a disagreement means a config for another adapter or model).
            if let Err(why) = ac.selects(&key) {
                return Err(Error::format(
                    dir.join("adapter_config.json"),
                    format!("the weights hold LoRA for `{key}`, but under PEFT's rules the config does not target it: {why}"),
                ));
            }
            if scale.is_nan() || scale.abs() > MAX_SCALE {
                return Err(Error::format(
                    dir.join("adapter_config.json"),
                    format!("field `lora_alpha` (or its `alpha_pattern`) gives `{key}` a scale of {scale} (alpha / r{}); expected at most {MAX_SCALE:e} in magnitude", if ac.rslora { " with rsLoRA: alpha / sqrt(r)" } else { "" }),
                ));
            }
            // A stacked module's LoRA, per part (GPT-NeoX's and Falcon's q/k/v rows per head or
            // group first reordered as the base model's were).
            let b = match m.parts.len() > 1 && super::prefixed::grouped_qkv(cfg.arch) {
                true => super::prefixed::reorder_qkv(&b, cfg),
                false => b,
            };
            for (part, pair) in LoraPair::per_part(a, b, scale, m.parts, &rows) {
                pairs.insert((layer, part), pair);
            }
        }
        if pairs.is_empty() {
            return Err(Error::format(&file, "holds no LoRA weights"));
        }
        Ok(PeftAdapter {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            format: AdapterFormat::Peft,
            base_model: ac.base_model,
            r: ac.r,
            alpha: ac.alpha,
            rslora: ac.rslora,
            targets: Vec::new(),
            pairs,
        }
        .in_model_order(cfg))
    }

    /// `self` with its B's query and key rows in the order loading gave the base model's
    /// ([`super::partial_rotary`]) and `targets` listed from its pairs.
    pub(crate) fn in_model_order(mut self, cfg: &ModelConfig) -> Self {
        if let Some(order) = super::partial_rotary::config_order(cfg) {
            for ((_, m), p) in self.pairs.iter_mut() {
                if matches!(m, LoraModule::Q | LoraModule::K) {
                    super::partial_rotary::reorder_rows(&mut p.b, &order);
                }
            }
        }
        let targets: std::collections::BTreeSet<_> = self.pairs.keys().map(|k| k.1).collect();
        self.targets = targets.into_iter().collect();
        self
    }

    /// Parameters of every A and B.
    pub fn num_params(&self) -> usize {
        self.pairs.values().map(|p| p.a.numel() + p.b.numel()).sum()
    }

    /// A one-paragraph description for `inspect`.
    pub fn summary(&self) -> String {
        let params = self.num_params();
        let layers: std::collections::BTreeSet<usize> = self.pairs.keys().map(|k| k.0).collect();
        let (kind, scaling) = match self.format {
            AdapterFormat::Peft => (
                "PEFT LoRA adapter",
                format!(
                    "r = {}, lora_alpha = {}, rsLoRA = {}",
                    self.r, self.alpha, self.rslora
                ),
            ),
            AdapterFormat::LlamaCppGguf => (
                "llama.cpp LoRA adapter (GGUF)",
                format!(
                    "r = {} (largest), adapter.lora.alpha = {} (scale {}, as llama.cpp)",
                    self.r,
                    self.alpha,
                    match self.alpha == 0.0 {
                        true => "1",
                        false => "alpha / each tensor's r",
                    }
                ),
            ),
        };
        format!(
            "{kind} `{}`\n  base model: {}\n  {scaling}\n  targets: {}\n  layers: {} ({}..={})\n  parameters: {params}",
            self.name,
            self.base_model.as_deref().unwrap_or("?"),
            self.targets.iter().map(|m| m.peft_name()).collect::<Vec<_>>().join(", "),
            layers.len(),
            layers.first().unwrap_or(&0),
            layers.last().unwrap_or(&0),
        )
    }
}
