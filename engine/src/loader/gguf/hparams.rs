//! [`ModelConfig`] from a GGUF file's `<arch>.*` (the architectures [`GgufFile`]'s `arch`
//! names: llama, qwen2, qwen3, phi3, gemma*, granite, smollm3, olmo2, exaone*, seed_oss, chatglm,
//! glm4, ernie4_5, command-r, cohere2, stablelm, starcoder2, phi2, falcon, arcee, nemotron, jais2,
//! apertus, mistral3, hunyuan-dense) and `tokenizer.ggml.*` metadata.

mod families;
mod heads;
mod rope;

use super::{GgufFile, GgufTensorInfo};
use crate::config::{
    layer_count, rope_every, Activation, Arch, ModelConfig, RopeScaling, NOPE_EVERY,
};
use crate::error::{Error, Result};

/// `m-00003-of-00005.gguf` -> `m-00001-of-00005.gguf` (gguf-split's names; `n` the count).
fn first_shard_name(name: &str, n: u64) -> Option<String> {
    let of = format!("-of-{n:05}");
    let at = name.find(&of)?;
    let start = at.checked_sub(6).filter(|&s| name.as_bytes()[s] == b'-')?;
    Some(format!("{}-00001{}", &name[..start], &name[at..]))
}

/// Tokens that end generation in llama.cpp whatever the file's eos/eot/eom ids say
/// (llama-vocab.cpp's list).
pub(crate) const EOG_TEXTS: [&str; 12] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

