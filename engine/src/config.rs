//! The model hyper-parameters the forward pass needs, read from an HF `config.json`
//! (transformers 4 or 5 layout) or from GGUF metadata.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

mod activation;
mod apertus;
mod arch;
mod cohere;
mod compressed_tensors;
mod defaults;
mod falcon;
mod fields;
mod forward;
mod gemma;
mod gptj;
mod granite;
mod heads;
mod hunyuan;
pub(crate) use hunyuan::ntk_alpha_base;
mod layernorm;
mod longrope;
mod ministral3;
mod multimodal;
mod olmo;
mod olmo3;
mod quantization;
mod rope;
mod smollm3;
mod token_ids;
mod validate;
mod windows;

pub use activation::Activation;
pub use arch::{Arch, MODEL_TYPES};
use fields::Fields;
pub use forward::NormNames;
pub use gemma::GemmaFeatures;
pub use granite::GraniteScales;
pub use longrope::LongRopeScaling;
pub use ministral3::AttnTemperature;
pub use quantization::Fp8Quant;
pub use rope::{yarn_mscale, Llama3Scaling, RopeScaling, YarnScaling};
pub(crate) use smollm3::{rope_every, NOPE_EVERY};
use token_ids::{end_ids_in_vocab, ids_of};
pub(crate) use windows::sliding_every;

