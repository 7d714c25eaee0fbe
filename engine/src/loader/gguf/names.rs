//! GGUF tensor names (llama.cpp's `blk.N.attn_q.weight`) and the HF names the model takes
//! (`model.layers.N.self_attn.q_proj.weight`), both ways: loading maps GGUF to HF, messages
//! about a tensor map back, so that they name the tensor the file holds.

use crate::config::Arch;

/// Per-layer modules: (GGUF, HF). Read GGUF to HF, the first row of a GGUF name wins: a `phi3`
/// file's `ffn_up` (gate and up stacked) and a `gemma3` file's `ffn_norm` (the pre-feed-forward
/// norm beside its post-attention one) are renamed by the loader, and the later rows name
/// `gate_up_proj` and `pre_feedforward_layernorm` in messages.
const LAYER: [(&str, &str); 16] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_qkv", "self_attn.qkv_proj"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("ffn_up", "mlp.gate_up_proj"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
];

/// Whole-model tensors: (GGUF, HF).
const GLOBAL: [(&str, &str); 5] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
    // The LayerNorm families' (`phi2`, `stablelm`, `starcoder2`).
    ("output_norm.bias", "model.norm.bias"),
    ("output.bias", "lm_head.bias"),
];

/// HF name of a GGUF tensor, or `None` for tensors the model does not use (e.g. `rope_freqs`).
pub fn hf_name(name: &str) -> Option<String> {
    translate(name, ("blk.", "model.layers."), |(gguf, hf)| (gguf, hf))
}

/// HF name of a tensor of an `arch` GGUF: [`hf_name`], but where the architecture gives a
/// GGUF name another meaning. llama.cpp's `phi3` keeps gate and up stacked in `ffn_up` (gate
/// rows first, as transformers' `gate_up_proj`; the loader splits it under that name);
/// `gemma2`'s and `gemma3`'s `ffn_norm` is the pre-feed-forward norm (their
/// `post_attention_norm` is transformers' `post_attention_layernorm`); `chatglm` and `glm4`
/// stack gate and up as `phi3` does, and `glm4`'s output norms take Glm4DecoderLayer's names.
pub fn hf_name_in(arch: Arch, name: &str) -> Option<String> {
    if layer_tensor(name).is_some_and(|(_, module, _)| !post_norm_made_for(arch, module)) {
        return None;
    }
    // Falcon-40B's second norm, attention's input ([`rename_falcon_norms`]).
    if arch == Arch::Falcon {
        let falcon = name.strip_prefix("blk.").and_then(split);
        if let Some((layer, "attn_norm_2", suffix)) = falcon {
            return Some(format!("model.layers.{layer}.ln_attn.{suffix}"));
        }
    }
    let hf = hf_name(name)?;
    Some(match arch {
        Arch::Phi3 | Arch::Glm | Arch::Glm4 if hf.ends_with(".mlp.up_proj.weight") => {
            hf.replace(".mlp.up_proj.", ".mlp.gate_up_proj.")
        }
        // Glm4DecoderLayer's own names for the output norms; its `post_attention_layernorm` is
        // the feed-forward's input norm (`ffn_norm`), as Llama's.
        Arch::Glm4 if name.contains(".post_attention_norm.") => {
            hf.replace(".post_attention_layernorm.", ".post_self_attn_layernorm.")
        }
        Arch::Glm4 if name.contains(".post_ffw_norm.") => {
            hf.replace(".post_feedforward_layernorm.", ".post_mlp_layernorm.")
        }
        Arch::Gemma2 | Arch::Gemma3 if name.contains(".ffn_norm.") => {
            hf.replace(".post_attention_layernorm.", ".pre_feedforward_layernorm.")
        }
        // llama.cpp's `falcon`: q/k/v stacked [q; k; v] (its converter reorders Falcon's
        // groups), split as Falcon's `query_key_value` after the reorder an HF checkpoint takes.
        Arch::Falcon if name.contains(".attn_qkv.") => {
            hf.replace(".self_attn.qkv_proj.", ".self_attention.query_key_value.")
        }
        _ => hf,
    })
}

