//! Which member of the Llama family a model is, and what each member changes.

/// The HF `model_type`s read ([`super::ModelConfig::from_hf_json`]), for messages.
pub const MODEL_TYPES: &str =
    "llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3_text, gemma3, granite, smollm3, olmo2, olmo3, exaone4, seed_oss, glm, glm4, ernie4_5, ministral, exaone, internlm3, helium, cohere, cohere2, stablelm, starcoder2, phi, gpt_neox, falcon, gptj, arcee, nemotron, apertus, jais2, ministral3, mistral3, hunyuan_v1_dense, exaone4_5, vaultgemma, olmo, apertus1p5_text, apertus1p5";

/// Which member of the Llama family: they share one forward pass and differ in configuration
/// (biases, sliding windows, query/key norms, where the norms sit, NoPE layers, multipliers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM2 (`LlamaForCausalLM`).
    Llama,
    /// Mistral (`MistralForCausalLM`): Llama with GQA and, when configured, sliding-window
    /// attention in every layer.
    Mistral,
    /// Qwen2 (`Qwen2ForCausalLM`): q/k/v projections carry biases.
    Qwen2,
    /// Qwen3 (`Qwen3ForCausalLM`): an RMSNorm over each head's query and key (`q_norm`,
    /// `k_norm`, weights of `head_dim`) before RoPE; biases only with `attention_bias`; Qwen2's
    /// sliding-window rules.
    Qwen3,
    /// Phi-3 and Phi-4 (`Phi3ForCausalLM`): Llama's computation with q/k/v stored as one matrix
    /// (`self_attn.qkv_proj`, rows q then k then v) and gate/up as one (`mlp.gate_up_proj`, rows
    /// gate then up), split at load ([`crate::loader::fused`]); no biases; `sliding_window`, when
    /// set, in every layer (transformers' Phi3Model; `layer_types` is not read).
    Phi3,
    /// Gemma (`GemmaForCausalLM`): GELU-gated feed-forward, a scaled embedding, norms by
    /// `1 + w` ([`super::GemmaFeatures`]); no biases.
    Gemma,
    /// Gemma 2 (`Gemma2ForCausalLM`): Gemma with norms around both sub-blocks, a sliding
    /// window in every other layer (the first, third, ...), and soft-capped attention scores
    /// and logits ([`super::GemmaFeatures`]).
    Gemma2,
    /// Gemma 3 text (`Gemma3ForCausalLM`, `model_type: gemma3_text`): Gemma with Qwen3's
    /// per-head query/key norms, norms around both sub-blocks, sliding-window layers (five in
    /// six by default) with a RoPE base of their own ([`super::GemmaFeatures`]).
    Gemma3,
    /// OLMo (`OlmoForCausalLM`: OLMo-1B, -7B, 1.7-7B; AI2's first release): Llama with
    /// LayerNorms that have no weight or bias ([`Arch::unweighted_norms`]) and, with
    /// `clip_qkv`, the query, key and value projections clamped ([`super::ModelConfig::clip_qkv`]).
    Olmo,
    /// VaultGemma (`VaultGemmaForCausalLM`, Google's VaultGemma 1B, trained with differential
    /// privacy): Gemma 2 without the norms after each sub-block, its feed-forward input norm
    /// named `pre_feedforward_layernorm` ([`super::GemmaFeatures`]).
    VaultGemma,
    /// IBM Granite (`GraniteForCausalLM`): Llama with multipliers of the embedding, the
    /// attention scores, each residual branch and the logits ([`super::GraniteScales`]).
    Granite,
    /// OLMo 2 (`Olmo2ForCausalLM`): Llama with no norm before attention or the feed-forward,
    /// each sub-block's output normed before its residual add instead, and the query and key
    /// RMS-normed over all heads at once (q_dim and kv_dim wide) before RoPE; no MLP biases.
    Olmo2,
    /// OLMo 3 (`Olmo3ForCausalLM`): OLMo 2 with a sliding window in three layers of four
    /// (`layer_types`), whose RoPE is unscaled and has a base of its own
    /// ([`super::ModelConfig::local_rope_theta`]).
    Olmo3,
    /// EXAONE 4 (`Exaone4ForCausalLM`): OLMo 2's norms with each head's query and key normed (as
    /// Qwen3's), and, where the config has a window, sliding layers (three of four by default)
    /// that rotate beside full-attention layers that do not (NoPE); no biases.
    Exaone4,
    /// Seed-OSS (`SeedOssForCausalLM`): Llama with q/k/v biases by default (`attention_bias`
    /// true), an o_proj bias only with `attention_out_bias`, and 128-wide heads by default.
    SeedOss,
    /// SmolLM3 (`SmolLM3ForCausalLM`): Llama with NoPE layers, which rotate nothing
    /// ([`super::ModelConfig::rope_layers`]: every fourth by default), and a window, where configured,
    /// in the layers `layer_types` names.
    SmolLM3,
    /// GLM (`GlmForCausalLM`: GLM-4-9B-chat-hf, GLM-Edge): Llama with q/k/v biases
    /// (`attention_bias`, true by default), gate/up stored as one matrix (`mlp.gate_up_proj`,
    /// gate rows first), and RoPE on the first half of each head
    /// (`partial_rotary_factor` 0.5 by default) in adjacent pairs
    /// ([`super::ModelConfig::rope_interleaved`]).
    Glm,
    /// GLM-4-0414 and GLM-Z1 (`Glm4ForCausalLM`): GLM with each sub-block's output normed before
    /// its residual add (`post_self_attn_layernorm`, `post_mlp_layernorm`), as Gemma 2's.
    Glm4,
    /// ERNIE 4.5 dense (`Ernie4_5ForCausalLM`, ERNIE-4.5-0.3B): Llama with RoPE over whole heads
    /// in adjacent pairs ([`super::ModelConfig::rope_interleaved`]) and, with `use_bias`,
    /// biases on every projection.
    Ernie45,
    /// Ministral (`MinistralForCausalLM`, Ministral-8B-Instruct-2410): Mistral with a window
    /// per layer (`layer_types`; every layer slides by default), 4096 unless the config says.
    Ministral,
    /// EXAONE 3 and 3.5 (`ExaoneForCausalLM`; transformers 5 runs it as Llama): Llama under
    /// other names (`transformer.h.<i>.attn.attention.q_proj`, `mlp.c_fc_0`, ..., renamed at
    /// load, [`crate::loader::exaone`]) and config keys (`num_layers`, `layer_norm_epsilon`).
    Exaone,
    /// InternLM3 (`InternLM3ForCausalLM`; transformers 5 runs it as Llama): Llama with
    /// `qkv_bias` / `bias` for `attention_bias` / `mlp_bias`, which must agree.
    InternLM3,
    /// Helium (`HeliumForCausalLM`, Kyutai's Helium-1): Llama with RoPE in adjacent pairs
    /// ([`super::ModelConfig::rope_interleaved`]) and, with `attention_bias`, q/k/v biases
    /// (none on o_proj).
    Helium,
    /// Cohere (`CohereForCausalLM`: Command R, Aya Expanse): LayerNorms (no bias) where Llama
    /// has RMSNorms ([`super::ModelConfig::layer_norms`]), attention and feed-forward side by
    /// side on one normed input ([`super::ModelConfig::parallel_block`]), RoPE in adjacent
    /// pairs, the logits multiplied by `logit_scale`, tied by default.
    Cohere,
    /// Cohere 2 (`Cohere2ForCausalLM`: Command R7B, Command A, Aya Vision's text model): Cohere with
    /// sliding-window layers (three of four by default), the only ones that rotate; the
    /// full-attention layers are NoPE.
    Cohere2,
    /// StableLM 2 and 3B-4E1T (`StableLmForCausalLM`): LayerNorms with biases
    /// ([`Arch::norm_bias`]), RoPE on the first quarter of each head by default
    /// (`partial_rotary_factor` 0.25), q/k/v biases with `use_qkv_bias`, and with
    /// `use_parallel_residual` attention and feed-forward side by side on one normed input.
    StableLm,
    /// StarCoder2 (`Starcoder2ForCausalLM`): LayerNorms with biases, an ungated feed-forward
    /// (`mlp.c_fc`, GELU's tanh form, `mlp.c_proj`), biases on every projection with `use_bias`
    /// (the default), a `sliding_window` (where set) in every layer, tied by default.
    Starcoder2,
    /// Phi-1, Phi-1.5 and Phi-2 (`PhiForCausalLM`): LayerNorms with biases, attention and an
    /// ungated feed-forward (`mlp.fc1`, `gelu_new`, `mlp.fc2`) side by side on one normed input,
    /// RoPE on the first half of each head by default, biases on every projection (o_proj is
    /// `self_attn.dense`) and on the output head, the final norm `model.final_layernorm`.
    Phi,
    /// GPT-NeoX (`GPTNeoXForCausalLM`: Pythia, GPT-NeoX-20B, Dolly v2): LayerNorms with biases,
    /// q/k/v stacked per head in `attention.query_key_value` (each head's q, k, v rows in turn;
    /// split at load, [`crate::loader::gpt_neox`]), RoPE on a quarter of each head
    /// (`rotary_pct`), an ungated feed-forward (`mlp.dense_h_to_4h`, exact GELU,
    /// `mlp.dense_4h_to_h`), and with `use_parallel_residual` (the default) attention and the
    /// feed-forward side by side, each on its own norm of one input.
    GptNeoX,
    /// Falcon (`FalconForCausalLM`: Falcon-7B, -40B, -180B, Falcon2-11B): GPT-NeoX's modules
    /// under `self_attention` with q/k/v stacked per key/value group in `query_key_value`
    /// (Falcon-7B's one multi-query group, Falcon-40B's `num_kv_heads` groups; split at load,
    /// [`crate::loader::prefixed`]), LayerNorms with biases, full RoPE, an ungated
    /// feed-forward (exact GELU by default), biases on every linear with `bias`, attention and
    /// the feed-forward side by side (`parallel_attn`) on one norm or, in the
    /// `new_decoder_architecture` with two (`ln_attn`, `ln_mlp`), on a norm each
    /// ([`super::falcon`]); tied by default.
    Falcon,
    /// GPT-J (`GPTJForCausalLM`: GPT-J-6B): one LayerNorm with a bias (`ln_1`) read by
    /// attention and an ungated feed-forward (`mlp.fc_in`, `gelu_new`, `mlp.fc_out`, both
    /// biased) side by side, RoPE in adjacent pairs on the first `rotary_dim` dimensions of each
    /// head at base 10000, no attention biases, a bias on the output head, the names and keys of
    /// GPT-2 (`transformer.h.<i>.attn.q_proj`, `n_embd`, ...: [`super::gptj`]).
    GptJ,
    /// Arcee (`ArceeForCausalLM`: AFM-4.5B): Llama with an ungated feed-forward,
    /// `down_proj(relu2(up_proj(x)))` (the squared ReLU by default, `hidden_act`), no
    /// `gate_proj`.
    Arcee,
    /// Nemotron (`NemotronForCausalLM`: Nemotron-4, Minitron, Nemotron-Mini): LayerNorms with
    /// biases whose weights are stored less one (`NemotronLayerNorm1P`, `w + 1`, added at load
    /// as Gemma's), RoPE in halves on the first half of each head by default
    /// (`partial_rotary_factor` 0.5), Arcee's ungated squared-ReLU feed-forward, biases on
    /// q/k/v/o with `attention_bias` and on the feed-forward with `mlp_bias`, `norm_eps`.
    Nemotron,
    /// Apertus (`ApertusForCausalLM`: Swiss AI's Apertus-8B and -70B): Llama with Qwen3's
    /// per-head query and key norms, an ungated feed-forward `down_proj(xielu(up_proj(x)))`
    /// whose xIELU constants are learned per layer (`mlp.act_fn.alpha_p`, `alpha_n`, `beta`,
    /// `eps`), its norms named `attention_layernorm` and `feedforward_layernorm` (renamed at
    /// load), biases on q/k/v/o with `attention_bias`, Llama 3's RoPE scaling by default.
    Apertus,
    /// Jais 2 (`Jais2ForCausalLM`: Jais-2-8B and -70B): Llama with LayerNorms with biases
    /// (`nn.LayerNorm`) for its norms, Nemotron's ungated squared-ReLU feed-forward
    /// (`up_proj`/`down_proj`), biases on q/k/v/o (`attention_bias`) and on the feed-forward
    /// (`mlp_bias`), both true by default.
    Jais2,
    /// Ministral 3 (`Ministral3ForCausalLM`, the text model of `Mistral3ForConditionalGeneration`:
    /// Ministral-3-3B, -8B and -14B, 2512): Mistral with YaRN RoPE by default and Llama 4's
    /// attention temperature ([`super::ModelConfig::attn_temperature`]); no window unless
    /// `sliding_window` is set, then in every layer.
    Ministral3,
    /// HunYuan dense (`HunYuanDenseV1ForCausalLM`: Hunyuan-0.5B to -7B, Hunyuan-MT-7B): Llama
    /// with an RMSNorm over each head's query and key (`query_layernorm`, `key_layernorm`)
    /// after RoPE ([`Arch::qk_norm_after_rope`]), and NTK-alpha RoPE (its base stretched by
    /// `alpha`, [`super::hunyuan`]).
    Hunyuan,
}

