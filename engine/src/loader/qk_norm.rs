//! Query/key norms with a weight per head ([`ModelConfig::qk_norm_per_head`]: StableLM 2 12B's
//! `qk_layernorm`, Command R+'s `use_qk_norm`), gathered at load into one vector per layer and
//! projection, `self_attn.q_norm.weight` `[n_heads * head_dim]` (`k_norm`:
//! `[n_kv_heads * head_dim]`), head after head: the layout the `rms_norm` op reads with a weight
//! row per head. The checkpoints store them as
//!
//! - StableLM (`StableLmLayerNormPerHead`): an `nn.LayerNorm(head_dim, bias=False)` per head,
//!   `self_attn.q_layernorm.norms.<h>.weight` `[head_dim]`, `k_layernorm` one per key/value head;
//! - Cohere (`CohereLayerNorm((heads, head_dim))`): `self_attn.q_norm.weight` `[heads, head_dim]`;
//! - a GGUF (llama.cpp's `stablelm` and `command-r`): `attn_q_norm` `[head_dim, n_head]` in
//!   GGUF order, which reads here as `[n_head, head_dim]` (the converter stacks StableLM's).

use crate::config::{Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, WeightMap};

/// Gathers every layer's per-head query and key norm weights into `self_attn.{q,k}_norm.weight`
/// vectors (module docs); nothing for other models.
///
/// # Errors
/// A StableLM head's norm missing or not `[head_dim]`, a norm past the heads; a stacked norm
/// missing or not `[heads, head_dim]` (named as its file names it, with that shape).
pub fn gather(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    if !cfg.qk_norm_per_head {
        return Ok(());
    }
    let d = cfg.head_dim;
    // A GGUF's names were mapped to Cohere's form, `q_norm` `[n_head, head_dim]`.
    let per_head_tensors =
        cfg.arch == Arch::StableLm && !w.file_names.is_some_and(|n| n.gguf_order);
    for layer in 0..cfg.num_layers {
        let p = format!("model.layers.{layer}.self_attn");
        for (m, heads) in [("q", cfg.num_heads), ("k", cfg.num_kv_heads)] {
            let name = format!("{p}.{m}_norm.weight");
            let (values, file) = if per_head_tensors {
                let head = |h: usize| format!("{p}.{m}_layernorm.norms.{h}.weight");
                let prefix = format!("{p}.{m}_layernorm.norms.");
                let past = (w.names())
                    .filter_map(|n| n.strip_prefix(&prefix)?.split('.').next()?.parse().ok())
                    .filter(|&h: &usize| h >= heads)
                    .min();
                if let Some(h) = past {
                    let file = w.file_of(&head(h)).unwrap_or(w.origin.as_path());
                    return Err(Error::format(
                        file,
                        format!(
                            "tensor `{}`: a norm past the {heads} heads of `{m}_layernorm` (StableLmLayerNormPerHead makes one per head)",
                            head(h)
                        ),
                    ));
                }
                let file = w.file_of(&head(0)).map(|f| f.to_path_buf());
                let mut values = Vec::with_capacity(heads * d);
                for h in 0..heads {
                    values.extend_from_slice(&w.take(&head(h), &[d])?.values());
                }
                (values, file)
            } else {
                // Missing: named here with its own shape, `[heads, head_dim]`.
                let file = w.file_of(&name).map(|f| f.to_path_buf());
                (w.take(&name, &[heads, d])?.values().into_owned(), file)
            };
            let file = file.unwrap_or_else(|| w.origin.clone());
            w.insert(name, HostTensor::new(vec![heads * d], values), &file)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-layer StableLM 2 12B-like (`qk_layernorm`) or Command R+-like (`use_qk_norm`)
    /// config: two heads of 2 over one key/value head.
    fn config(model_type: &str, key: &str) -> ModelConfig {
        let v = serde_json::json!({"model_type": model_type, "hidden_size": 4,
            "intermediate_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,
            "num_hidden_layers": 1, "vocab_size": 8, "partial_rotary_factor": 1.0, key: true});
        let c = ModelConfig::from_hf_json(&v, std::path::Path::new("c.json")).unwrap();
        assert!(c.qk_norm && c.qk_norm_per_head && c.head_dim == 2);
        c
    }

    /// A map of `(name under self_attn, shape, values)`.
    fn map(tensors: &[(&str, &[usize], Vec<f32>)]) -> WeightMap {
        let mut w = WeightMap::new("m");
        for (n, shape, v) in tensors {
            let name = format!("model.layers.0.self_attn.{n}");
            let t = HostTensor::new(shape.to_vec(), v.clone());
            w.insert(name, t, "m".as_ref()).unwrap();
        }
        w
    }

    /// StableLM's per-head tensors become one vector, head after head; a missing head and a
    /// head past the count are named.
    #[test]
    fn stablelm_heads_are_stacked_in_order() {
        let c = config("stablelm", "qk_layernorm");
        let heads = [
            ("q_layernorm.norms.0.weight", &[2][..], vec![1.0, 2.0]),
            ("q_layernorm.norms.1.weight", &[2], vec![3.0, 4.0]),
            ("k_layernorm.norms.0.weight", &[2], vec![5.0, 6.0]),
        ];
        let mut w = map(&heads);
        gather(&mut w, &c).unwrap();
        let q = w
            .take("model.layers.0.self_attn.q_norm.weight", &[4])
            .unwrap();
        assert_eq!(q.data, [1.0, 2.0, 3.0, 4.0]);
        let k = w
            .take("model.layers.0.self_attn.k_norm.weight", &[2])
            .unwrap();
        assert_eq!(k.data, [5.0, 6.0]);
        assert_eq!(w.names().count(), 0);

        let mut extra = heads.to_vec();
        extra.push(("k_layernorm.norms.1.weight", &[2], vec![0.0; 2]));
        let e = gather(&mut map(&extra), &c).unwrap_err().to_string();
        assert!(
            e.contains("k_layernorm.norms.1.weight") && e.contains("past the 1 heads"),
            "{e}"
        );

        let e = gather(&mut map(&[heads[0].clone(), heads[2].clone()]), &c).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("q_layernorm.norms.1.weight") && e.contains("missing"),
            "{e}"
        );
    }

    /// Cohere's `[heads, head_dim]` norm is flattened; another shape is named with both shapes,
    /// a missing one with its own.
    #[test]
    fn cohere_norms_are_flattened() {
        let c = config("cohere", "use_qk_norm");
        let q = (
            "q_norm.weight",
            &[2, 2][..],
            (0..4).map(|v| v as f32).collect(),
        );
        let e = gather(
            &mut map(&[q.clone(), ("k_norm.weight", &[2], vec![1.0; 2])]),
            &c,
        );
        let e = e.unwrap_err().to_string();
        assert!(e.contains("k_norm.weight") && e.contains("[1, 2]"), "{e}");
        let e = gather(&mut map(std::slice::from_ref(&q)), &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing tensor `model.layers.0.self_attn.k_norm.weight`")
                && e.contains("[1, 2]"),
            "{e}"
        );
        let k = ("k_norm.weight", &[1, 2][..], vec![1.0; 2]);
        let mut w = map(&[q, k]);
        gather(&mut w, &c).unwrap();
        let q = w
            .take("model.layers.0.self_attn.q_norm.weight", &[4])
            .unwrap();
        assert_eq!(q.data, [0.0, 1.0, 2.0, 3.0]);
    }
}