/// Whether llama.cpp's loader makes layer tensor `module` for `arch`, where that depends on the
/// family: the norms after attention and after the feed-forward only for the families whose
/// graphs have them (models/gemma2.cpp, gemma3, olmo2, exaone4, glm4; seed-oss's
/// `post_attention_norm`, which is its feed-forward's input norm). A `llama` file's is
/// `ffn_norm`: one holding a `post_attention_norm` instead is refused, as llama.cpp refuses it
/// (it had been read as the feed-forward's input norm).
fn post_norm_made_for(arch: Arch, module: &str) -> bool {
    use Arch::*;
    match module {
        "post_attention_norm" => {
            matches!(
                arch,
                Gemma2 | Gemma3 | Olmo2 | Olmo3 | Exaone4 | SeedOss | Glm4
            )
        }
        "post_ffw_norm" => matches!(arch, Gemma2 | Gemma3 | Olmo2 | Olmo3 | Exaone4 | Glm4),
        _ => true,
    }
}

/// How messages name the tensors of an `arch` GGUF: [`gguf_name`], the reverse of
/// [`hf_name_in`] (a `gemma2`, `gemma3`, `olmo2`, `exaone4` or `seed_oss` file's norms named as
/// it names them: `seed_oss` calls its feed-forward input norm `post_attention_norm`; OLMo 3
/// files are `olmo2` files).
pub fn gguf_name_of(arch: Arch) -> fn(&str) -> Option<String> {
    match arch {
        Arch::Gemma2 | Arch::Gemma3 | Arch::Olmo2 | Arch::Olmo3 | Arch::Exaone4 | Arch::SeedOss => {
            gguf_name_gemma
        }
        Arch::Glm4 => gguf_name_glm4,
        Arch::Falcon => gguf_name_falcon,
        _ => gguf_name,
    }
}

/// GGUF name of a layer tensor whose module an architecture names its own way: the first of
/// `renamed` (`(HF module, GGUF module)`, dots around each) in `name`, or [`gguf_name`].
fn gguf_name_renamed(name: &str, renamed: &[(&str, &str)]) -> Option<String> {
    for (hf, gguf) in renamed {
        if let Some(layer) = name
            .strip_prefix("model.layers.")
            .filter(|n| n.contains(hf))
        {
            return Some(format!("blk.{}", layer.replace(hf, gguf)));
        }
    }
    gguf_name(name)
}

/// GGUF name of a Falcon tensor name ([`hf_name_in`] and [`rename_falcon_norms`] reversed).
fn gguf_name_falcon(name: &str) -> Option<String> {
    gguf_name_renamed(
        name,
        &[
            (".ln_attn.", ".attn_norm_2."),
            (".ln_mlp.", ".attn_norm."),
            (".self_attention.query_key_value.", ".attn_qkv."),
        ],
    )
}

/// A `falcon` file's norms under FalconDecoderLayer's names where it has two (Falcon-40B's:
/// `attn_norm_2`, attention's input, read as `ln_attn`; `attn_norm`, then the feed-forward's
/// as llama.cpp's graph reads it, renamed here from `input_layernorm` to `ln_mlp`); nothing
/// otherwise.
pub fn rename_falcon_norms(w: &mut crate::tensor::WeightMap, cfg: &crate::config::ModelConfig) {
    if cfg.arch != Arch::Falcon || !cfg.parallel_norms {
        return;
    }
    for layer in 0..cfg.num_layers {
        for suffix in ["weight", "bias"] {
            let from = format!("model.layers.{layer}.input_layernorm.{suffix}");
            w.rename(&from, from.replace(".input_layernorm.", ".ln_mlp."));
        }
    }
}

/// GGUF name of an HF tensor name in a `gemma2`, `gemma3`, `olmo2` or `exaone4` file, whose post-attention
/// norm is `post_attention_norm` and pre-feed-forward norm (not OLMo 2's) `ffn_norm`
/// ([`gguf_name`] otherwise).
fn gguf_name_gemma(name: &str) -> Option<String> {
    for (hf, gguf) in [
        (".post_attention_layernorm.", ".post_attention_norm."),
        (".pre_feedforward_layernorm.", ".ffn_norm."),
    ] {
        if name.contains(hf) {
            return gguf_name(name).map(|n| n.replace(".ffn_norm.", gguf));
        }
    }
    gguf_name(name)
}

