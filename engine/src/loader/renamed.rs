//! Checkpoints that name some tensors otherwise than the model reads them (Apertus's norms,
//! Llama's `input_layernorm`/`post_attention_layernorm`; HunYuan's query/key norms, Qwen3's
//! `q_norm`/`k_norm`): renamed at load, and named back in messages.

use crate::error::{Error, Result};
use crate::tensor::{FileNames, WeightMap};

/// A family's own names of tensors the model reads under others.
pub(super) trait OwnNames {
    /// The family, for messages ("Apertus").
    const FAMILY: &'static str;
    /// `(its fragment, the model's)` pairs, each replaced once in a name.
    const PAIRS: &'static [(&'static str, &'static str)];
}

/// The model's name of a `T` tensor, where it differs.
fn llama_name<T: OwnNames>(name: &str) -> Option<String> {
    (T::PAIRS.iter().find(|(a, _)| name.contains(a))).map(|(a, l)| name.replacen(a, l, 1))
}

/// `T`'s name of a tensor the model reads under another (for messages).
fn own_name<T: OwnNames>(name: &str) -> Option<String> {
    (T::PAIRS.iter().find(|(_, l)| name.contains(l))).map(|(a, l)| name.replacen(l, a, 1))
}

/// Renames a `T` checkpoint's tensors to the names the model reads; messages then name every
/// tensor as the family's checkpoints do (a missing one too).
///
/// # Errors
/// A tensor under the model's name: transformers' `T` does not read it (its own is then
/// missing, which transformers fills with its initial values), so it is no `T` checkpoint.
pub(super) fn rename_checkpoint<T: OwnNames>(w: &mut WeightMap) -> Result<()> {
    let theirs = w.names().filter(|n| own_name::<T>(n).is_some()).min();
    if let Some(n) = theirs.map(String::from) {
        let own = own_name::<T>(&n).unwrap_or_default();
        return Err(Error::format(
            &w.origin,
            format!(
                "tensor `{n}`: {}'s checkpoints name this tensor `{own}`, the only name transformers' {} reads",
                T::FAMILY,
                T::FAMILY
            ),
        ));
    }
    w.rename_to_model(llama_name::<T>, &format!("{}'s", T::FAMILY))?;
    w.file_names = Some(FileNames {
        of: own_name::<T>,
        gguf_order: false,
    });
    Ok(())
}

/// HunYuan dense's query/key norms (`HunYuanDenseV1Attention.query_layernorm`,
/// `key_layernorm`), read as Qwen3's `q_norm`/`k_norm`.
pub(super) struct Hunyuan;

impl OwnNames for Hunyuan {
    const FAMILY: &'static str = "HunYuan";
    const PAIRS: &'static [(&'static str, &'static str)] = &[
        (".self_attn.query_layernorm.", ".self_attn.q_norm."),
        (".self_attn.key_layernorm.", ".self_attn.k_norm."),
    ];
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::loader::apertus::Apertus;
    use crate::tensor::HostTensor;

    /// Each pair renamed both ways, and nothing else.
    #[test]
    fn names_both_ways() {
        let cases = [
            (
                "model.layers.3.attention_layernorm.weight",
                Some("model.layers.3.input_layernorm.weight"),
                llama_name::<Apertus> as fn(&str) -> Option<String>,
            ),
            (
                "model.layers.0.feedforward_layernorm.weight",
                Some("model.layers.0.post_attention_layernorm.weight"),
                llama_name::<Apertus>,
            ),
            (
                "model.layers.0.mlp.up_proj.weight",
                None,
                llama_name::<Apertus>,
            ),
            (
                "model.layers.2.self_attn.query_layernorm.weight",
                Some("model.layers.2.self_attn.q_norm.weight"),
                llama_name::<Hunyuan>,
            ),
            (
                "model.layers.2.self_attn.key_layernorm.weight",
                Some("model.layers.2.self_attn.k_norm.weight"),
                llama_name::<Hunyuan>,
            ),
            (
                "model.layers.2.input_layernorm.weight",
                None,
                llama_name::<Hunyuan>,
            ),
        ];
        for (own, llama, to_llama) in cases {
            assert_eq!(to_llama(own).as_deref(), llama, "{own}");
        }
        let back = own_name::<Hunyuan>("model.layers.2.self_attn.k_norm.weight");
        assert_eq!(
            back.as_deref(),
            Some("model.layers.2.self_attn.key_layernorm.weight")
        );
        assert_eq!(own_name::<Apertus>("model.norm.weight"), None);
    }

    /// A family's names renamed; the model's refused, named with the family's, in a mix as
    /// alone; a missing tensor named as the family's checkpoints name it.
    #[test]
    fn checkpoint_names() {
        let norm = || HostTensor::new(vec![2], vec![1.0, 2.0]);
        let mut w = WeightMap::new("m");
        for n in ["query_layernorm", "key_layernorm"] {
            let name = format!("model.layers.0.self_attn.{n}.weight");
            w.insert(name, norm(), Path::new("m")).unwrap();
        }
        rename_checkpoint::<Hunyuan>(&mut w).unwrap();
        let mut names: Vec<&str> = w.names().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "model.layers.0.self_attn.k_norm.weight",
                "model.layers.0.self_attn.q_norm.weight"
            ]
        );
        assert_eq!(
            w.display_name("model.layers.0.self_attn.q_norm.weight"),
            "`model.layers.0.self_attn.query_layernorm.weight` (model.layers.0.self_attn.q_norm.weight)"
        );
        let n = "model.layers.1.post_attention_layernorm.weight";
        let mut mixed = WeightMap::new("m");
        mixed.insert(n.into(), norm(), Path::new("m")).unwrap();
        let name = "model.layers.0.attention_layernorm.weight".to_string();
        mixed.insert(name, norm(), Path::new("m")).unwrap();
        let e = rename_checkpoint::<Apertus>(&mut mixed)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("tensor `{n}`: Apertus's checkpoints name this tensor `model.layers.1.feedforward_layernorm.weight`, the only name transformers' Apertus reads")), "{e}");
        // A missing tensor is named as the family's checkpoints name it.
        let mut none = WeightMap::new("m");
        rename_checkpoint::<Hunyuan>(&mut none).unwrap();
        let e = none.take("model.layers.0.self_attn.k_norm.weight", &[2]);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("missing tensor `model.layers.0.self_attn.key_layernorm.weight`"),
            "{e}"
        );
    }
}