impl GgufFile {
    fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("metadata `{key}`: expected a non-negative integer, found {v}"),
                )
            }),
        }
    }
    fn meta_usize(&self, key: &str) -> Result<usize> {
        self.meta_u64(key)?
            .map(|v| v as usize)
            .ok_or_else(|| Error::format(&self.path, format!("missing metadata `{key}`")))
    }
    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!("metadata `{key}`: expected a number, found {v}"),
                )
            }),
        }
    }
    fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The model family and its metadata prefix, from `general.architecture`: llama.cpp's
    /// `llama` (Llama, Mistral, SmolLM2), `qwen2`, `qwen3`, ..., and `olmo2`, which is OLMo 3
    /// where `olmo2.attention.sliding_window` is > 0.
    pub(super) fn arch(&self) -> Result<(Arch, &'static str)> {
        match self
            .metadata
            .get("general.architecture")
            .and_then(|v| v.as_str())
        {
            Some("llama") => Ok((Arch::Llama, "llama")),
            Some("qwen2") => Ok((Arch::Qwen2, "qwen2")),
            Some("qwen3") => Ok((Arch::Qwen3, "qwen3")),
            Some("phi3") => Ok((Arch::Phi3, "phi3")),
            Some("gemma") => Ok((Arch::Gemma, "gemma")),
            Some("gemma2") => Ok((Arch::Gemma2, "gemma2")),
            Some("gemma3") => Ok((Arch::Gemma3, "gemma3")),
            Some("granite") => Ok((Arch::Granite, "granite")),
            Some("smollm3") => Ok((Arch::SmolLM3, "smollm3")),
            Some("olmo") => Ok((Arch::Olmo, "olmo")),
            // llama.cpp writes OLMo 3 as `olmo2` with a window.
            Some("olmo2") => match self.meta_u64("olmo2.attention.sliding_window")? {
                Some(w) if w > 0 => Ok((Arch::Olmo3, "olmo2")),
                _ => Ok((Arch::Olmo2, "olmo2")),
            },
            Some("exaone4") => Ok((Arch::Exaone4, "exaone4")),
            Some("seed_oss") => Ok((Arch::SeedOss, "seed_oss")),
            // GLM-4-9B-chat and ChatGLM3 (THUDM's checkpoints), and GlmForCausalLM's.
            Some("chatglm") => Ok((Arch::Glm, "chatglm")),
            Some("glm4") => Ok((Arch::Glm4, "glm4")),
            Some("ernie4_5") => Ok((Arch::Ernie45, "ernie4_5")),
            // EXAONE 3 and 3.5: Llama's graph on HF's q/k rows (NEOX RoPE).
            Some("exaone") => Ok((Arch::Exaone, "exaone")),
            // Command R and Aya (`CohereForCausalLM`), Command R7B (`Cohere2ForCausalLM`).
            Some("command-r") => Ok((Arch::Cohere, "command-r")),
            Some("cohere2") => Ok((Arch::Cohere2, "cohere2")),
            Some("stablelm") => Ok((Arch::StableLm, "stablelm")),
            Some("starcoder2") => Ok((Arch::Starcoder2, "starcoder2")),
            // Phi-1.5 and Phi-2 (`PhiForCausalLM`).
            Some("phi2") => Ok((Arch::Phi, "phi2")),
            // Falcon-7B, -40B, -180B (`FalconForCausalLM`, q/k/v stacked as [q; k; v]).
            Some("falcon") => Ok((Arch::Falcon, "falcon")),
            // AFM (`ArceeForCausalLM`: Llama's converter, q/k rows permuted).
            Some("arcee") => Ok((Arch::Arcee, "arcee")),
            // Nemotron-4 and Minitron (`NemotronForCausalLM`: norms stored with the 1 added).
            Some("nemotron") => Ok((Arch::Nemotron, "nemotron")),
            // Jais 2 (`Jais2ForCausalLM`: its converter keeps HF's rows; NEOX RoPE).
            Some("jais2") => Ok((Arch::Jais2, "jais2")),
            // Apertus (`ApertusForCausalLM`: HF's q/k rows, NEOX RoPE; xIELU constants in
            // `xielu.*` metadata).
            Some("apertus") => Ok((Arch::Apertus, "apertus")),
            // Ministral 3 (`Ministral3ForCausalLM`, Mistral 3's text model): Llama's converter,
            // YaRN, Llama 4's attention temperature.
            Some("mistral3") => Ok((Arch::Ministral3, "mistral3")),
            // HunYuan dense (`HunYuanDenseV1ForCausalLM`: HF's q/k rows, NEOX RoPE, the
            // NTK-alpha base written as the file's base).
            Some("hunyuan-dense") => Ok((Arch::Hunyuan, "hunyuan-dense")),
            other => {
                let found = match other {
                    Some(a) => format!("{a:?}"),
                    None => "missing (or not a string)".to_string(),
                };
                Err(Error::format(
                    &self.path,
                    format!(
                        "unknown architecture: metadata `general.architecture` is {found}, \
                         expected \"llama\" (Llama, Mistral and SmolLM2 GGUFs use it), \
                         \"qwen2\", \"qwen3\", \"phi3\", \"gemma\", \"gemma2\", \"gemma3\", \"granite\", \
                         \"smollm3\", \"olmo2\", \"exaone\", \"exaone4\", \"seed_oss\", \"chatglm\", \"glm4\", \
                         \"ernie4_5\", \"command-r\", \"cohere2\", \"stablelm\", \"starcoder2\", \"phi2\", \"falcon\", \"arcee\", \"nemotron\", \"apertus\", \"jais2\", \"mistral3\" or \"hunyuan-dense\""
                    ),
                ))
            }
        }
    }

    /// Refuses one shard of a split file (`gguf-split`; the hub's `-00001-of-0000N.gguf`): it
    /// holds part of the tensors only. The message gives the merge command, with the first
    /// shard's name where the file's follows the `-0000K-of-0000N` pattern.
    pub fn check_not_split(&self) -> Result<()> {
        let Some(n) = self.meta_u64("split.count")?.filter(|&n| n > 1) else {
            return Ok(());
        };
        let no = self.meta_u64("split.no")?.unwrap_or(0) + 1;
        let name = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let first = first_shard_name(&name, n).unwrap_or(name);
        Err(Error::unsupported(format!(
            "{}: shard {no} of {n} of a split GGUF (`split.count`); merge the shards into one file first: `llama-gguf-split --merge {first} merged.gguf`",
            self.path.display()
        )))
    }

    /// Refuses a GGUF that is not a model (`general.type` other than "model"; files from
    /// before the key have none): a llama.cpp LoRA adapter ("adapter", from
    /// `convert_lora_to_gguf.py`), a vision projector, ...
    fn check_is_model(&self) -> Result<()> {
        match self.metadata.get("general.type").and_then(|v| v.as_str()) {
            None | Some("model") => Ok(()),
            Some("adapter") => Err(Error::unsupported(format!(
                "{}: a llama.cpp LoRA adapter (`general.type` \"adapter\"), not a model: pass it with --adapter NAME=PATH, and its base model with -m",
                self.path.display()
            ))),
            Some(t) => Err(Error::format(
                &self.path,
                format!("`general.type` is {t:?}, not \"model\": not a model file"),
            )),
        }
    }

    /// Whether the layers' `modules` (GGUF stems: one module, or its stacked and unstacked
    /// forms) have biases. llama.cpp reads each layer's own; this engine's layers share one
    /// form, so a file with them in some layers only is refused, naming the first layer that
    /// differs from layer 0 (its biases had been dropped with a warning, or been asked for).
    fn biased(&self, modules: &[&str], layers: usize) -> Result<bool> {
        let has = |l: usize| {
            (modules.iter()).any(|m| self.tensor(&format!("blk.{l}.{m}.bias")).is_some())
        };
        let first = has(0);
        match (1..layers).find(|&l| has(l) != first) {
            Some(l) => Err(Error::unsupported(format!(
                "{}: layer 0 {} `{m}` bias and layer {l} {}: biases in some layers only are not read",
                self.path.display(),
                if first { "has a" } else { "has no" },
                if first { "has none" } else { "has one" },
                m = modules.join("`/`"),
            ))),
            None => Ok(first),
        }
    }

    /// Model hyper-parameters from the `<arch>.*` and `tokenizer.ggml.*` metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        self.check_not_split()?;
        self.check_is_model()?;
        let (arch, a) = self.arch()?;
        let key = |k: &str| format!("{a}.{k}");
        let p = &self.path;
        if self.meta_u64(&key("expert_count"))?.unwrap_or(0) > 0 {
            return Err(Error::unsupported(format!(
                "{}: mixture-of-experts {a} models",
                p.display()
            )));
        }
        let all_layers = layer_count(self.meta_usize(&key("block_count"))?, p)?;
        // llama.cpp runs the layers before the next-token-prediction ones it appends.
        let num_layers = self.forward_layers(arch, a, all_layers)?;
        let (heads, kv_heads) = self.head_counts()?;
        let (hidden, key_length, head_dim) = self.widths()?;
        // llama.cpp rotates the first `rope.dimension_count` dimensions of each head; of these
        // architectures only Phi-3 (Phi-4-mini), GLM (half), StableLM (a quarter), Phi-2 and
        // Nemotron (half) have fewer than the head's.
        let partial = matches!(
            arch,
            Arch::Phi3 | Arch::StableLm | Arch::Phi | Arch::Nemotron
        ) || arch.is_glm();
        let rotary_dim = match self.meta_u64(&key("rope.dimension_count"))? {
            None => head_dim,
            Some(rot) if rot as usize == head_dim => head_dim,
            Some(rot) if partial && rot > 0 && rot % 2 == 0 && (rot as usize) < head_dim => {
                rot as usize
            }
            // Whatever the head width, no count of these is one.
            Some(rot) if rot == 0 || rot % 2 == 1 => {
                return Err(Error::format(
                    p,
                    format!("`{a}.rope.dimension_count` is {rot}; expected an even number > 0 and at most head_dim {head_dim}"),
                ));
            }
            Some(rot) if rot as usize > head_dim => {
                let msg = match key_length {
                    None => format!("no `{a}.attention.key_length`, so each head is taken as embedding_length / head_count = {head_dim} wide, but `{a}.rope.dimension_count` is {rot}, more than that (a file whose heads are wider needs its key_length)"),
                    Some(_) => format!("`{a}.rope.dimension_count` is {rot}, more than head_dim {head_dim}"),
                };
                return Err(Error::format(p, msg));
            }
            Some(rot) => {
                return Err(Error::unsupported(format!(
                    "{}: partial rotary embedding ({a}.rope.dimension_count {rot} != head_dim {head_dim}; an even part is read for phi3, phi2, stablelm, nemotron, chatglm and glm4 files only)",
                    p.display()
                )));
            }
        };
        self.nemotron_rope(arch, hidden / heads, head_dim, rotary_dim)?;
        // Values as wide as keys: the attention kernels' one head width.
        if let Some(v) = self.meta_u64(&key("attention.value_length"))? {
            if v as usize != head_dim {
                return Err(Error::unsupported(format!(
                    "{}: `{a}.attention.value_length` {v} differs from the key width {head_dim}: value heads of another width are not supported",
                    p.display()
                )));
            }
        }
        // Llama 3.1+ GGUFs: llama3 RoPE scaling as one divisor per frequency, in the families
        // whose llama.cpp loader makes `rope_freqs` (another's holding it is refused as its
        // weights are read).
        let rope_freq_factors = match super::names::read_elsewhere(arch, "rope_freqs.weight") {
            true => self.frequency_factors("rope_freqs.weight", rotary_dim)?,
            false => None,
        };
        // A LongRoPE file's own keys (its attn_factor) are not another scaling's.
        let longrope = match arch {
            Arch::Phi3 => self.phi3_longrope(rotary_dim)?,
            _ => None,
        };
        let rope_scaling = match longrope {
            Some(l) => Some(RopeScaling::LongRope(l)),
            None => self.rope_scaling(&key)?,
        };
        if let (Some(s), Some(_)) = (&rope_scaling, &rope_freq_factors) {
            return Err(Error::unsupported(format!(
                "{}: both `rope_freqs.weight` (Llama 3's scaling) and {}: one RoPE scaling at a time is supported",
                p.display(),
                s.describe()
            )));
        }
        self.unread_biases(arch, num_layers)?;
        self.stray_tensors(arch, a, all_layers)?;
        let (qk_norm, qk_norm_per_head) = self.qk_norms(arch, a, num_layers)?;
        let rope_theta = self.meta_f64(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let rope_theta = self.ntk_alpha(arch, &key, rope_theta, head_dim)?;
        self.text_only(arch)?;
        let (gemma, attention_window) = self.gemma(arch, hidden, heads, head_dim, num_layers)?;
        let local_rope_theta = self.local_rope_theta(arch, &attention_window, rope_theta)?;
        let granite = self.granite(arch, head_dim)?;
        // llama.cpp's `seed_oss` scales the scores by `seed_oss.attention.scale` where it is
        // set (its converter writes none); transformers' Seed-OSS by head_dim^-0.5.
        let scale = self.meta_f64("seed_oss.attention.scale")?;
        if let Some(s) = scale.filter(|&s| s != 0.0 && arch == Arch::SeedOss) {
            return Err(Error::unsupported(format!(
                "{}: metadata `seed_oss.attention.scale` {s}: an attention scale other than head_dim^-0.5 is not read for `seed_oss` files",
                p.display()
            )));
        }
        let vocab_size = match self.meta_u64(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => match self
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
            {
                Some(a) => a.len(),
                None => {
                    return Err(Error::format(
                        p,
                        format!("missing metadata `{a}.vocab_size` and `tokenizer.ggml.tokens`"),
                    ))
                }
            },
        };
        let id = |k: &str| -> Result<Option<u32>> { Ok(self.meta_u64(k)?.map(|v| v as u32)) };
        let mut eos = Vec::new();
        for k in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            if let Some(i) = id(k)? {
                if !eos.contains(&i) {
                    eos.push(i);
                }
            }
        }
        // llama.cpp's end-of-generation tokens by their text (llama-vocab.cpp): a Qwen GGUF
        // whose eos id is <|im_end|> still ends at <|endoftext|>, as its generation_config says.
        // llama.cpp's FIM pad/repo/file-separator tokens, where it also ends, are left out: HF's
        // generation_config does not stop at them, and dlp-run has no fill-in-the-middle mode.
        let tokens = self.metadata.get("tokenizer.ggml.tokens");
        for (i, t) in tokens
            .and_then(|v| v.as_array())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let i = i as u32;
            if t.as_str().is_some_and(|t| EOG_TEXTS.contains(&t)) && !eos.contains(&i) {
                eos.push(i);
            }
        }
        // llama.cpp's `smollm3`: every fourth layer NoPE, a step no key sets; its `exaone4`:
        // with windows, the sliding layers alone rotate.
        let rope_layers = match arch {
            Arch::SmolLM3 => rope_every(num_layers, NOPE_EVERY),
            // llama.cpp's `cohere2`: the sliding layers alone rotate.
            Arch::Cohere2 => attention_window.iter().map(Option::is_some).collect(),
            Arch::Exaone4 if attention_window.iter().any(Option::is_some) => {
                attention_window.iter().map(Option::is_some).collect()
            }
            _ => vec![true; num_layers],
        };
        ModelConfig {
            arch,
            hidden_size: hidden,
            intermediate_size: self.meta_usize(&key("feed_forward_length"))?,
            num_layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            rotary_dim,
            // llama.cpp's `chatglm`, `glm4` and `ernie4_5` run NORM RoPE on HF's rows, which
            // their converters leave as they are (adjacent pairs, as transformers rotates them).
            rope_interleaved: arch.rope_interleaved(),
            vocab_size,
            input_vocab: None,
            rms_norm_eps: self.norm_eps(arch, a)?,
            rope_theta,
            attn_temperature: self.attn_temperature(arch, &key, rope_scaling.as_ref())?,
            clip_qkv: self.clamp_kqv(arch, a)?,
            quantization: None,
            rope_scaling,
            rope_freq_factors,
            max_position_embeddings: self
                .meta_u64(&key("context_length"))?
                .map_or(4096, |v| v as usize),
            tie_word_embeddings: self.tensor("output.weight").is_none(),
            // A `chatglm` file's q/k/v biases may be stacked as its weights are.
            qkv_bias: self.biased(&["attn_q", "attn_qkv"], num_layers)?,
            o_bias: self.biased(&["attn_output"], num_layers)?,
            mlp_bias: self.biased(&["ffn_down"], num_layers)?,
            head_bias: arch.head_bias()
                || (arch == Arch::Qwen2 && self.tensor("output.bias").is_some()),
            qk_norm,
            qk_norm_per_head,
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: eos,
            local_rope_theta,
            attention_window,
            rope_layers,
            // StarCoder2's and Phi-2's ungated feed-forwards: GELU's tanh form, as llama.cpp's
            // and their checkpoints'. Falcon's checkpoints run the exact GELU (FalconConfig's
            // `gelu`), which this follows where llama.cpp runs the tanh form (about 5e-4 apart
            // in the tiny fixture's logits).
            activation: match (&gemma, arch.gated_mlp()) {
                (None, false) if arch == Arch::Falcon => Activation::GeluErf,
                // llama.cpp's LLM_FFN_RELU_SQR, their checkpoints' `relu2`.
                (None, false) if matches!(arch, Arch::Arcee | Arch::Nemotron | Arch::Jais2) => {
                    Activation::Relu2
                }
                // llama.cpp's ggml_xielu with the `xielu.*` constants (loader::apertus).
                (None, false) if arch == Arch::Apertus => Activation::Xielu,
                (Some(_), _) | (None, false) => Activation::GeluTanh,
                (None, true) => Activation::Silu,
            },
            gemma,
            granite,
            logit_scale: self.logit_scale(arch, a)?,
            parallel_residual: self.parallel_residual(arch, a, num_layers)?,
            parallel_norms: self.falcon_second_norm(arch, a, num_layers)?,
        }
        .validated(p)
    }
}
