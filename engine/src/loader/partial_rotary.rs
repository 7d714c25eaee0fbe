//! RoPE on part of each head (Phi-4-mini's `partial_rotary_factor` 0.75; a GGUF's
//! `rope.dimension_count` below the head width) without a kernel of its own. transformers
//! rotates the first `r` dimensions of a head as pairs `(i, i + r/2)` and passes the rest
//! through; the backends rotate whole heads as pairs `(j, j + d/2)`. Attention reads queries
//! and keys only through their dot products, which any one reordering of a head's dimensions
//! applied to both keeps, so loading reorders the rows of q_proj and k_proj (their biases, and
//! each LoRA's B) to put rotated pair `i` at `(i, i + d/2)` and the passed-through dimensions
//! in the pairs `r/2..d/2`, whose table entries are the identity
//! ([`crate::rope_table::cos_sin_table`]). Values (and so the output) are untouched.
//!
//! GLM, ERNIE 4.5 and GPT-J (its `rotary_dim` dimensions) rotate adjacent pairs `(2i, 2i + 1)`
//! of the rotated part instead ([`ModelConfig::rope_interleaved`]); the same reordering puts
//! them at `(i, i + d/2)`.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::tensor::{HostTensor, WeightMap};
use crate::LoraModule;

/// `order[j]`: the dimension of transformers' head layout that loading puts at `j`; rotated
/// pair `i` is `(i, i + rotary_dim / 2)` there, or `(2i, 2i + 1)` where `interleaved`.
pub fn head_order(head_dim: usize, rotary_dim: usize, interleaved: bool) -> Vec<usize> {
    let (h, r) = (head_dim / 2, rotary_dim / 2);
    let pass = (head_dim - rotary_dim) / 2;
    let mut order = vec![0; head_dim];
    for i in 0..r {
        (order[i], order[h + i]) = match interleaved {
            true => (2 * i, 2 * i + 1),
            false => (i, r + i),
        };
    }
    for k in 0..h - r {
        (order[r + k], order[h + r + k]) = (rotary_dim + k, rotary_dim + pass + k);
    }
    order
}

/// The rows of a `[heads * head_dim, cols]` tensor (or a `[heads * head_dim]` bias), each head
/// reordered by `order` ([`head_order`]); packed rows move whole.
pub fn reorder_rows(t: &mut HostTensor, order: &[usize]) {
    let d = order.len();
    *t = t.gather_rows((0..t.shape[0]).map(|j| j / d * d + order[j % d]));
}

/// The order loading gives each head's query and key rows for `cfg` ([`head_order`]), or
/// `None` where it keeps transformers' (RoPE over whole heads in halves).
pub fn config_order(cfg: &ModelConfig) -> Option<Vec<usize>> {
    (cfg.rotary_dim != cfg.head_dim || cfg.rope_interleaved)
        .then(|| head_order(cfg.head_dim, cfg.rotary_dim, cfg.rope_interleaved))
}

