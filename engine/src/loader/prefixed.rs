//! Checkpoints saved under prefixes of their own, as the model reads them: GPT-NeoX's,
//! Falcon's and GPT-J's whole-model tensors under Llama's names and prefixes (GPT-NeoX's
//! `gpt_neox.embed_in`, Falcon's `transformer.word_embeddings` and GPT-J's `transformer.wte` as
//! `model.embed_tokens`, ...); and GPT-NeoX's and Falcon's q/k/v, out of one stacked module
//! (`attention.query_key_value`, `self_attention.query_key_value`) whose rows transformers reads
//! per key/value group: each group's query heads, then its key head, then its value head
//! (GPT-NeoX, and Falcon with neither option below: a group per head, `view(heads, 3 *
//! head_size)`; Falcon's `new_decoder_architecture`: `num_kv_heads` groups; Falcon's
//! `multi_query`: one group, already [all q; k; v]). Loading reorders them to all heads' q rows, then k, then v, and
//! [`super::fused::split_stacked`] splits them as any stacked q/k/v; a PEFT adapter's lora_B on
//! the module is reordered alike. Their linears keep their own names
//! ([`super::fused::stored_modules`]).

use crate::config::{Arch, ModelConfig};
use crate::error::Result;
use crate::tensor::{HostTensor, WeightMap};

/// (the checkpoint's prefix, Llama's), each at the start of a name.
type Prefixes = [(&'static str, &'static str)];

/// GPT-NeoX's (`GPTNeoXForCausalLM`, which saves its output head as `embed_out`).
const GPT_NEOX: &Prefixes = &[
    ("gpt_neox.embed_in.", "model.embed_tokens."),
    ("gpt_neox.layers.", "model.layers."),
    ("gpt_neox.final_layer_norm.", "model.norm."),
    ("embed_out.", "lm_head."),
];

/// Falcon's (`FalconForCausalLM`; `lm_head` is Llama's name already).
const FALCON: &Prefixes = &[
    ("transformer.word_embeddings.", "model.embed_tokens."),
    ("transformer.h.", "model.layers."),
    ("transformer.ln_f.", "model.norm."),
];

/// GPT-J's (`GPTJForCausalLM`; `lm_head` is Llama's name already).
const GPT_J: &Prefixes = &[
    ("transformer.wte.", "model.embed_tokens."),
    ("transformer.h.", "model.layers."),
    ("transformer.ln_f.", "model.norm."),
];

/// The prefixes of `arch`'s checkpoints; `None` for the families read under Llama's.
fn prefixes(arch: Arch) -> Option<&'static Prefixes> {
    match arch {
        Arch::GptNeoX => Some(GPT_NEOX),
        Arch::Falcon => Some(FALCON),
        Arch::GptJ => Some(GPT_J),
        _ => None,
    }
}

/// Whether `arch`'s checkpoints are read here (GPT-NeoX's, Falcon's and GPT-J's).
pub fn applies(arch: Arch) -> bool {
    prefixes(arch).is_some()
}

/// PEFT's prefix in front of an adapter's tensor names.
const PEFT: &str = "base_model.model.";

/// `name` (a checkpoint's, or an adapter's with PEFT's prefix) under Llama's prefixes; `None`
/// where none applies (or `arch` is not read here).
pub fn model_name(arch: Arch, name: &str) -> Option<String> {
    let (peft, rest) = match name.strip_prefix(PEFT) {
        Some(rest) => (PEFT, rest),
        None => ("", name),
    };
    prefixes(arch)?.iter().find_map(|(own, llama)| {
        rest.strip_prefix(own)
            .map(|tail| format!("{peft}{llama}{tail}"))
    })
}

/// `arch`'s name for a module or tensor under Llama's prefixes (`model.layers.3.mlp.fc`), as
/// the checkpoint and an adapter's config name it (`gpt_neox.layers.3...`).
pub fn stored_name(arch: Arch, name: &str) -> Option<String> {
    prefixes(arch)?.iter().find_map(|(own, llama)| {
        let llama = llama.trim_end_matches('.');
        let tail = name.strip_prefix(llama)?;
        (tail.is_empty() || tail.starts_with('.'))
            .then(|| format!("{}{tail}", own.trim_end_matches('.')))
    })
}

/// `order[j]`: the row of the grouped layout that loading puts at row `j` of the stacked [all
/// q; all k; all v] layout: `kv_heads` groups, each `heads / kv_heads` query heads then one key
/// and one value head, every head `head_dim` rows (transformers' FalconAttention view
/// `(kv_heads, heads / kv_heads + 2, head_dim)`; GPT-NeoX's is the case `kv_heads == heads`).
pub fn qkv_order(heads: usize, kv_heads: usize, head_dim: usize) -> Vec<usize> {
    let group = heads / kv_heads;
    let stride = (group + 2) * head_dim;
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    (0..q + 2 * kv)
        .map(|j| {
            // (group, head within the group's rows, row within the head)
            let (g, slot, d) = match j {
                j if j < q => (j / head_dim / group, j / head_dim % group, j % head_dim),
                j if j < q + kv => ((j - q) / head_dim, group, (j - q) % head_dim),
                j => ((j - q - kv) / head_dim, group + 1, (j - q - kv) % head_dim),
            };
            g * stride + slot * head_dim + d
        })
        .collect()
}

