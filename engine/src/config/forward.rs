//! What the forward pass asks of a config beyond its fields: where the norms sit (Gemma 2's
//! and 3's, OLMo 2's and 3's) and the factors and caps some families put into the computation
//! (Gemma's, Gemma 2's, Granite's).

use super::ModelConfig;

/// The names of a decoder layer's norms (`model.layers.N.<name>.weight`), as transformers'
/// modules of the family call them: Llama's `post_attention_layernorm` is the feed-forward's
/// input norm, Gemma 2's the attention's output norm; GLM-4 has names of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormNames {
    /// Before attention ([`ModelConfig::pre_norms`]).
    pub attn_in: &'static str,
    /// Before the feed-forward ([`ModelConfig::pre_norms`]).
    pub ffn_in: &'static str,
    /// After attention, before its residual add ([`ModelConfig::post_norms`]).
    pub attn_out: &'static str,
    /// After the feed-forward, before its residual add ([`ModelConfig::post_norms`]).
    pub ffn_out: &'static str,
}

impl ModelConfig {
    /// Whether each layer norms the input of its attention and feed-forward (`input_layernorm`
    /// and the pre-feed-forward norm); OLMo 2 and 3 and EXAONE 4 norm their outputs only
    /// ([`Self::post_norms`], [`super::Arch::post_norms_only`]).
    pub fn pre_norms(&self) -> bool {
        !self.arch.post_norms_only()
    }

    /// Whether each sub-block's output is normed before its residual add
    /// (`post_attention_layernorm`, `post_feedforward_layernorm`): Gemma 2's and 3's
    /// [`Self::sandwich_norms`], and OLMo 2's and 3's and EXAONE 4's, which have no others.
    pub fn post_norms(&self) -> bool {
        self.sandwich_norms() || self.arch.post_norms_only()
    }

    /// What a layer's norms are called in the checkpoint ([`NormNames`]; a
    /// [`Self::parallel_block`] has no feed-forward input norm, but GPT-NeoX's and Falcon's
    /// with [`Self::parallel_norms`]).
    pub fn norm_names(&self) -> NormNames {
        // Llama's, and Gemma 2's and 3's, whose feed-forward input norm has a name of its own.
        let llama = NormNames {
            attn_in: "input_layernorm",
            ffn_in: "post_attention_layernorm",
            attn_out: "post_attention_layernorm",
            ffn_out: "post_feedforward_layernorm",
        };
        match self.arch {
            super::Arch::Glm4 => NormNames {
                attn_out: "post_self_attn_layernorm",
                ffn_out: "post_mlp_layernorm",
                ..llama
            },
            _ if self.sandwich_norms() || self.arch == super::Arch::VaultGemma => NormNames {
                ffn_in: "pre_feedforward_layernorm",
                ..llama
            },
            // GPTJBlock's one norm.
            super::Arch::GptJ => NormNames {
                attn_in: "ln_1",
                ..llama
            },
            // FalconDecoderLayer's two norms of the new architecture.
            super::Arch::Falcon if self.parallel_norms => NormNames {
                attn_in: "ln_attn",
                ffn_in: "ln_mlp",
                ..llama
            },
            _ => llama,
        }
    }

    /// The widths the query and key norms ([`ModelConfig::qk_norm`]) run over, `(query,
    /// key)`: each head's, `(head_dim, head_dim)` (Qwen3, Gemma 3, EXAONE 4; StableLM 2 12B and
    /// Command R+, a weight row per head: [`ModelConfig::qk_norm_weight_rows`]), or the whole projection's,
    /// `(q_dim, kv_dim)` (OLMo 2's and 3's `Olmo2RMSNorm(num_heads * head_dim)`). Each row of
    /// the query is `q_dim / query` such vectors.
    pub fn qk_norm_widths(&self) -> (usize, usize) {
        match self.arch.is_olmo() {
            true => (self.q_dim(), self.kv_dim()),
            false => (self.head_dim, self.head_dim),
        }
    }

    /// The rows of the query and key norms' weights, `(query, key)`, each
    /// [`ModelConfig::qk_norm_widths`] wide: a row per head, `(n_heads, n_kv_heads)`, where
    /// each head has a weight of its own ([`ModelConfig::qk_norm_per_head`]), else `(1, 1)`.
    pub fn qk_norm_weight_rows(&self) -> (usize, usize) {
        match self.qk_norm_per_head {
            true => (self.num_heads, self.num_kv_heads),
            false => (1, 1),
        }
    }