/// Reorders every layer's q_proj and k_proj rows (weights and biases), and the query/key norms'
/// weights (`self_attn.{q,k}_norm.weight`: a head's, every head's, or all heads' at once,
/// which the norm reads in the reordered dimensions), for `cfg`'s partial rotary width or
/// interleaved pairs ([`config_order`]); nothing where it keeps them. A tensor the map lacks is
/// left for the model to name; one whose rows are not whole heads is left for its shape check.
pub fn reorder_heads(w: &mut WeightMap, cfg: &ModelConfig) -> Result<()> {
    let Some(order) = config_order(cfg) else {
        return Ok(());
    };
    for layer in 0..cfg.num_layers {
        let norms = ["q_norm", "k_norm"].map(|n| format!("self_attn.{n}.weight"));
        let projections = [LoraModule::Q, LoraModule::K]
            .into_iter()
            .flat_map(|m| ["weight", "bias"].map(|s| format!("{}.{s}", m.hf_path())));
        for tail in projections.chain(norms) {
            let name = format!("model.layers.{layer}.{tail}");
            // Whole heads only (a 0-d or empty tensor of a corrupt file included): the model's
            // shape check names the rest.
            let heads = |t: &&mut HostTensor| {
                (t.shape.first()).is_some_and(|&r| r > 0 && r % cfg.head_dim == 0)
            };
            if let Some(t) = w.get_mut(&name).filter(heads) {
                reorder_rows(t, &order);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotated pair `(i, i + r/2)` lands on `(i, i + d/2)`; the passed-through dimensions fill
    /// the rest in order; every dimension once.
    #[test]
    fn head_order_pairs_rotated_dimensions_across_the_halves() {
        // d = 8, r = 4: rotated pairs (0, 2), (1, 3); passed 4..8.
        assert_eq!(head_order(8, 4, false), [0, 1, 4, 5, 2, 3, 6, 7]);
        assert_eq!(head_order(6, 6, false), [0, 1, 2, 3, 4, 5]);
        // Interleaved, d = 8, r = 4: rotated pairs (0, 1), (2, 3); passed 4..8.
        assert_eq!(head_order(8, 4, true), [0, 2, 4, 5, 1, 3, 6, 7]);
        assert_eq!(head_order(4, 4, true), [0, 2, 1, 3]);
        for interleaved in [false, true] {
            for (d, r) in [(16, 12), (128, 96), (64, 2), (10, 8), (128, 64), (8, 8)] {
                let o = head_order(d, r, interleaved);
                let mut seen = o.clone();
                seen.sort();
                assert_eq!(seen, (0..d).collect::<Vec<_>>(), "{d} {r}");
                for i in 0..r / 2 {
                    let want = match interleaved {
                        true => (2 * i, 2 * i + 1),
                        false => (i, i + r / 2),
                    };
                    assert_eq!((o[i], o[d / 2 + i]), want, "{d} {r} {interleaved}");
                }
            }
        }
    }

    /// One layer of two heads of 4, RoPE on half of each (Phi-3's `partial_rotary_factor` 0.5).
    fn half_rotated() -> ModelConfig {
        let v = serde_json::json!({"model_type": "phi3", "hidden_size": 8,
            "intermediate_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
            "vocab_size": 8, "partial_rotary_factor": 0.5});
        ModelConfig::from_hf_json(&v, std::path::Path::new("c.json")).unwrap()
    }

    /// A corrupt file's 0-d or empty q/k tensors are left for the model's shape check, not a
    /// panic; whole heads are reordered.
    #[test]
    fn only_whole_heads_are_reordered() {
        let cfg = half_rotated();
        assert_eq!((cfg.head_dim, cfg.rotary_dim), (4, 2));
        let file = std::path::Path::new("m");
        let mut w = WeightMap::new("m");
        let put = |w: &mut WeightMap, n: &str, t| w.insert(format!("model.layers.0.{n}"), t, file);
        put(
            &mut w,
            "self_attn.q_proj.bias",
            HostTensor::new(vec![], vec![1.0]),
        )
        .unwrap();
        put(
            &mut w,
            "self_attn.k_proj.bias",
            HostTensor::new(vec![0], vec![]),
        )
        .unwrap();
        let k = HostTensor::new(vec![8, 1], (0..8).map(|v| v as f32).collect());
        put(&mut w, "self_attn.k_proj.weight", k).unwrap();
        reorder_heads(&mut w, &cfg).unwrap();
        let k = w.get_mut("model.layers.0.self_attn.k_proj.weight").unwrap();
        assert_eq!(k.data, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    /// The query/key norms' weights move with the heads' rows: a weight for every head
    /// (`[head_dim]`, Qwen3's), a row per head (`[heads * head_dim]`, StableLM 2 12B's), or the
    /// whole projection's (`[q_dim]`, OLMo's), each reordered within each head.
    #[test]
    fn qk_norm_weights_are_reordered_with_the_heads() {
        let cfg = half_rotated();
        assert_eq!(head_order(4, 2, false), [0, 2, 1, 3]);
        let file = std::path::Path::new("m");
        let mut w = WeightMap::new("m");
        let q: Vec<f32> = (0..4).map(|v| v as f32).collect();
        let k: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let (qn, kn) = (
            "model.layers.0.self_attn.q_norm.weight",
            "model.layers.0.self_attn.k_norm.weight",
        );
        w.insert(qn.into(), HostTensor::new(vec![4], q), file)
            .unwrap();
        w.insert(kn.into(), HostTensor::new(vec![8], k), file)
            .unwrap();
        reorder_heads(&mut w, &cfg).unwrap();
        assert_eq!(w.get_mut(qn).unwrap().data, [0.0, 2.0, 1.0, 3.0]);
        let k = &w.get_mut(kn).unwrap().data;
        assert_eq!(k, &[0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    /// Whole heads move as `order` says, f32 rows and packed rows alike; a bias as rows of one.
    #[test]
    fn rows_reorder_per_head() {
        let order = head_order(4, 2, false); // [0, 2, 1, 3]
        let mut t = HostTensor::new(vec![8, 2], (0..16).map(|v| v as f32).collect());
        reorder_rows(&mut t, &order);
        let rows: Vec<f32> = t.data.chunks(2).map(|r| r[0] / 2.0).collect();
        assert_eq!(rows, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        let mut bias = HostTensor::new(vec![4], vec![10.0, 11.0, 12.0, 13.0]);
        reorder_rows(&mut bias, &order);
        assert_eq!(bias.data, [10.0, 12.0, 11.0, 13.0]);
        let kind = crate::tensor::PackedKind::F16;
        let bytes: Vec<u8> = (0..4 * 32 * 2).map(|i| (i / 64) as u8).collect();
        let mut p = HostTensor::packed(4, 32, crate::tensor::Packed { kind, bytes });
        reorder_rows(&mut p, &order);
        let firsts: Vec<u8> = p.packed.unwrap().bytes.chunks(64).map(|r| r[0]).collect();
        assert_eq!(firsts, [0, 2, 1, 3]);
    }
}