/// `t` (`[q_dim + 2 * kv_dim, ...]`, a query_key_value weight, bias or lora_B) with its rows in
/// the stacked order ([`qkv_order`]); as it is where its rows are not whole (the shape check
/// that follows names it).
pub fn reorder_qkv(t: &HostTensor, cfg: &ModelConfig) -> HostTensor {
    let order = qkv_order(cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    match t.shape.first() == Some(&order.len()) {
        true => t.gather_rows(order),
        false => t.clone(),
    }
}

/// The stacked q/k/v module of `arch`'s layers (GPT-J has none).
fn qkv_module(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Falcon => Some("self_attention.query_key_value"),
        Arch::GptNeoX => Some("attention.query_key_value"),
        _ => None,
    }
}

/// Whether `arch`'s q/k/v are stacked per key/value group ([`reorder_qkv`] applies).
pub fn grouped_qkv(arch: Arch) -> bool {
    qkv_module(arch).is_some()
}

/// Renames a GPT-NeoX, Falcon or GPT-J checkpoint's whole-model tensors and layers to Llama's
/// prefixes and reorders each layer's query_key_value rows ([`reorder_qkv`]). (The buffers older
/// checkpoints saved, masks and RoPE tables, are left out as the files are read.)
///
/// # Errors
/// A tensor present under both names.
pub fn prepare_checkpoint(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    w.rename_to_model(|n| model_name(cfg.arch, n), "the checkpoint's")?;
    if let Some(module) = qkv_module(cfg.arch) {
        for layer in 0..cfg.num_layers {
            for suffix in ["weight", "bias"] {
                let name = format!("model.layers.{layer}.{module}.{suffix}");
                if let Some(t) = w.get_mut(&name) {
                    *t = reorder_qkv(t, cfg);
                }
            }
        }
    }
    // Messages name a tensor as the checkpoint holds it: its module's name, then its prefix.
    fn file_name(arch: Arch, n: &str) -> Option<String> {
        let module = super::fused::stored_name_in(arch, n);
        stored_name(arch, module.as_deref().unwrap_or(n))
    }
    let of: fn(&str) -> Option<String> = match cfg.arch {
        Arch::Falcon => |n| file_name(Arch::Falcon, n),
        Arch::GptJ => |n| file_name(Arch::GptJ, n),
        Arch::GptNeoX => |n| file_name(Arch::GptNeoX, n),
        _ => return Ok(()),
    };
    w.file_names = Some(crate::tensor::FileNames {
        of,
        gguf_order: false,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two heads of 2 (GPT-NeoX, a group per head): transformers' rows [q0 q0 k0 k0 v0 v0 q1
    /// q1 k1 k1 v1 v1] become [q0 q0 q1 q1 k0 k0 k1 k1 v0 v0 v1 v1].
    #[test]
    fn qkv_rows_go_from_per_head_to_stacked() {
        assert_eq!(qkv_order(2, 2, 2), [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        let mut seen = qkv_order(4, 4, 16);
        seen.sort();
        assert_eq!(seen, (0..192).collect::<Vec<_>>());
    }

    /// Falcon-40B's layout, four heads of 1 in two groups: [q0 q1 k0 v0 q2 q3 k1 v1] become
    /// [q0 q1 q2 q3 k0 k1 v0 v1]; Falcon-7B's multi-query one group is already stacked.
    #[test]
    fn qkv_rows_go_from_per_group_to_stacked() {
        assert_eq!(qkv_order(4, 2, 1), [0, 1, 4, 5, 2, 6, 3, 7]);
        assert_eq!(qkv_order(4, 1, 3), (0..18).collect::<Vec<_>>());
        let mut seen = qkv_order(8, 2, 16);
        seen.sort();
        assert_eq!(seen, (0..192).collect::<Vec<_>>());
    }

    #[test]
    fn names_map_both_ways() {
        let neox = Arch::GptNeoX;
        for (own, llama) in [
            ("gpt_neox.embed_in.weight", "model.embed_tokens.weight"),
            ("gpt_neox.final_layer_norm.bias", "model.norm.bias"),
            ("embed_out.weight", "lm_head.weight"),
            (
                "gpt_neox.layers.3.attention.query_key_value.weight",
                "model.layers.3.attention.query_key_value.weight",
            ),
            (
                "base_model.model.gpt_neox.layers.0.mlp.dense_h_to_4h.lora_A.weight",
                "base_model.model.model.layers.0.mlp.dense_h_to_4h.lora_A.weight",
            ),
        ] {
            assert_eq!(model_name(neox, own).as_deref(), Some(llama));
        }
        assert_eq!(
            stored_name(neox, "model.layers.2.attention.dense").as_deref(),
            Some("gpt_neox.layers.2.attention.dense")
        );
        assert_eq!(
            stored_name(neox, "lm_head.weight").as_deref(),
            Some("embed_out.weight")
        );
        assert_eq!(
            model_name(neox, "model.layers.0.mlp.dense_h_to_4h.weight"),
            None
        );
        let falcon = Arch::Falcon;
        assert_eq!(
            model_name(falcon, "transformer.h.1.ln_attn.bias").as_deref(),
            Some("model.layers.1.ln_attn.bias")
        );
        assert_eq!(
            model_name(falcon, "transformer.word_embeddings.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(model_name(falcon, "lm_head.weight"), None);
        assert_eq!(
            stored_name(falcon, "model.norm.weight").as_deref(),
            Some("transformer.ln_f.weight")
        );
        assert_eq!(
            model_name(Arch::Llama, "transformer.h.0.ln_attn.bias"),
            None
        );
        let gptj = Arch::GptJ;
        assert_eq!(
            model_name(
                gptj,
                "base_model.model.transformer.h.3.attn.q_proj.lora_B.weight"
            )
            .as_deref(),
            Some("base_model.model.model.layers.3.attn.q_proj.lora_B.weight")
        );
        assert_eq!(
            stored_name(gptj, "model.embed_tokens.weight").as_deref(),
            Some("transformer.wte.weight")
        );
    }
}
