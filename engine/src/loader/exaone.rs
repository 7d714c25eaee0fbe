//! EXAONE 3's tensor names as Llama's. EXAONE 3 and 3.5 checkpoints (`ExaoneForCausalLM`, first
//! run as remote code) keep GPT-2's names (`transformer.h.<i>.attn.attention.q_proj`,
//! `mlp.c_fc_0`, ...); transformers 5 runs them as `LlamaForCausalLM`, renaming each tensor
//! as it loads (its `conversion_mapping` for `exaone`; it saves them back under EXAONE's). PEFT
//! saves an adapter under the live modules' names: Llama's from transformers 5, EXAONE's from
//! the remote code.

use crate::error::Result;
use crate::tensor::WeightMap;

/// transformers' renamings, in its order: (EXAONE's, Llama's); the first three only at the
/// start of a name.
const RENAMES: [(&str, &str); 10] = [
    ("transformer.wte.", "model.embed_tokens."),
    ("transformer.h.", "model.layers."),
    ("transformer.ln_f.", "model.norm."),
    (".attn.attention.", ".self_attn."),
    (".self_attn.out_proj.", ".self_attn.o_proj."),
    (".ln_1.", ".input_layernorm."),
    (".ln_2.", ".post_attention_layernorm."),
    (".mlp.c_fc_0.", ".mlp.gate_proj."),
    (".mlp.c_fc_1.", ".mlp.up_proj."),
    (".mlp.c_proj.", ".mlp.down_proj."),
];

/// PEFT's prefix in front of an adapter's tensor names.
const PEFT: &str = "base_model.model.";

/// `name` (a checkpoint's, or an adapter's with PEFT's prefix) under Llama's names; `None`
/// where no renaming applies (already Llama's, or the output head).
pub fn llama_name(name: &str) -> Option<String> {
    let (peft, rest) = match name.strip_prefix(PEFT) {
        Some(rest) => (PEFT, rest),
        None => ("", name),
    };
    let mut out = rest.to_string();
    for (i, (from, to)) in RENAMES.iter().enumerate() {
        if i < 3 {
            if let Some(tail) = out.strip_prefix(from) {
                out = format!("{to}{tail}");
            }
        } else {
            out = out.replace(from, to);
        }
    }
    (out != rest).then(|| format!("{peft}{out}"))
}

/// Llama's name for a module or tensor (`model.layers.3.mlp.gate_proj`) under EXAONE's
/// (`transformer.h.3.mlp.c_fc_0`): to match the `target_modules`, `rank_pattern` and
/// `alpha_pattern` of an adapter trained on EXAONE's names, and to name in messages what a
/// checkpoint holds.
pub fn exaone_name(key: &str) -> String {
    let mut out = format!("{key}.");
    for (i, (exaone, llama)) in RENAMES.iter().enumerate().rev() {
        if i < 3 {
            if let Some(tail) = out.strip_prefix(llama) {
                out = format!("{exaone}{tail}");
            }
        } else {
            // In reverse, so `o_proj` is undone before the `.self_attn.` it sits in.
            out = out.replace(llama, exaone);
        }
    }
    out.pop();
    out
}