/// Everything the forward pass needs to know about a model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Family member.
    pub arch: Arch,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// The leading dimensions of each head that RoPE rotates (`head_dim` but for Phi-3's and
    /// GLM's `partial_rotary_factor` or a GGUF's `rope.dimension_count`); the rest pass through.
    /// Loading moves them to the end of each head's two halves ([`crate::loader::partial_rotary`]),
    /// so the backends rotate whole heads by a table whose last frequencies are identity.
    pub rotary_dim: usize,
    /// RoPE rotates adjacent dimensions `(2i, 2i + 1)` of the rotated part (GLM's, ERNIE
    /// 4.5's and Helium's `rotate_half`, llama.cpp's NORM RoPE where a converter did not permute the rows), not
    /// the two halves `(i, i + rotary_dim / 2)`. Loading reorders query and key rows to the
    /// halves ([`crate::loader::partial_rotary`]), so no backend sees this.
    pub rope_interleaved: bool,
    /// Vocabulary size: the logits' width, the rows of the output head, and of the embedding
    /// table but where [`ModelConfig::input_vocab`] says otherwise.
    pub vocab_size: usize,
    /// The embedding table's rows where the output head has fewer (Apertus 1.5's pruned head:
    /// `vocab_size` rows in, `output_vocab_size` logits out; ids past the head's are inputs
    /// only); `None`: the same as [`ModelConfig::vocab_size`]. See [`ModelConfig::embed_rows`].
    pub input_vocab: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling (Llama 3's, linear, YaRN), if any.
    pub rope_scaling: Option<RopeScaling>,
    /// Per-frequency divisors (`head_dim / 2` values): llama.cpp's `rope_freqs.weight`, the
    /// form a GGUF gives Llama-3 scaling (its converter computes them from the same formula).
    /// Frequency `i` is `theta^(-2i/d) / factors[i]`.
    pub rope_freq_factors: Option<Vec<f64>>,
    /// OLMo's `clip_qkv`: the query, key and value projections (biases and LoRAs included)
    /// clamped to `[-c, c]` before anything else reads them ([`crate::Backend::clamp`]);
    /// `None` for no clamp and for the other families.
    pub clip_qkv: Option<f32>,
    /// How an HF checkpoint stores its weights where they are FP8 (`quantization_config`), for
    /// the loader, which dequantizes them ([`crate::loader::fp8`]); `None` for unquantized
    /// checkpoints and GGUF files.
    pub quantization: Option<Fp8Quant>,
    /// Llama 4's attention temperature (Ministral 3's): queries scaled by position past its
    /// step ([`AttnTemperature`]); `None` for the other families.
    pub attn_temperature: Option<AttnTemperature>,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// lm_head shares the embedding table.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// o_proj has a bias.
    pub o_bias: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
    /// The output head has a bias (`lm_head.bias`): Phi's and GPT-J's
    /// ([`Arch::head_bias`]), and a `qwen2` GGUF's optional `output.bias`, which llama.cpp's
    /// graph adds.
    pub head_bias: bool,
    /// The query and key go through an RMSNorm (weights `self_attn.q_norm` / `self_attn.k_norm`)
    /// before RoPE: each head's (Qwen3, Gemma 3) or all heads' at once (OLMo 2;
    /// [`ModelConfig::qk_norm_widths`]); with [`ModelConfig::qk_norm_per_head`], a LayerNorm.
    pub qk_norm: bool,
    /// The query/key norms ([`ModelConfig::qk_norm`]) are LayerNorms of each head with a weight
    /// of its own in each head and no bias: StableLM 2 12B's `qk_layernorm`
    /// (`StableLmLayerNormPerHead`), Command R+'s `use_qk_norm` (`CohereLayerNorm((heads,
    /// head_dim))`); llama.cpp's optional `attn_q_norm` `[head_dim, n_head]` in `stablelm` and
    /// `command-r`. Weights `[n_heads * head_dim]` and `[n_kv_heads * head_dim]`, head after
    /// head ([`ModelConfig::qk_norm_weight_rows`]).
    pub qk_norm_per_head: bool,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// Every id that ends generation.
    pub eos_token_ids: Vec<u32>,
    /// The feed-forward's activation (of its gate, or of its up projection where it has no
    /// gate: [`Arch::gated_mlp`]).
    pub activation: Activation,
    /// Gemma's additions to the computation; `None` for the other families.
    pub gemma: Option<GemmaFeatures>,
    /// Granite's multipliers; `None` for the other families.
    pub granite: Option<GraniteScales>,
    /// Cohere's factor of the logits (`logit_scale`); `None` for the other families.
    pub logit_scale: Option<f32>,
    /// Attention and the feed-forward read one input side by side and both add to the
    /// residual, `x + attn(ln(x)) + mlp(ln(x))` with no feed-forward input norm (Cohere's,
    /// Phi's, StableLM's with `use_parallel_residual`) or `x + attn(ln1(x)) + mlp(ln2(x))`
    /// (GPT-NeoX's, Falcon's new architecture with two norms: [`ModelConfig::parallel_norms`])
    /// ([`ModelConfig::parallel_block`]).
    pub parallel_residual: bool,
    /// In a [`ModelConfig::parallel_block`], the feed-forward reads a norm of its own
    /// (`x + attn(ln1(x)) + mlp(ln2(x))`: GPT-NeoX's `post_attention_layernorm`, Falcon's
    /// `ln_mlp`), not the attention's; false otherwise.
    pub parallel_norms: bool,
    /// Per layer: whether its query and key are rotated (RoPE); false for SmolLM3's NoPE
    /// layers, which attend by content alone (transformers' `no_rope_layers`, 1 = RoPE).
    pub rope_layers: Vec<bool>,
    /// The RoPE base of the sliding-window layers (those with a window), which rotate
    /// unscaled: Gemma 3's (`rope_local_base_freq`, transformers 5's
    /// `rope_parameters.sliding_attention`; llama.cpp's `gemma3.rope.freq_base_swa`, default
    /// 10000) and OLMo 3's (`rope_parameters.sliding_attention`; llama.cpp's `olmo2` sliding
    /// layers: the file's base, with no YaRN). It may equal the others' rotation (the model
    /// then makes no second table). `None`: every layer rotates by `rope_theta` and the
    /// scaling.
    pub local_rope_theta: Option<f64>,
    /// Per layer: the sliding attention window (a query sees itself and the `w - 1` positions
    /// before it), or None for full causal attention.
    pub attention_window: Vec<Option<usize>>,
}

impl ModelConfig {
    /// The embedding table's rows: the ids a prompt may hold ([`ModelConfig::input_vocab`],
    /// else [`ModelConfig::vocab_size`]).
    pub fn embed_rows(&self) -> usize {
        self.input_vocab.unwrap_or(self.vocab_size)
    }