/// GGUF name of a GLM-4 tensor name ([`hf_name_in`] reversed).
fn gguf_name_glm4(name: &str) -> Option<String> {
    gguf_name_renamed(
        name,
        &[
            (".post_self_attn_layernorm.", ".post_attention_norm."),
            (".post_mlp_layernorm.", ".post_ffw_norm."),
        ],
    )
}

/// GGUF name of an HF tensor name, where the model's tensors have one.
pub fn gguf_name(name: &str) -> Option<String> {
    translate(name, ("model.layers.", "blk."), |(gguf, hf)| (hf, gguf))
}

/// `name` through the tables, each pair read as (from, to) by `side`; layer tensors from
/// prefix `layers.0` to `layers.1`.
fn translate<'a>(
    name: &str,
    layers: (&str, &str),
    side: fn((&'a str, &'a str)) -> (&'a str, &'a str),
) -> Option<String> {
    let to = |table: &[(&'a str, &'a str)], from: &str| {
        (table.iter().map(|&p| side(p))).find_map(|(f, t)| (f == from).then_some(t))
    };
    if let Some(t) = to(&GLOBAL, name) {
        return Some(t.to_string());
    }
    let (layer, module, suffix) = split(name.strip_prefix(layers.0)?)?;
    Some(format!(
        "{}{layer}.{}.{suffix}",
        layers.1,
        to(&LAYER, module)?
    ))
}

/// The layer of a GGUF tensor named `blk.<layer>.<...>`, whatever its suffix.
pub(crate) fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split_once('.')?.0.parse().ok()
}

/// Whether tensor `name` of an `arch` GGUF, which has no HF name ([`hf_name_in`] is `None`),
/// is one llama.cpp's loader makes for the family and this engine reads with the metadata or
/// may leave unread: the RoPE frequency divisors `rope_freqs` (Llama 3's scaling) of the
/// families whose loader makes it (`llama`, `granite`, `arcee`, `exaone`, `exaone4`,
/// `apertus`), a `phi3` file's LongRoPE factors `rope_factors_short`/`_long`, and what
/// generation does not use: a `qwen3` file's reranking head `cls.output`, a `gemma3` file's
/// embedding projections `dense_2`/`dense_3` (llama.cpp's embedding mode). Any other such
/// tensor (`rope_freqs` or a LongRoPE factor in another family, a per-tensor scale
/// `blk.N.attn_q.scale`, an old `attn_rot_embd`) the loader refuses: llama.cpp refuses the file
/// or (the scales) multiplies it in, and left unread it would change what the model computes.
pub fn read_elsewhere(arch: Arch, name: &str) -> bool {
    match name {
        "rope_freqs.weight" => matches!(
            arch,
            Arch::Llama
                | Arch::Granite
                | Arch::Arcee
                | Arch::Exaone
                | Arch::Exaone4
                | Arch::Apertus
                | Arch::Ministral3
        ),
        "rope_factors_short.weight" | "rope_factors_long.weight" => arch == Arch::Phi3,
        "cls.output.weight" => arch == Arch::Qwen3,
        "dense_2.weight" | "dense_3.weight" => arch == Arch::Gemma3,
        _ => false,
    }
}

/// Whether an `arch` file's attn_q / attn_k rows (weights, biases, a LoRA's B) are permuted
/// by llama.cpp's converter: only its `llama` converter and those built on it (`granite`,
/// `smollm3`, `arcee`, `mistral3`) permute them (`LlamaModel.permute`; their RoPE is GPT-J
/// style), and `olmo`'s, which copies the permutation of the weights but not of the biases
/// (OLMo has none; un-permuting a bias as stored gives what llama.cpp's graph computes);
/// `qwen2`/`qwen3`/`phi3`/`gemma*`/`nemotron`/`apertus` keep HF's layout and run NEOX RoPE,
/// which is HF's.
pub(crate) fn permuted_qk(arch: Arch) -> bool {
    matches!(
        arch,
        Arch::Llama | Arch::Granite | Arch::SmolLM3 | Arch::Arcee | Arch::Ministral3 | Arch::Olmo
    )
}