impl Arch {
    /// Gemma, Gemma 2, Gemma 3 or VaultGemma ([`super::GemmaFeatures`]).
    pub fn is_gemma(self) -> bool {
        matches!(
            self,
            Arch::Gemma | Arch::Gemma2 | Arch::Gemma3 | Arch::VaultGemma
        )
    }

    /// GLM or GLM-4 ([`Arch::Glm`], [`Arch::Glm4`]).
    pub fn is_glm(self) -> bool {
        matches!(self, Arch::Glm | Arch::Glm4)
    }

    /// Whether transformers rotates adjacent pairs `(2i, 2i + 1)` of each head (GLM's, ERNIE
    /// 4.5's, Helium's and Cohere's `rotate_half`, GPT-J's `rotate_every_two`), not its halves
    /// ([`super::ModelConfig::rope_interleaved`]).
    pub fn rope_interleaved(self) -> bool {
        self.is_glm()
            || self.is_cohere()
            || matches!(self, Arch::Ernie45 | Arch::Helium | Arch::GptJ)
    }

    /// Cohere or Cohere 2 ([`Arch::Cohere`], [`Arch::Cohere2`]).
    pub fn is_cohere(self) -> bool {
        matches!(self, Arch::Cohere | Arch::Cohere2)
    }

    /// Whether the norms are LayerNorms with a bias beside their weight (`<norm>.bias`, added
    /// after the norm): StableLM's, StarCoder2's, Phi's, GPT-NeoX's, Falcon's, GPT-J's,
    /// Nemotron's and Jais 2's.
    pub fn norm_bias(self) -> bool {
        matches!(
            self,
            Arch::StableLm
                | Arch::Starcoder2
                | Arch::Phi
                | Arch::GptNeoX
                | Arch::Falcon
                | Arch::GptJ
                | Arch::Nemotron
                | Arch::Jais2
        )
    }