    /// The longest sequence the model takes, in tokens: `max_position_embeddings`, or what a
    /// linear or YaRN scaling stretches the context to where that is longer (vLLM's rule:
    /// `max_position_embeddings * factor`, YaRN `original_max_position_embeddings * factor`;
    /// Qwen2.5 with YaRN factor 4 over 32768: 131072; Ministral 3: 262144).
    pub fn context_limit(&self) -> usize {
        let scaled = match &self.rope_scaling {
            Some(RopeScaling::Yarn(y)) => y.original_max_position_embeddings * y.factor,
            // Gemma 3's max_position_embeddings is already the scaled context (vLLM's rule).
            Some(RopeScaling::Linear { .. }) if self.arch == Arch::Gemma3 => 0.0,
            Some(RopeScaling::Linear { factor }) => self.max_position_embeddings as f64 * *factor,
            _ => 0.0,
        };
        self.max_position_embeddings.max(scaled.min(1e8) as usize)
    }

    /// Output width of q_proj.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    /// Output width of k_proj / v_proj.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Input and output widths of a linear module of a decoder layer.
    pub fn module_dims(&self, m: crate::LoraModule) -> (usize, usize) {
        use crate::LoraModule::*;
        let (h, i) = (self.hidden_size, self.intermediate_size);
        match m {
            Q => (h, self.q_dim()),
            K | V => (h, self.kv_dim()),
            O => (self.q_dim(), h),
            Gate | Up => (h, i),
            Down => (i, h),
        }
    }

    /// Reads `config.json` (and `generation_config.json` beside it for EOS ids, if present).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
        let mut cfg = Self::from_hf_json(&v, &path)?;
        let gen_path = dir.join("generation_config.json");
        if let Ok(text) = std::fs::read_to_string(&gen_path) {
            let g: Value = serde_json::from_str(&text)
                .map_err(|e| Error::format(&gen_path, format!("not valid JSON: {e}")))?;
            let eos = ids_of(&gen_path, "eos_token_id", g.get("eos_token_id"))?;
            let ids = end_ids_in_vocab(&gen_path, &eos, cfg.vocab_size);
            for id in ids {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
        }
        Ok(cfg)
    }