/// Renames an EXAONE 3 checkpoint's tensors to Llama's (nothing for one saved under Llama's).
///
/// # Errors
/// A tensor present under both names (which one the model should read is not for the loader
/// to guess).
pub fn rename_checkpoint(w: &mut WeightMap) -> Result<()> {
    // Messages name a tensor as the checkpoint holds it (shapes in its own order).
    if w.rename_to_model(llama_name, "EXAONE's")? {
        w.file_names = Some(crate::tensor::FileNames {
            of: |name| Some(exaone_name(name)).filter(|e| e != name),
            gguf_order: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers 5.25's renamings of a saved EXAONE checkpoint (its `exaone` entry in
    /// `conversion_mapping`), and their inverse for adapter module keys.
    #[test]
    fn names_are_transformers_renamings() {
        for (exaone, llama) in [
            ("transformer.wte.weight", "model.embed_tokens.weight"),
            ("transformer.ln_f.weight", "model.norm.weight"),
            (
                "transformer.h.0.ln_1.weight",
                "model.layers.0.input_layernorm.weight",
            ),
            (
                "transformer.h.11.ln_2.weight",
                "model.layers.11.post_attention_layernorm.weight",
            ),
            (
                "transformer.h.0.attn.attention.q_proj.weight",
                "model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "transformer.h.2.attn.attention.out_proj.weight",
                "model.layers.2.self_attn.o_proj.weight",
            ),
            (
                "transformer.h.1.mlp.c_fc_0.weight",
                "model.layers.1.mlp.gate_proj.weight",
            ),
            (
                "transformer.h.1.mlp.c_fc_1.weight",
                "model.layers.1.mlp.up_proj.weight",
            ),
            (
                "transformer.h.1.mlp.c_proj.weight",
                "model.layers.1.mlp.down_proj.weight",
            ),
            (
                "base_model.model.transformer.h.4.attn.attention.v_proj.lora_A.weight",
                "base_model.model.model.layers.4.self_attn.v_proj.lora_A.weight",
            ),
        ] {
            assert_eq!(llama_name(exaone).as_deref(), Some(llama), "{exaone}");
            assert_eq!(llama_name(llama), None, "{llama}");
        }
        assert_eq!(llama_name("lm_head.weight"), None);
        for (llama, exaone) in [
            (
                "model.layers.3.self_attn.o_proj",
                "transformer.h.3.attn.attention.out_proj",
            ),
            (
                "model.layers.3.self_attn.k_proj",
                "transformer.h.3.attn.attention.k_proj",
            ),
            (
                "model.layers.10.mlp.gate_proj",
                "transformer.h.10.mlp.c_fc_0",
            ),
            ("model.layers.0.mlp.down_proj", "transformer.h.0.mlp.c_proj"),
        ] {
            assert_eq!(exaone_name(llama), exaone);
            assert_eq!(
                llama_name(&format!("{exaone}.weight")),
                Some(format!("{llama}.weight"))
            );
        }
    }

    #[test]
    fn a_tensor_under_both_names_is_refused() {
        let mut w = WeightMap::new("m");
        let t = || crate::tensor::HostTensor::new(vec![1], vec![1.0]);
        let file = std::path::Path::new("m");
        w.insert("transformer.h.0.ln_1.weight".into(), t(), file)
            .unwrap();
        w.insert("transformer.h.0.ln_2.weight".into(), t(), file)
            .unwrap();
        rename_checkpoint(&mut w).unwrap();
        assert!(w.contains("model.layers.0.input_layernorm.weight"));
        assert!(w.contains("model.layers.0.post_attention_layernorm.weight"));
        // Messages name what the checkpoint holds, shapes in its (HF's) order.
        let e = w.take("model.layers.0.self_attn.q_proj.weight", &[8, 4]);
        let e = e.err().unwrap().to_string();
        assert!(e.contains("missing tensor `transformer.h.0.attn.attention.q_proj.weight` (model.layers.0.self_attn.q_proj.weight): expected shape [8, 4]"), "{e}");
        let e = w.take("model.layers.0.input_layernorm.weight", &[2]);
        let e = e.err().unwrap().to_string();
        assert!(e.contains("tensor `transformer.h.0.ln_1.weight` (model.layers.0.input_layernorm.weight) has shape [1], expected [2]"), "{e}");
        w.insert("transformer.h.0.ln_1.weight".into(), t(), file)
            .unwrap();
        w.insert("model.layers.0.input_layernorm.weight".into(), t(), file)
            .unwrap();
        let e = rename_checkpoint(&mut w).unwrap_err().to_string();
        assert!(e.contains("`transformer.h.0.ln_1.weight` and `model.layers.0.input_layernorm.weight` are one tensor"), "{e}");
    }
}
