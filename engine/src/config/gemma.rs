//! Gemma (`GemmaForCausalLM`), Gemma 2 (`Gemma2ForCausalLM`), Gemma 3 (`Gemma3ForCausalLM`,
//! `model_type: gemma3_text`) and VaultGemma (`VaultGemmaForCausalLM`): what they add to the
//! Llama computation, read as transformers 5's GemmaConfig, Gemma2Config, Gemma3TextConfig and
//! VaultGemmaConfig read a config.json (transformers 4's keys included).

use std::path::Path;

use serde_json::Value;

use super::{Arch, Fields};
use crate::error::{Error, Result};

/// What Gemma adds to the Llama computation (transformers' GemmaModel, Gemma2Model and
/// Gemma3TextModel).
/// Its RMSNorms multiply by `1 + w`: loading adds the 1 to an HF checkpoint's norm weights
/// (llama.cpp's converter has already added it to a GGUF's), so the backends' norm is Llama's.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmaFeatures {
    /// The embedding rows are multiplied by `sqrt(hidden_size)`, in f32 (transformers'
    /// `Gemma*TextScaledWordEmbedding`; llama.cpp's `sqrtf(n_embd)`); a tied lm_head reads the
    /// table unscaled.
    pub embed_scale: f32,
    /// Gemma 2 and 3: the attention and feed-forward outputs are each normed before their residual
    /// add (`post_attention_layernorm`, `post_feedforward_layernorm`), and the feed-forward
    /// input by `pre_feedforward_layernorm`. VaultGemma has that input norm alone (Gemma's
    /// place, Gemma 2's name).
    pub sandwich_norms: bool,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (Gemma 2 and 3; llama.cpp's
    /// `f_attention_scale`), not `head_dim^-0.5` ([`super::ModelConfig::attention_scale`]).
    pub query_pre_attn_scalar: f64,
    /// Gemma 2: the scaled attention scores soft-capped, `cap * tanh(s / cap)`, before the
    /// mask and softmax (`attn_logit_softcapping`, GemmaConfig 2's default 50).
    pub attn_softcap: Option<f32>,
    /// Gemma 2: the logits soft-capped the same way (`final_logit_softcapping`, default 30).
    pub final_softcap: Option<f32>,
}

/// Gemma's features from an HF config, `None` for the other families. The soft caps
/// (`attn_logit_softcapping`, `final_logit_softcapping`) are read for Gemma 2 and Gemma 3 (whose
/// config takes them too; null: none); GemmaModel has none. Refused: bidirectional attention
/// (EmbeddingGemma).
///
/// # Errors
/// A cap or `query_pre_attn_scalar` that is not a number > 0.
pub(super) fn from_hf(
    v: &Value,
    arch: Arch,
    head_dim: usize,
    path: &Path,
) -> Result<Option<GemmaFeatures>> {
    if !arch.is_gemma() {
        return Ok(None);
    }
    let f = Fields { v, path };
    let cap = |key: &str| -> Result<Option<f32>> {
        match v.get(key).filter(|c| !c.is_null()) {
            None => Ok(None),
            Some(c) if arch == Arch::Gemma => {
                tracing::warn!(
                    "{}: `{key}` {c} is not read for Gemma (1) models (transformers' GemmaModel applies no soft cap)",
                    path.display()
                );
                Ok(None)
            }
            Some(c) => match c.as_f64().and_then(super::positive_f32) {
                Some(c) => Ok(Some(c)),
                None => Err(Error::format(
                    path,
                    format!(
                        "`{key}` is {c}; expected {}, or null for none",
                        super::POSITIVE_F32
                    ),
                )),
            },
        }
    };
    let (attn_softcap, final_softcap) = (
        cap("attn_logit_softcapping")?,
        cap("final_logit_softcapping")?,
    );
    // VaultGemmaConfig has no such key (its attention is causal whatever a file says).
    if arch != Arch::VaultGemma && f.bool_or("use_bidirectional_attention", false)? {
        return Err(Error::unsupported(format!(
            "{}: `use_bidirectional_attention` (an embedding model, not a causal LM)",
            path.display()
        )));
    }
    let hidden = f.usize("hidden_size")?;
    let query_pre_attn_scalar = match arch {
        // GemmaAttention scales by head_dim^-0.5; the others' configs default to 256.
        Arch::Gemma => head_dim as f64,
        // Null is refused, as transformers' configs refuse it (the caps' null means none).
        _ if v.get("query_pre_attn_scalar").is_some_and(Value::is_null) => {
            return Err(Error::format(
                path,
                "`query_pre_attn_scalar` is null; expected a number > 0 (the attention scale is its inverse square root)",
            ))
        }
        _ => f.f64_or("query_pre_attn_scalar", 256.0)?,
    };
    if super::positive_f32(1.0 / query_pre_attn_scalar.sqrt()).is_none() {
        return Err(Error::format(
            path,
            format!("`query_pre_attn_scalar` is {query_pre_attn_scalar}; expected a number > 0"),
        ));
    }
    Ok(Some(GemmaFeatures {
        embed_scale: (hidden as f32).sqrt(),
        sandwich_norms: matches!(arch, Arch::Gemma2 | Arch::Gemma3),
        query_pre_attn_scalar,
        attn_softcap,
        final_softcap,
    }))
}