    /// Whether each sub-block is normed both before and after, its output before its residual
    /// add (Gemma 2's and 3's [`super::GemmaFeatures::sandwich_norms`], GLM-4's).
    pub fn sandwich_norms(&self) -> bool {
        self.gemma.as_ref().is_some_and(|g| g.sandwich_norms) || self.arch == super::Arch::Glm4
    }

    /// The factor of the attention scores: Gemma's `query_pre_attn_scalar^-0.5` (head_dim's
    /// own f32 expression where the two are equal), Granite's `attention_multiplier`, else
    /// `head_dim^-0.5` ([`crate::backend::AttnShape::head_scale`]).
    pub fn attention_scale(&self) -> f32 {
        match (&self.gemma, &self.granite) {
            // Where they are equal, head_dim's f32 expression (the same value to the bit).
            (Some(g), _) if g.query_pre_attn_scalar != self.head_dim as f64 => {
                (1.0 / g.query_pre_attn_scalar.sqrt()) as f32
            }
            (_, Some(g)) => g.attention,
            _ => crate::backend::AttnShape::head_scale(self.head_dim),
        }
    }

    /// The factor of the embedding rows: Gemma's `sqrt(hidden_size)`, Granite's
    /// `embedding_multiplier` (where it is not 1); `None`: the rows as stored.
    pub fn embed_scale(&self) -> Option<f32> {
        match (&self.gemma, &self.granite) {
            (Some(g), _) => Some(g.embed_scale),
            (_, Some(g)) => Some(g.embedding).filter(|&s| s != 1.0),
            _ => None,
        }
    }

    /// Granite's factor of each sub-block's output before its residual add (where it is not
    /// 1).
    pub fn residual_scale(&self) -> Option<f32> {
        (self.granite.as_ref()).and_then(|g| Some(g.residual).filter(|&s| s != 1.0))
    }

    /// Granite's divisor of the logits (where it is not 1).
    pub fn logit_divisor(&self) -> Option<f32> {
        (self.granite.as_ref()).and_then(|g| Some(g.logits).filter(|&s| s != 1.0))
    }

    /// What the logits are multiplied by, where anything: `1 / ` Granite's divisor, or
    /// Cohere's `logit_scale` (no family has both).
    pub fn logit_factor(&self) -> Option<f32> {
        self.logit_divisor().map(|d| 1.0 / d).or(self.logit_scale)
    }

    /// Whether an HF checkpoint stores its norm weights less one, the norms multiplying by
    /// `1 + w`: GemmaRMSNorm's and Nemotron's LayerNorm1P (loading adds the 1,
    /// [`crate::loader::gemma::prepare_hf`]; llama.cpp's converters have added it to a GGUF's).
    pub fn norm_weights_less_one(&self) -> bool {
        self.gemma.is_some() || self.arch == super::Arch::Nemotron
    }

    /// Whether the norms are LayerNorms (Cohere's without bias; StableLM's, StarCoder2's and
    /// Phi's with one, [`super::Arch::norm_bias`], added after the norm; OLMo's with neither
    /// weight nor bias, [`super::Arch::unweighted_norms`], weights of ones): `(x - mean(x)) /
    /// sqrt(var(x) + eps) * w (+ b)`, which is `rms_norm(x - mean(x)) * w (+ b)`. The forward pass keeps the
    /// residual stream centered ([`crate::Backend::center`]: the embedding, and each
    /// sub-block's output before its add), so that every RMSNorm of it is the LayerNorm.
    pub fn layer_norms(&self) -> bool {
        self.arch.is_cohere() || self.arch.norm_bias() || self.arch.unweighted_norms()
    }

    /// Whether attention and the feed-forward read the same input side by side and both add to
    /// the residual: Cohere's and Phi's `residual + attn(ln(x)) + mlp(ln(x))` (and StableLM's with
    /// `use_parallel_residual`, Falcon's with `parallel_attn`), no feed-forward input norm;
    /// GPT-NeoX's `residual + attn(ln1(x)) + mlp(ln2(x))` ([`Self::parallel_norms`]; Falcon's
    /// two-norm new architecture too).
    pub fn parallel_block(&self) -> bool {
        self.parallel_residual
    }

    /// Whether layer modules `m` exists: every one but the gate of an ungated feed-forward
    /// ([`super::Arch::gated_mlp`]).
    pub fn has_module(&self, m: crate::LoraModule) -> bool {
        m != crate::LoraModule::Gate || self.arch.gated_mlp()
    }

    /// Gemma 2's soft caps `(attention scores, final logits)` ([`super::GemmaFeatures`]), each
    /// `None` where the model has none.
    pub fn softcaps(&self) -> (Option<f32>, Option<f32>) {
        self.gemma
            .as_ref()
            .map_or((None, None), |g| (g.attn_softcap, g.final_softcap))
    }
}