    /// Parses an HF config object; `path` is used in messages only.
    pub fn from_hf_json(v: &Value, path: &Path) -> Result<Self> {
        if !v.is_object() {
            return Err(Error::format(
                path,
                format!("expected a JSON object (an HF config.json: model_type, hidden_size, ...), found {v}"),
            ));
        }
        // First: a quantization that cannot be loaded fails before anything else is read.
        let quantization = Fp8Quant::of_config(v, path)?;
        let f = Fields { v, path };
        let model_type = f.str_or("model_type", "")?;
        let archs: Vec<String> = v
            .get("architectures")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let arch = match model_type.as_str() {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "phi3" => Arch::Phi3,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "vaultgemma" => Arch::VaultGemma,
            "granite" => Arch::Granite,
            "smollm3" => Arch::SmolLM3,
            "olmo" => Arch::Olmo,
            "olmo2" => Arch::Olmo2,
            "olmo3" => Arch::Olmo3,
            "exaone4" => Arch::Exaone4,
            "seed_oss" => Arch::SeedOss,
            "glm" => Arch::Glm,
            "glm4" => Arch::Glm4,
            "ernie4_5" => Arch::Ernie45,
            "ministral" => Arch::Ministral,
            "exaone" => Arch::Exaone,
            "internlm3" => Arch::InternLM3,
            "helium" => Arch::Helium,
            "cohere" => Arch::Cohere,
            "cohere2" => Arch::Cohere2,
            "stablelm" => Arch::StableLm,
            "starcoder2" => Arch::Starcoder2,
            "phi" => Arch::Phi,
            "gpt_neox" => Arch::GptNeoX,
            "falcon" => Arch::Falcon,
            "gptj" => Arch::GptJ,
            "arcee" => Arch::Arcee,
            "nemotron" => Arch::Nemotron,
            "apertus" | "apertus1p5_text" => Arch::Apertus,
            "jais2" => Arch::Jais2,
            "ministral3" => Arch::Ministral3,
            "hunyuan_v1_dense" => Arch::Hunyuan,
            "gemma3_text" => Arch::Gemma3,
            // Text and images (Gemma3ForConditionalGeneration, Mistral3ForConditionalGeneration):
            // the text model.
            // A wrapper's `quantization_config` (the outer one, as transformers reads it)
            // applies to the text model.
            t @ ("gemma3" | "mistral3" | "exaone4_5" | "apertus1p5") => {
                let mut text = Self::from_hf_json(&multimodal::text_config(v, t, path)?, path)?;
                text.quantization = quantization.or(text.quantization);
                return Ok(text);
            }
            "" => {
                return Err(Error::format(
                    path,
                    format!(
                        "missing field `model_type` (architectures {archs:?}); supported: {MODEL_TYPES}"
                    ),
                ))
            }
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "unknown architecture: model_type `{other}` (architectures {archs:?}); \
                         supported: {MODEL_TYPES}"
                    ),
                ))
            }
        };
        // Gemma's defaults; Gemma 3's and OLMo 3's RoPE settings per layer type, as one Llama
        // reading plus the local base.
        let view;
        let (v, local_rope_theta) = match arch {
            Arch::Gemma | Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma => {
                let (gemma_view, local) = gemma::gemma_view(v, arch, path)?;
                view = gemma_view;
                (&view, local)
            }
            Arch::Olmo3 => {
                let (olmo3_view, local) = olmo3::olmo3_view(v, path)?;
                view = olmo3_view;
                (&view, Some(local))
            }
            Arch::Falcon => {
                view = falcon::falcon_view(v, path)?;
                (&view, None)
            }
            Arch::GptJ => {
                view = gptj::gptj_view(v, path)?;
                (&view, None)
            }
            Arch::Apertus => {
                view = apertus::apertus_view(v, path)?;
                (&view, None)
            }
            Arch::Ministral3 => {
                view = ministral3::ministral3_view(v, path)?;
                (&view, None)
            }
            _ => match defaults::aliased(v, arch, path)? {
                Some(aliased) => {
                    view = aliased;
                    (&view, None)
                }
                None => (v, None),
            },
        };
        let f = Fields { v, path };
        let defaults = defaults::Defaults::of(arch);
        let hidden_size = f.usize("hidden_size")?;
        let num_heads = f.usize("num_attention_heads")?;
        if num_heads == 0 {
            return Err(Error::format(path, "num_attention_heads must be > 0"));
        }
        let num_kv_heads = heads::kv_heads(v, arch, num_heads, defaults.kv_heads, path)?;
        let head_dim = heads::head_dim(v, arch, hidden_size, num_heads, defaults.head_dim, path)?;
        let rope = rope::settings(v, path)?;
        let default_theta = defaults.rope_theta;
        let rope_theta = match rope.filter(|r| r.get("rope_theta").is_some_and(|t| !t.is_null())) {
            Some(r) => Fields { v: r, path }.f64_or("rope_theta", default_theta)?,
            None => f.f64_or("rope_theta", default_theta)?,
        };
        let rotary_dim = match arch {
            Arch::GptJ => gptj::rotary_dim(v, head_dim, path)?,
            _ => rope::rotary_dim(v, rope, head_dim, arch, path)?,
        };
        let max_position_embeddings = f.usize_or("max_position_embeddings", defaults.context)?;
        // HunYuan's `dynamic` RoPE with an `alpha` is a fixed, stretched base.
        let (rope_theta, rope) = match arch {
            Arch::Hunyuan => hunyuan::ntk_alpha(rope, rope_theta, head_dim, path)?,
            _ => (rope_theta, rope),
        };
        // Phi-3's configs keep the pretraining context beside the RoPE settings; transformers
        // prefers it there (`standardize_rope_params`).
        let rope_scaling = match rope {
            Some(s) => {
                let top = v
                    .get("original_max_position_embeddings")
                    .filter(|o| !o.is_null());
                // Phi3Config has the attribute whatever the file says (4096 by default), and
                // transformers prefers it.
                let (original, top_level) = match (top, arch) {
                    (Some(_), _) => (f.f64_or("original_max_position_embeddings", 0.0)?, true),
                    (None, Arch::Phi3) => (4096.0, true),
                    (None, _) => (max_position_embeddings as f64, false),
                };
                rope::parse(
                    s,
                    path,
                    max_position_embeddings as f64,
                    original,
                    top_level,
                    arch == Arch::Phi3,
                )?
            }
            None => None,
        };
        let attn_temperature = match arch {
            Arch::Ministral3 => ministral3::attn_temperature(v, rope, rope_scaling.as_ref(), path)?,
            _ => None,
        };
        let activation = match activation::ungated(v, arch, path)? {
            Some(a) => a,
            None => activation::gated(v, arch, path)?,
        };
        let qk_norm_per_head = layernorm::qk_norm_per_head(v, arch, path)?;
        let gemma = gemma::from_hf(v, arch, head_dim, path)?;
        let granite = granite::from_hf(v, arch, path)?;
        // Phi-3's, Gemma's, OLMo's (1, 2 and 3) and EXAONE 4's MLPs have no biases whatever
        // the config says; Phi-3 and EXAONE 4 have no attention biases either (their attention modules
        // are made without).
        let no_bias = matches!(arch, Arch::Phi3 | Arch::Exaone4);
        // ApertusMLP's and HunYuanDenseV1MLP's linears have none either.
        let no_mlp_bias = no_bias
            || arch == Arch::Apertus
            || gemma.is_some()
            || arch.post_norms_only()
            || arch == Arch::Olmo
            || arch.is_glm()
            || arch.is_cohere()
            || arch == Arch::Hunyuan;
        // SeedOssConfig biases q/k/v by default and o_proj only with `attention_out_bias`;
        // GLM's configs bias q/k/v by default and its o_proj has none, nor has Helium's;
        // ERNIE 4.5's `use_bias` biases every projection (it reads no `attention_bias` or
        // `mlp_bias`); Jais2Config's `attention_bias` and `mlp_bias` are true by default.
        let seed = arch == Arch::SeedOss;
        let jais2 = arch == Arch::Jais2;
        let attention_bias = match arch {
            Arch::Ernie45 => f.bool_or("use_bias", false)?,
            _ => f.bool_or("attention_bias", seed || arch.is_glm() || jais2)? && !no_bias,
        };
        let o_bias = match (seed, arch.is_glm()) {
            (true, _) => f.bool_or("attention_out_bias", false)?,
            (false, glm) => attention_bias && !glm && arch != Arch::Helium,
        };
        let mlp_bias = match arch {
            Arch::Ernie45 => attention_bias,
            _ => f.bool_or("mlp_bias", jais2)? && !no_mlp_bias,
        };
        // StableLM's, StarCoder2's and Phi's keys of their own.
        let (attention_bias, o_bias, mlp_bias) =
            layernorm::biases(v, arch, path)?.unwrap_or((attention_bias, o_bias, mlp_bias));
        // InternLM3Config's check: its Llama computation biases q/k/v/o alike.
        if arch == Arch::InternLM3 && attention_bias != mlp_bias {
            return Err(Error::format(
                path,
                format!("InternLM3 with `qkv_bias` (`attention_bias`) {attention_bias} and `bias` (`mlp_bias`) {mlp_bias}: InternLM3Config refuses them unequal"),
            ));
        }
        let logit_scale = cohere::logit_scale(v, arch, path)?;
        let (parallel_residual, parallel_norms) = match arch {
            Arch::Falcon => falcon::parallel(v),
            _ => {
                let parallel = layernorm::parallel_residual(v, arch, path)?;
                (parallel, parallel && arch == Arch::GptNeoX)
            }
        };
        let num_layers = layer_count(f.usize("num_hidden_layers")?, path)?;
        let tie_word_embeddings = f.bool_or("tie_word_embeddings", defaults.tie)?;
        let (vocab_size, input_vocab) = match model_type.as_str() {
            "apertus1p5_text" => apertus::pruned_head(v, tie_word_embeddings, path)?,
            _ => (f.usize("vocab_size")?, None),
        };
        let rope_layers = smollm3::rope_layers(v, arch, num_layers, path)?;
        let attention_window = windows::attention_windows(v, arch, &rope_layers, path)?;
        let rope_layers =
            smollm3::sliding_rope_layers(v, arch, &attention_window).unwrap_or(rope_layers);
        ModelConfig {
            arch,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            rope_interleaved: arch.rope_interleaved(),
            vocab_size,
            input_vocab,
            // OlmoLayerNorm's epsilon is fixed (OlmoConfig has no key for it).
            rms_norm_eps: match arch {
                Arch::Olmo => 1e-5,
                _ => f.f64_or("rms_norm_eps", defaults.rms_norm_eps)? as f32,
            },
            clip_qkv: olmo::clip_qkv(v, arch, path)?,
            quantization,
            rope_theta,
            rope_scaling,
            rope_freq_factors: None,
            attn_temperature,
            max_position_embeddings,
            tie_word_embeddings,
            qkv_bias: arch == Arch::Qwen2 || attention_bias,
            o_bias,
            mlp_bias,
            head_bias: arch.head_bias(),
            qk_norm: arch.has_qk_norm() || qk_norm_per_head,
            qk_norm_per_head,
            bos_token_id: ids_of(path, "bos_token_id", v.get("bos_token_id"))?
                .first()
                .copied(),
            eos_token_ids: token_ids::eos_ids(v, arch, path)?,
            local_rope_theta,
            attention_window,
            rope_layers,
            activation,
            gemma,
            granite,
            logit_scale,
            parallel_residual,
            parallel_norms,
        }
        .validated(path)
    }
}