/// `blk.N.<module>.weight|bias` as (N, module, suffix); `None` for other names.
pub(crate) fn layer_tensor(name: &str) -> Option<(usize, &str, &str)> {
    split(name.strip_prefix("blk.")?)
}

/// `N.<module>.weight|bias` as (N, module, suffix).
fn split(rest: &str) -> Option<(usize, &str, &str)> {
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    matches!(suffix, "weight" | "bias").then_some(())?;
    // The number as llama.cpp writes it (`str::parse` also takes `+0` and `00`, names
    // llama.cpp's never match).
    let n: usize = layer.parse().ok()?;
    (n.to_string() == layer).then_some((n, module, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (g, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            (
                "blk.12.attn_k.bias",
                "model.layers.12.self_attn.k_proj.bias",
            ),
            (
                "blk.0.ffn_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
            (
                "blk.1.attn_q_norm.weight",
                "model.layers.1.self_attn.q_norm.weight",
            ),
        ] {
            assert_eq!(hf_name(g).as_deref(), Some(hf));
            assert_eq!(gguf_name(hf).as_deref(), Some(g));
        }
        for (hf, g) in [
            (
                "model.layers.2.post_attention_layernorm.weight",
                "blk.2.post_attention_norm.weight",
            ),
            (
                "model.layers.2.pre_feedforward_layernorm.weight",
                "blk.2.ffn_norm.weight",
            ),
            (
                "model.layers.2.post_feedforward_layernorm.weight",
                "blk.2.post_ffw_norm.weight",
            ),
            (
                "model.layers.2.self_attn.q_proj.weight",
                "blk.2.attn_q.weight",
            ),
        ] {
            assert_eq!(gguf_name_of(Arch::Gemma3)(hf).as_deref(), Some(g));
            assert_eq!(hf_name_in(Arch::Gemma3, g).as_deref(), Some(hf));
        }
        for (hf, g) in [
            (
                "model.layers.1.post_self_attn_layernorm.weight",
                "blk.1.post_attention_norm.weight",
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                "blk.1.ffn_norm.weight",
            ),
            (
                "model.layers.1.post_mlp_layernorm.weight",
                "blk.1.post_ffw_norm.weight",
            ),
            (
                "model.layers.1.mlp.gate_up_proj.weight",
                "blk.1.ffn_up.weight",
            ),
            ("model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias"),
        ] {
            assert_eq!(gguf_name_of(Arch::Glm4)(hf).as_deref(), Some(g));
            assert_eq!(hf_name_in(Arch::Glm4, g).as_deref(), Some(hf));
        }
        for (hf, g) in [
            ("model.layers.1.ln_attn.bias", "blk.1.attn_norm_2.bias"),
            (
                "model.layers.0.self_attention.query_key_value.weight",
                "blk.0.attn_qkv.weight",
            ),
            (
                "model.layers.1.input_layernorm.weight",
                "blk.1.attn_norm.weight",
            ),
            ("model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"),
        ] {
            assert_eq!(gguf_name_of(Arch::Falcon)(hf).as_deref(), Some(g));
            assert_eq!(hf_name_in(Arch::Falcon, g).as_deref(), Some(hf));
        }
        assert_eq!(
            gguf_name_of(Arch::Falcon)("model.layers.1.ln_mlp.weight").as_deref(),
            Some("blk.1.attn_norm.weight")
        );
        assert_eq!(hf_name_in(Arch::Llama, "blk.0.attn_norm_2.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.0.attn_q.scale"), None);
        assert!(read_elsewhere(Arch::Phi3, "rope_factors_long.weight"));
        assert!(!read_elsewhere(Arch::Llama, "rope_factors_long.weight"));
        assert!(!read_elsewhere(Arch::Llama, "blk.0.attn_q.scale"));
        assert!(read_elsewhere(Arch::Llama, "rope_freqs.weight"));
        assert!(!read_elsewhere(Arch::Qwen2, "rope_freqs.weight"));
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }
}
