//! What each family's transformers config class takes where a `config.json` leaves a key out,
//! and the keys some classes read under other names (`attribute_map`).

use std::path::Path;

use serde_json::Value;

use super::Arch;
use crate::error::{Error, Result};

/// One family's defaults for absent keys. A key that is present but null is read by each
/// class's own rules, in [`super::ModelConfig::from_hf_json`]. Gemma's rows are not read:
/// [`super::gemma`] fills GemmaConfig's defaults in first, as [`super::ministral3`] fills
/// Ministral3Config's ([`with_defaults`]). Rows that are not their class's
/// (kept as they were, since real checkpoints name these keys): LlamaConfig's and
/// GraniteConfig's context (2048 there), Qwen2Config's and Qwen3Config's key/value heads (32)
/// and context (32768), Phi3Config's eps (1e-5).
pub(super) struct Defaults {
    /// `num_key_value_heads`; `None`: every query head.
    pub kv_heads: Option<usize>,
    /// `head_dim`; `None`: hidden_size / num_attention_heads.
    pub head_dim: Option<usize>,
    /// The RoPE base (`rope_theta`, the class's `default_theta`).
    pub rope_theta: f64,
    /// `max_position_embeddings`.
    pub context: usize,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f64,
    /// `tie_word_embeddings`.
    pub tie: bool,
}

impl Defaults {
    /// `arch`'s defaults: transformers 5.25's config classes' but where [`Defaults`] says.
    pub(super) fn of(arch: Arch) -> Self {
        use Arch::*;
        let kv_heads = match arch {
            Glm | Glm4 | Ernie45 | InternLM3 => Some(2),
            Mistral | Ministral | Exaone => Some(8),
            Starcoder2 => Some(2),
            StableLm => Some(32),
            // HeliumConfig's default is 20 whatever the head count (Helium-1's 2B has 20 heads).
            Helium => Some(20),
            _ => None,
        };
        let head_dim = match arch {
            Qwen3 | SeedOss | Ernie45 | Glm | Glm4 | InternLM3 | Helium => Some(128),
            Gemma | Gemma2 | Gemma3 | VaultGemma => Some(256),
            _ => None,
        };
        let rope_theta = match arch {
            SmolLM3 => 2e6,
            // ApertusConfig's `default_theta`.
            Apertus => 1.2e7,
            Ernie45 | Exaone | Cohere => 5e5,
            Helium => 1e5,
            _ => 1e4,
        };
        let context = match arch {
            Olmo | Olmo2 | Olmo3 | Exaone4 | Hunyuan => 2048,
            SeedOss => 524_288,
            Glm | Glm4 | Ernie45 | Mistral | Ministral => 131_072,
            SmolLM3 | InternLM3 => 32768,
            Cohere | Cohere2 | Jais2 => 8192,
            Apertus => 65536,
            Phi | GptNeoX | Falcon | GptJ => 2048,
            _ => 4096,
        };
        let rms_norm_eps = match arch {
            _ if arch.post_norms_only() => 1e-5,
            Ernie45 | Exaone | InternLM3 | Cohere | Cohere2 | Arcee | Apertus | Hunyuan => 1e-5,
            _ if arch.norm_bias() => 1e-5,
            Glm | Glm4 => 1.5625e-7,
            Helium => 1e-8,
            _ => 1e-6,
        };
        Defaults {
            kv_heads,
            head_dim,
            rope_theta,
            context,
            rms_norm_eps,
            tie: matches!(
                arch,
                SmolLM3 | Ernie45 | Cohere | Cohere2 | Starcoder2 | Falcon
            ),
        }
    }
}

/// `v` with the keys of `defaults` (an object: a config class's defaults) that it lacks, for a
/// family whose sparse configs rely on more defaults than [`Defaults`] holds (Gemma's, Ministral
/// 3's). A key present as null stays null, for the class's own rules.
pub(super) fn with_defaults(v: &Value, defaults: Value) -> Value {
    let mut out = v.clone();
    if let (Some(out), Value::Object(d)) = (out.as_object_mut(), defaults) {
        for (key, default) in d {
            out.entry(key).or_insert(default);
        }
    }
    out
}

/// What an aliased key must hold (its class's field type; a null fails there too).
#[derive(Clone, Copy)]
enum Kind {
    Count,
    Number,
    Text,
    Flag,
}

/// `v` with the keys `arch`'s config class reads under other names (its `attribute_map`)
/// copied to the names the reader uses: EXAONE 3's `num_layers`, `layer_norm_epsilon` and
/// `activation_function`, InternLM3's `qkv_bias` and `bias`, Cohere's, StableLM's and Phi's
/// `layer_norm_eps`, StarCoder2's `norm_epsilon` and Nemotron's `norm_eps` (their norms' eps,
/// not aliases, but read as one), GPT-NeoX's `layer_norm_eps`, `rotary_pct` and `rotary_emb_base`. Where a file has both names, the
/// alias wins, as transformers sets it last. `Ok(None)`: a family without aliases.
///
/// # Errors
/// An alias holding a value of another type, or null (named as the file names it).
pub(super) fn aliased(v: &Value, arch: Arch, path: &Path) -> Result<Option<Value>> {
    use Kind::*;
    let aliases: &[(&str, &str, Kind)] = match arch {
        Arch::Exaone => &[
            ("num_layers", "num_hidden_layers", Count),
            ("layer_norm_epsilon", "rms_norm_eps", Number),
            ("activation_function", "hidden_act", Text),
        ],
        Arch::InternLM3 => &[
            ("qkv_bias", "attention_bias", Flag),
            ("bias", "mlp_bias", Flag),
        ],
        Arch::Cohere | Arch::Cohere2 | Arch::StableLm | Arch::Phi | Arch::Jais2 => {
            &[("layer_norm_eps", "rms_norm_eps", Number)]
        }
        Arch::Starcoder2 => &[("norm_epsilon", "rms_norm_eps", Number)],
        Arch::Nemotron => &[("norm_eps", "rms_norm_eps", Number)],
        // GPTNeoXConfig's RoPE keys (its `convert_rope_params_to_dict`; a value in the RoPE
        // settings wins, as there).
        Arch::GptNeoX => &[
            ("layer_norm_eps", "rms_norm_eps", Number),
            ("rotary_pct", "partial_rotary_factor", Number),
            ("rotary_emb_base", "rope_theta", Number),
        ],
        _ => return Ok(None),
    };
    let mut out = v.clone();
    let Some(o) = out.as_object_mut() else {
        return Ok(None);
    };
    // CohereConfig's norms read `layer_norm_eps` alone (an `rms_norm_eps` key is left unread),
    // as StableLM's, Phi's (and StarCoder2's `norm_epsilon`) do.
    if arch.is_cohere() || arch.norm_bias() {
        o.remove("rms_norm_eps");
    }
    for (alias, name, kind) in aliases {
        let Some(x) = v.get(*alias) else { continue };
        let (ok, want) = match kind {
            Count => (x.is_u64(), "a non-negative integer"),
            Number => (x.is_number(), "a number"),
            Text => (x.is_string(), "a string"),
            Flag => (x.is_boolean(), "true or false"),
        };
        if !ok {
            return Err(Error::format(
                path,
                format!("field `{alias}` (read as `{name}`): expected {want}, found {x}"),
            ));
        }
        o.insert(name.to_string(), x.clone());
    }
    Ok(Some(out))
}