    /// Whether the output head has a bias (`lm_head.bias`: Phi's and GPT-J's).
    pub fn head_bias(self) -> bool {
        matches!(self, Arch::Phi | Arch::GptJ)
    }

    /// The config keys of the norms' epsilon, `(HF, GGUF suffix)`, for messages: LayerNorm
    /// families' (`layer_norm_eps`, StarCoder2's `norm_epsilon`) or the RMSNorm ones'.
    pub fn eps_keys(self) -> (&'static str, &'static str) {
        match self {
            Arch::Starcoder2 => ("norm_epsilon", "layer_norm_epsilon"),
            Arch::Falcon | Arch::GptJ => ("layer_norm_epsilon", "layer_norm_epsilon"),
            Arch::Nemotron => ("norm_eps", "layer_norm_epsilon"),
            // OlmoLayerNorm's epsilon is fixed; an `olmo` GGUF's is `layer_norm_epsilon`.
            Arch::Olmo => ("(none: OlmoLayerNorm's fixed 1e-5)", "layer_norm_epsilon"),
            _ if self.is_cohere() || self.norm_bias() => ("layer_norm_eps", "layer_norm_epsilon"),
            _ => ("rms_norm_eps", "layer_norm_rms_epsilon"),
        }
    }

    /// Whether the feed-forward is gated (`down(act(gate(x)) * up(x))`), not
    /// `down(act(up(x)))` (StarCoder2's `c_fc`/`c_proj`, Phi's `fc1`/`fc2`, GPT-NeoX's and
    /// Falcon's `dense_h_to_4h`/`dense_4h_to_h`, GPT-J's `fc_in`/`fc_out`, read as up and down;
    /// Arcee's, Nemotron's, Apertus's and Jais 2's `up_proj`/`down_proj`).
    pub fn gated_mlp(self) -> bool {
        !matches!(
            self,
            Arch::Starcoder2
                | Arch::Phi
                | Arch::GptNeoX
                | Arch::Falcon
                | Arch::GptJ
                | Arch::Arcee
                | Arch::Nemotron
                | Arch::Apertus
                | Arch::Jais2
        )
    }