/// Gemma's config with GemmaConfig's, Gemma2Config's or Gemma3TextConfig's defaults for absent keys
/// ([`defaults`]); for Gemma 3 its RoPE settings as
/// one config the Llama reading takes, and the local base:
/// transformers 5 writes `rope_parameters` per layer type (`full_attention`,
/// `sliding_attention`); transformers 4 `rope_theta` and `rope_scaling` for the full-attention
/// layers and `rope_local_base_freq` for the others. The returned config holds the
/// full-attention settings as its `rope_parameters` and Gemma3TextConfig's default base,
/// 1,000,000, where it gives none; the local base defaults to 10,000. Scaling the local layers
/// is refused.
pub(super) fn gemma_view(v: &Value, arch: Arch, path: &Path) -> Result<(Value, Option<f64>)> {
    let mut out = super::defaults::with_defaults(v, defaults(arch));
    if arch != Arch::Gemma3 {
        return Ok((out, None));
    }
    super::rope::per_type_only(v, "Gemma 3", path)?;
    let per_type = v
        .get("rope_parameters")
        .filter(|p| p.get("full_attention").is_some() || p.get("sliding_attention").is_some());
    let local = match per_type {
        Some(p) => {
            // Gemma3TextConfig updates the full-attention settings with `rope_scaling`.
            let mut full = p.get("full_attention").cloned().unwrap_or(Value::Null);
            if let (Value::Object(f), Some(Value::Object(s))) = (&mut full, v.get("rope_scaling")) {
                f.extend(s.clone());
                out.as_object_mut().map(|o| o.remove("rope_scaling"));
            }
            out["rope_parameters"] = full;
            match p.get("sliding_attention") {
                None | Some(Value::Null) => None,
                Some(s @ Value::Object(_)) => Some(s),
                Some(x) => {
                    return Err(Error::format(
                        path,
                        format!(
                            "`rope_parameters.sliding_attention`: expected an object, found {x}"
                        ),
                    ))
                }
            }
        }
        None => None,
    };
    let top_local = Fields { v, path }.f64_or("rope_local_base_freq", 10000.0)?;
    let local_theta = match local {
        Some(s) => {
            let kind = s
                .as_object()
                .and_then(super::rope::kind)
                .unwrap_or("default");
            if kind != "default" {
                return Err(Error::unsupported(format!(
                    "{}: `rope_parameters.sliding_attention` of type `{kind}`: the sliding-window layers' RoPE is read unscaled",
                    path.display()
                )));
            }
            Fields { v: s, path }.f64_or("rope_theta", top_local)?
        }
        None => top_local,
    };
    if !(local_theta.is_finite() && local_theta > 0.0) {
        return Err(Error::format(
            path,
            format!("the sliding-window layers' RoPE base is {local_theta}; expected a number > 0"),
        ));
    }
    let has_theta = |x: Option<&Value>| {
        x.and_then(|r| r.get("rope_theta"))
            .is_some_and(|t| !t.is_null())
    };
    if !has_theta(Some(&out))
        && !has_theta(out.get("rope_parameters"))
        && !has_theta(out.get("rope_scaling"))
    {
        out["rope_theta"] = Value::from(1_000_000.0);
    }
    // transformers 5 reads either layout as settings per layer type.
    super::rope::per_type_truncate(v, super::rope::settings(&out, path)?, path)?;
    // transformers reads a top-level `original_max_position_embeddings` for flat settings only.
    out.as_object_mut()
        .map(|o| o.remove("original_max_position_embeddings"));
    Ok((out, Some(local_theta)))
}