/// More layers than any model has (guards allocations sized by a corrupt header).
const MAX_LAYERS: usize = 4096;

/// `n`, a model's layer count (HF `num_hidden_layers`, GGUF `block_count`), where a model can
/// have that many: checked as it is read, before anything is sized per layer (a corrupt
/// header's 2^40 layers had aborted the process allocating them).
pub(crate) fn layer_count(n: usize, path: &Path) -> Result<usize> {
    match n > MAX_LAYERS {
        true => Err(Error::format(
            path,
            format!("num_hidden_layers = {n} exceeds {MAX_LAYERS}: not a model this engine can load (a corrupt file?)"),
        )),
        false => Ok(n),
    }
}

/// `x` as an f32 where that and its reciprocal are normal numbers > 0 (a cap, a scale, a
/// multiplier, which the backends divide by or multiply scores with: a value that passes in f64
/// but narrows to 0, a subnormal or infinity in f32 is refused too, as is one whose reciprocal
/// would).
pub(crate) fn positive_f32(x: f64) -> Option<f32> {
    let y = x as f32;
    (y.is_normal() && y > 0.0 && y.recip().is_normal()).then_some(y)
}

/// How the messages of [`positive_f32`]'s refusals say what was expected.
pub(crate) const POSITIVE_F32: &str =
    "a number > 0 between about 1e-38 and 1e38 (an f32, as is its reciprocal)";

#[cfg(test)]
#[path = "config/apertus_tests.rs"]
mod apertus_tests;
#[cfg(test)]
#[path = "config/falcon_tests.rs"]
mod falcon_tests;
#[cfg(test)]
#[path = "config/gptj_tests.rs"]
mod gptj_tests;
#[cfg(test)]
#[path = "config/hunyuan_tests.rs"]
mod hunyuan_tests;
#[cfg(test)]
#[path = "config/ministral3_tests.rs"]
mod ministral3_tests;
#[cfg(test)]
#[path = "config/norm_bias_tests.rs"]
mod norm_bias_tests;
#[cfg(test)]
#[path = "config/olmo_tests.rs"]
mod olmo_tests;
#[cfg(test)]
#[path = "config/relu2_tests.rs"]
mod relu2_tests;
#[cfg(test)]
#[path = "config/test_read.rs"]
mod test_read;
#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
#[cfg(test)]
#[path = "config/variant_tests.rs"]
mod variant_tests;
#[cfg(test)]
#[path = "config/vaultgemma_tests.rs"]
mod vaultgemma_tests;