    /// Reads `use_sliding_window` / `max_window_layers` as Qwen2Config and Qwen3Config do.
    pub(super) fn qwen_windows(self) -> bool {
        matches!(self, Arch::Qwen2 | Arch::Qwen3)
    }

    /// Whether the norms have neither weight nor bias (OLMo's `OlmoLayerNorm`, llama.cpp's
    /// `olmo` graph's `build_norm(x, NULL, NULL, LLM_NORM)`): loading makes their weights ones.
    pub fn unweighted_norms(self) -> bool {
        self == Arch::Olmo
    }

    /// OLMo 2 or OLMo 3: query/key norms over all heads.
    pub fn is_olmo(self) -> bool {
        matches!(self, Arch::Olmo2 | Arch::Olmo3)
    }

    /// Whether the family's query and key always go through RMSNorms
    /// ([`super::ModelConfig::qk_norm`]): Qwen3's, Gemma 3's, Apertus's, OLMo's and EXAONE 4's
    /// before RoPE, HunYuan's after it.
    /// StableLM's and Cohere's per-head LayerNorms are a config's choice
    /// ([`super::ModelConfig::qk_norm_per_head`]).
    pub fn has_qk_norm(self) -> bool {
        matches!(
            self,
            Arch::Qwen3 | Arch::Gemma3 | Arch::Apertus | Arch::Hunyuan
        ) || self.post_norms_only()
    }

    /// Whether the query/key norms ([`Arch::has_qk_norm`]) come after RoPE, not before:
    /// HunYuan's (`HunYuanDenseV1Attention`; llama.cpp's `hunyuan-dense` graph).
    pub fn qk_norm_after_rope(self) -> bool {
        self == Arch::Hunyuan
    }

    /// Norms after each sub-block and none before, no MLP biases (transformers'
    /// `Olmo2DecoderLayer` and `Olmo2MLP`: OLMo 2 and 3, EXAONE 4).
    pub fn post_norms_only(self) -> bool {
        self.is_olmo() || self == Arch::Exaone4
    }
}