/// GemmaConfig's, Gemma2Config's and Gemma3TextConfig's defaults for keys a config leaves out (a sparse
/// config relies on them: the Hub's gemma-3-4b `text_config` names six keys).
fn defaults(arch: Arch) -> Value {
    match arch {
        Arch::Gemma3 => serde_json::json!({
            "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216,
            "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 256, "max_position_embeddings": 131_072, "rms_norm_eps": 1e-6,
            "bos_token_id": 2, "eos_token_id": 1, "query_pre_attn_scalar": 256,
            "sliding_window": 4096, "tie_word_embeddings": true}),
        // VaultGemmaConfig's defaults are Gemma2Config's.
        Arch::Gemma2 | Arch::VaultGemma => serde_json::json!({
            "vocab_size": 256_000, "hidden_size": 2304, "intermediate_size": 9216,
            "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
            "bos_token_id": 2, "eos_token_id": 1, "query_pre_attn_scalar": 256,
            "sliding_window": 4096, "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0, "tie_word_embeddings": true}),
        _ => serde_json::json!({
            "vocab_size": 256_000, "hidden_size": 3072, "intermediate_size": 24_576,
            "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
            "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
            "bos_token_id": 2, "eos_token_id": 1, "tie_word_embeddings": true}),
    }
}

/// Gemma 2's and 3's sliding layers where the config lists no `layer_types`: Gemma 3's every
/// layer but each `sliding_window_pattern`-th (default 6; Gemma3TextConfig's reading of older
/// configs), Gemma 2's and VaultGemma's every other one from the first (their configs read no
/// pattern).
pub(super) fn gemma_sliding(
    v: &Value,
    arch: Arch,
    layers: usize,
    path: &Path,
) -> Result<Vec<bool>> {
    let pattern = match arch {
        Arch::Gemma2 | Arch::VaultGemma => 2,
        _ => Fields { v, path }.usize_or("sliding_window_pattern", 6)?,
    };
    if pattern == 0 {
        return Err(Error::format(path, "`sliding_window_pattern` must be > 0"));
    }
    Ok(super::windows::sliding_every(layers, pattern))
}

#[cfg(test)]
mod tests {
    use super::super::{Activation, ModelConfig, RopeScaling};
    use serde_json::{json, Value};
    use std::path::Path;

    /// gemma-3-1b-it's config.json as the Hub has it (transformers 4's keys: no
    /// `layer_types`, `sliding_window_pattern`, `rope_local_base_freq`).
    fn gemma3_1b() -> Value {
        json!({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768,
            "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6, "rope_local_base_freq": 10000,
            "rope_scaling": null, "rope_theta": 1000000, "sliding_window": 512,
            "sliding_window_pattern": 6, "final_logit_softcapping": null,
            "attn_logit_softcapping": null, "vocab_size": 262144, "bos_token_id": 2,
            "eos_token_id": [1, 106]})
    }

    fn read(v: &Value) -> crate::error::Result<ModelConfig> {
        ModelConfig::from_hf_json(v, Path::new("config.json"))
    }

    fn refused(v: Value, want: &str) {
        let e = read(&v).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }

    /// transformers 4's keys: five sliding layers in six (the sixth, twelfth, ... full), the
    /// two RoPE bases, the scaling on the full-attention layers only, Gemma's features.
    #[test]
    fn gemma3_transformers4_config() {
        let c = read(&gemma3_1b()).unwrap();
        let full: Vec<usize> = (0..26)
            .filter(|&i| c.attention_window[i].is_none())
            .collect();
        assert_eq!(full, [5, 11, 17, 23]);
        // No `tie_word_embeddings` key: Gemma3TextConfig ties.
        assert!(c.tie_word_embeddings);
        assert!(c.attention_window.iter().flatten().all(|&w| w == 512));
        assert_eq!(
            (c.rope_theta, c.activation, c.qk_norm),
            (1e6, Activation::GeluTanh, true)
        );
        assert_eq!(
            (c.mlp_bias, c.qkv_bias, c.eos_token_ids.clone()),
            (false, false, vec![1, 106])
        );
        let g = c.gemma.unwrap();
        assert_eq!(c.local_rope_theta, Some(10000.0));
        assert!(g.sandwich_norms && g.query_pre_attn_scalar == 256.0);
        assert_eq!(g.embed_scale, (1152f32).sqrt());
        // gemma-3-4b's text config: linear scaling 8 on the full-attention layers.
        let mut v = gemma3_1b();
        v["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
        v["sliding_window_pattern"] = json!(3);
        let c = read(&v).unwrap();
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { factor }) if factor == 8.0));
        assert_eq!(c.local_rope_theta, Some(10000.0));
        let full: Vec<usize> = (0..26)
            .filter(|&i| c.attention_window[i].is_none())
            .collect();
        assert_eq!(full, [2, 5, 8, 11, 14, 17, 20, 23]);
        // Gemma3TextConfig's defaults where the keys are absent.
        let mut v = gemma3_1b();
        for k in [
            "rope_theta",
            "rope_local_base_freq",
            "query_pre_attn_scalar",
            "head_dim",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["head_dim"] = json!(null);
        let c = read(&v).unwrap();
        assert_eq!((c.rope_theta, c.head_dim), (1e6, 256));
        assert_eq!(c.local_rope_theta, Some(10000.0));
    }

    /// google/gemma-3-4b-it's config.json (text and images): its sparse `text_config` read
    /// with Gemma3TextConfig's defaults, the outer end ids.
    #[test]
    fn gemma3_multimodal_config() {
        let v = json!({"architectures": ["Gemma3ForConditionalGeneration"],
            "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
            "image_token_index": 262144, "mm_tokens_per_image": 256, "model_type": "gemma3",
            "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                "model_type": "gemma3_text", "num_hidden_layers": 34,
                "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
            "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}});
        let c = read(&v).unwrap();
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (8, 4, 256));
        assert_eq!(
            (c.vocab_size, c.num_layers, c.hidden_size),
            (262_208, 34, 2560)
        );
        assert_eq!(
            (c.eos_token_ids.clone(), c.bos_token_id),
            (vec![1, 106], Some(2))
        );
        assert!(c.tie_word_embeddings && c.qk_norm);
        assert_eq!((c.rope_theta, c.max_position_embeddings), (1e6, 131_072));
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { factor }) if factor == 8.0));
        assert_eq!(c.attention_window[5], None);
        assert_eq!(c.attention_window[4], Some(1024));
        let g = c.gemma.unwrap();
        assert_eq!(
            (c.local_rope_theta, g.query_pre_attn_scalar),
            (Some(10000.0), 256.0)
        );
        let mut bad = v.clone();
        bad["text_config"]["model_type"] = json!("llama");
        refused(bad, "expected gemma3_text");
    }

    /// transformers 5's form: RoPE settings per layer type; a scaled sliding layer is refused.
    #[test]
    fn gemma3_rope_parameters_per_layer_type() {
        let mut v = gemma3_1b();
        v["rope_parameters"] = json!({
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5},
            "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}});
        v.as_object_mut().unwrap().remove("rope_scaling");
        v.as_object_mut().unwrap().remove("rope_theta");
        let c = read(&v).unwrap();
        assert_eq!(c.rope_theta, 5e5);
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { factor }) if factor == 4.0));
        assert_eq!(c.local_rope_theta, Some(2e4));
        // A `rope_scaling` beside them updates the full-attention settings (transformers').
        let mut both = v.clone();
        both["rope_parameters"]["full_attention"] =
            json!({"rope_type": "default", "rope_theta": 1e6});
        both["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
        let c = read(&both).unwrap();
        assert_eq!(c.rope_theta, 1e6);
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { factor }) if factor == 8.0));
        both["rope_parameters"]["sliding_attention"] = json!(3);
        refused(
            both,
            "`rope_parameters.sliding_attention`: expected an object",
        );
        v["rope_parameters"]["sliding_attention"] = json!({"rope_type": "linear", "factor": 2.0});
        refused(v, "sliding-window layers' RoPE is read unscaled");
        // Flat settings, which Gemma3TextConfig keeps but never applies; YaRN's `truncate`,
        // which transformers does not read here (in either layout).
        let mut flat = gemma3_1b();
        flat["rope_parameters"] = json!({"rope_type": "linear", "factor": 2.0});
        refused(flat, "Gemma 3 reads its RoPE per layer type");
        let mut yarn = gemma3_1b();
        yarn["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0, "truncate": false});
        refused(yarn, "`truncate: false` in the full-attention layers' YaRN");
        let mut typed = gemma3_1b();
        typed["rope_parameters"] = json!({"sliding_attention": {"type": "linear", "factor": 2.0}});
        refused(typed, "sliding-window layers' RoPE is read unscaled");
    }

    /// Gemma (1): `hidden_act: gelu` is GemmaConfig's legacy name for the tanh GELU; no
    /// windows, norms after attention only, head_dim 256 by default.
    #[test]
    fn gemma_config() {
        let v = json!({"model_type": "gemma", "hidden_size": 2048, "intermediate_size": 16384,
            "num_hidden_layers": 18, "num_attention_heads": 8, "num_key_value_heads": 1,
            "hidden_act": "gelu", "vocab_size": 256000, "sliding_window": 4096});
        let c = read(&v).unwrap();
        assert_eq!(
            (c.activation, c.head_dim, c.qk_norm),
            (Activation::GeluTanh, 256, false)
        );
        assert!(c.attention_window.iter().all(Option::is_none));
        let g = c.gemma.unwrap();
        assert!(!g.sandwich_norms && c.local_rope_theta.is_none());
        assert_eq!(g.query_pre_attn_scalar, 256.0);
    }

    /// google/gemma-2-2b-it's config.json as the Hub has it (transformers 4.42's keys).
    fn gemma2_2b() -> Value {
        json!({"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "bos_token_id": 2,
            "eos_token_id": [1, 107], "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304,
            "intermediate_size": 9216, "max_position_embeddings": 8192,
            "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4,
            "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 256000})
    }

    /// Gemma 2: the window in every other layer from the first, both caps, norms around both
    /// sub-blocks, no query/key norms; the 27B's scale (query_pre_attn_scalar 144, not
    /// head_dim 128); Gemma2Config's defaults (caps 50 and 30) for a sparse config, and null
    /// caps read as none.
    #[test]
    fn gemma2_config() {
        let c = read(&gemma2_2b()).unwrap();
        let sliding: Vec<usize> = (0..26)
            .filter(|&i| c.attention_window[i] == Some(4096))
            .collect();
        assert_eq!(sliding, (0..26).step_by(2).collect::<Vec<_>>());
        assert!((1..26).step_by(2).all(|i| c.attention_window[i].is_none()));
        assert_eq!(
            (c.activation, c.qk_norm, c.tie_word_embeddings, c.rope_theta),
            (Activation::GeluTanh, false, true, 10000.0)
        );
        assert_eq!(c.softcaps(), (Some(50.0), Some(30.0)));
        assert_eq!(c.attention_scale(), 1.0 / 16.0);
        let g = c.gemma.as_ref().unwrap();
        assert!(g.sandwich_norms && c.local_rope_theta.is_none());
        let mut v = gemma2_2b();
        for (k, x) in [
            ("hidden_size", 4608),
            ("num_attention_heads", 32),
            ("num_key_value_heads", 16),
            ("head_dim", 128),
            ("query_pre_attn_scalar", 144),
            ("num_hidden_layers", 46),
        ] {
            v[k] = json!(x);
        }
        assert_eq!(read(&v).unwrap().attention_scale(), 1.0 / 12.0);
        let c = read(&json!({"model_type": "gemma2", "layer_types": null})).unwrap();
        assert_eq!((c.hidden_size, c.num_layers, c.head_dim), (2304, 26, 256));
        assert_eq!(c.softcaps(), (Some(50.0), Some(30.0)));
        let mut v = gemma2_2b();
        v["attn_logit_softcapping"] = json!(null);
        v["final_logit_softcapping"] = json!(null);
        assert_eq!(read(&v).unwrap().softcaps(), (None, None));
        // Gemma (1) has no caps, whatever the file says (GemmaModel reads none).
        let v = json!({"model_type": "gemma", "hidden_size": 64, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
            "vocab_size": 8,
            "final_logit_softcapping": 30.0});
        assert_eq!(read(&v).unwrap().softcaps(), (None, None));
    }

    /// What Gemma models have that this engine does not run is refused, naming it.
    #[test]
    fn gemma_refusals() {
        for (k, val, want) in [
            (
                "final_logit_softcapping",
                json!(0.0),
                "between about 1e-38 and 1e38",
            ),
            (
                "attn_logit_softcapping",
                json!("50"),
                "between about 1e-38 and 1e38",
            ),
            (
                "attn_logit_softcapping",
                json!(1e39),
                "between about 1e-38 and 1e38",
            ),
            (
                "final_logit_softcapping",
                json!(1e-39),
                "between about 1e-38 and 1e38",
            ),
            (
                "query_pre_attn_scalar",
                json!(null),
                "`query_pre_attn_scalar` is null",
            ),
            (
                "use_bidirectional_attention",
                json!(true),
                "embedding model",
            ),
            ("hidden_activation", json!("gelu"), "gelu_pytorch_tanh"),
            (
                "model_type",
                json!("gemma3"),
                "needs a `text_config` object",
            ),
            ("model_type", json!("gemma4"), super::super::MODEL_TYPES),
            ("sliding_window", json!(null), "sliding layers need one"),
            ("sliding_window_pattern", json!(0), "sliding_window_pattern"),
        ] {
            let mut v = gemma3_1b();
            v[k] = val;
            refused(v, want);
        }
    }
}
