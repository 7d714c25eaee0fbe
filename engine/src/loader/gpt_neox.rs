//! GPT-NeoX's checkpoints (`GPTNeoXForCausalLM`: Pythia, GPT-NeoX-20B, Dolly v2) as the model
//! reads them: the whole-model tensors under Llama's names (`gpt_neox.embed_in` as
//! `model.embed_tokens`, `gpt_neox.final_layer_norm` as `model.norm`, `embed_out` as
//! `lm_head`, the layers under `model.layers`), and q/k/v out of `attention.query_key_value`,
//! whose rows transformers reads per head (`view(heads, 3 * head_size)`: head 0's q, k and v
//! rows, then head 1's, ...). Loading reorders them to all heads' q rows, then k, then v, and
//! [`super::fused::split_stacked`] splits them as any stacked q/k/v; a PEFT adapter's lora_B
//! on the module is reordered alike. Its linears keep their own names
//! ([`super::fused::stored_modules`]).

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, WeightMap};

/// (GPT-NeoX's prefix, Llama's), each at the start of a name.
const PREFIXES: [(&str, &str); 4] = [
    ("gpt_neox.embed_in.", "model.embed_tokens."),
    ("gpt_neox.layers.", "model.layers."),
    ("gpt_neox.final_layer_norm.", "model.norm."),
    ("embed_out.", "lm_head."),
];

/// PEFT's prefix in front of an adapter's tensor names.
const PEFT: &str = "base_model.model.";

/// The stacked q/k/v module.
const QKV: &str = "attention.query_key_value";

/// `name` (a checkpoint's, or an adapter's with PEFT's prefix) under Llama's prefixes; `None`
/// where none applies.
pub fn model_name(name: &str) -> Option<String> {
    let (peft, rest) = match name.strip_prefix(PEFT) {
        Some(rest) => (PEFT, rest),
        None => ("", name),
    };
    PREFIXES.iter().find_map(|(neox, llama)| {
        rest.strip_prefix(neox)
            .map(|tail| format!("{peft}{llama}{tail}"))
    })
}

/// GPT-NeoX's name for a module or tensor under Llama's prefixes (`model.layers.3.mlp.fc`), as
/// the checkpoint and an adapter's config name it (`gpt_neox.layers.3...`).
pub fn stored_name(name: &str) -> Option<String> {
    PREFIXES.iter().find_map(|(neox, llama)| {
        let llama = llama.trim_end_matches('.');
        let tail = name.strip_prefix(llama)?;
        (tail.is_empty() || tail.starts_with('.'))
            .then(|| format!("{}{tail}", neox.trim_end_matches('.')))
    })
}

/// `order[j]`: the row of transformers' per-head q/k/v layout that loading puts at row `j` of
/// the stacked [all q; all k; all v] layout (`heads` heads of `head_dim`).
pub fn qkv_order(heads: usize, head_dim: usize) -> Vec<usize> {
    (0..3 * heads * head_dim)
        .map(|j| {
            let (part, rest) = (j / (heads * head_dim), j % (heads * head_dim));
            let (head, d) = (rest / head_dim, rest % head_dim);
            head * 3 * head_dim + part * head_dim + d
        })
        .collect()
}

/// `t` (`[3 * hidden, ...]`, a query_key_value weight, bias or lora_B) with its rows in the
/// stacked order ([`qkv_order`]); as it is where its rows are not whole (the shape check that
/// follows names it).
pub fn reorder_qkv(t: &HostTensor, cfg: &ModelConfig) -> HostTensor {
    let order = qkv_order(cfg.num_heads, cfg.head_dim);
    match t.shape.first() == Some(&order.len()) {
        true => t.gather_rows(order),
        false => t.clone(),
    }
}

/// Renames a GPT-NeoX checkpoint's whole-model tensors and layers to Llama's prefixes and
/// reorders each layer's query_key_value rows ([`reorder_qkv`]). (The buffers older checkpoints
/// saved, masks and RoPE tables, are left out as the files are read.)
///
/// # Errors
/// A tensor present under both names.
pub fn prepare_checkpoint(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    let names: Vec<String> = w.names().map(String::from).collect();
    for name in names {
        let Some(to) = model_name(&name) else {
            continue;
        };
        if w.contains(&to) {
            return Err(Error::format(
                &w.origin,
                format!("tensors `{name}` and `{to}` are one tensor under GPT-NeoX's and Llama's names; keep one"),
            ));
        }
        w.rename(&name, to);
    }
    for layer in 0..cfg.num_layers {
        for suffix in ["weight", "bias"] {
            let name = format!("model.layers.{layer}.{QKV}.{suffix}");
            if let Some(t) = w.get_mut(&name) {
                *t = reorder_qkv(t, cfg);
            }
        }
    }
    // Messages name a tensor as the checkpoint holds it: its module's name, then its prefix.
    w.file_names = Some(crate::tensor::FileNames {
        of: |n| {
            let module = super::fused::stored_name_in(crate::config::Arch::GptNeoX, n);
            stored_name(module.as_deref().unwrap_or(n))
        },
        gguf_order: false,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two heads of 2: transformers' rows [q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1] become
    /// [q0 q0 q1 q1 k0 k0 k1 k1 v0 v0 v1 v1].
    #[test]
    fn qkv_rows_go_from_per_head_to_stacked() {
        assert_eq!(qkv_order(2, 2), [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        let mut seen = qkv_order(4, 16);
        seen.sort();
        assert_eq!(seen, (0..192).collect::<Vec<_>>());
    }

    #[test]
    fn names_map_both_ways() {
        for (neox, llama) in [
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
            assert_eq!(model_name(neox).as_deref(), Some(llama));
        }
        assert_eq!(
            stored_name("model.layers.2.attention.dense").as_deref(),
            Some("gpt_neox.layers.2.attention.dense")
        );
        assert_eq!(
            stored_name("lm_head.weight").as_deref(),
            Some("embed_out.weight")
        );
        assert_eq!(model_name("model.layers.0.mlp.dense_h_to_4h.weight"), None);
    }
}
