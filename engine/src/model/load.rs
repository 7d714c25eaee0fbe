//! Building a [`Model`] from host weights: the embedding and output head (tied or not), each
//! layer's linears and norms, and the RoPE tables.

use super::{Layer, Linear, Model};
use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::rope_table;
use crate::tensor::WeightMap;
use crate::LoraModule;

impl<B: Backend> Model<B> {
    /// Builds the model from host weights (consumed) on `backend`; `max_context` caps the RoPE
    /// table (and so the KV cache) below the model's [`ModelConfig::context_limit`].
    pub fn new(
        backend: B,
        config: ModelConfig,
        mut w: WeightMap,
        max_context: usize,
    ) -> Result<Self> {
        let c = &config;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let embed_t = w.take_opt("model.embed_tokens.weight", &[v, h])?;
        let head_t = w.take_opt("lm_head.weight", &[v, h])?;
        // A tied checkpoint may store the shared matrix under either name (transformers
        // loads both spellings); an untied one needs both.
        let (embed, lm_head) = match (embed_t, head_t, c.tie_word_embeddings) {
            (Some(e), Some(hd), false) => (backend.upload_weight(&e)?, Some(backend.upload_weight(&hd)?)),
            (Some(e), head, true) => {
                // transformers 4 ties such a file to the embedding (as here); transformers 5
                // keeps the stored lm_head: say so where the two differ.
                if head.is_some_and(|hd| hd.values() != e.values()) {
                    tracing::warn!(
                        "{}: config.json says tie_word_embeddings = true, but the file also holds an `lm_head.weight` that differs from the embedding; it is tied (transformers 4 does the same; transformers 5 would use the stored lm_head)",
                        w.origin.display()
                    );
                }
                (backend.upload_weight(&e)?, None)
            }
            (None, Some(hd), true) => (backend.upload_weight(&hd)?, None),
            (None, Some(_), false) => {
                return Err(Error::format(
                    &w.origin,
                    format!(
                        "missing tensor {} (the input embedding); {} is there, but the model is not tied (config.json's tie_word_embeddings is false), so it cannot stand in for it",
                        w.display_name("model.embed_tokens.weight"),
                        w.display_name("lm_head.weight")
                    ),
                ))
            }
            (Some(_), None, false) => {
                return Err(Error::format(
                    &w.origin,
                    format!(
                        "missing tensor {} (tie_word_embeddings is false)",
                        w.display_name("lm_head.weight")
                    ),
                ))
            }
            (None, None, _) => {
                return Err(Error::format(
                    &w.origin,
                    format!(
                        "missing tensor {} (and no {} either)",
                        w.display_name("model.embed_tokens.weight"),
                        w.display_name("lm_head.weight")
                    ),
                ))
            }
        };
        let norm = backend.upload(&w.take("model.norm.weight", &[h])?.values())?;
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("model.layers.{i}");
            let mut lin = |m: LoraModule, bias: bool| -> Result<Linear<B>> {
                let (n_in, n_out) = c.module_dims(m);
                let wt = w.take(&format!("{p}.{}.weight", m.hf_path()), &[n_out, n_in])?;
                let b = if bias {
                    Some(
                        backend.upload(
                            &w.take(&format!("{p}.{}.bias", m.hf_path()), &[n_out])?
                                .values(),
                        )?,
                    )
                } else {
                    None
                };
                Ok(Linear {
                    w: backend.upload_weight(&wt)?,
                    b,
                    n_in,
                    n_out,
                })
            };
            use LoraModule::*;
            let linears = [
                lin(Q, c.qkv_bias)?,
                lin(K, c.qkv_bias)?,
                lin(V, c.qkv_bias)?,
                lin(O, c.o_bias)?,
                lin(Gate, c.mlp_bias)?,
                lin(Up, c.mlp_bias)?,
                lin(Down, c.mlp_bias)?,
            ];
            let qk_norm = if c.qk_norm {
                let mut norm = |m: &str, width: usize| -> Result<B::Buf> {
                    let name = format!("{p}.self_attn.{m}.weight");
                    backend.upload(&w.take(&name, &[width])?.values())
                };
                let (q, k) = c.qk_norm_widths();
                Some((norm("q_norm", q)?, norm("k_norm", k)?))
            } else {
                None
            };
            let mut norm = |name: &str| -> Result<B::Buf> {
                backend.upload(&w.take(&format!("{p}.{name}.weight"), &[h])?.values())
            };
            // Gemma 2 and 3 and GLM-4 norm each sub-block's output too, OLMo 2 only its output.
            let names = c.norm_names();
            let post_norms = match c.post_norms() {
                true => Some((norm(names.attn_out)?, norm(names.ffn_out)?)),
                false => None,
            };
            // Cohere's feed-forward reads the attention's normed input.
            let (attn_norm, ffn_norm) = match (c.pre_norms(), c.parallel_block()) {
                (true, false) => (Some(norm(names.attn_in)?), Some(norm(names.ffn_in)?)),
                (true, true) => (Some(norm(names.attn_in)?), None),
                (false, _) => (None, None),
            };
            layers.push(Layer {
                qk_norm,
                post_norms,
                attn_norm,
                ffn_norm,
                linears,
                lora: Default::default(),
                lora_max_rank: [0; 7],
            });
        }
        let leftover: Vec<&str> = w
            .names()
            .filter(|n| !n.ends_with("rotary_emb.inv_freq"))
            .collect();
        if !leftover.is_empty() {
            tracing::warn!(
                "{}: {} tensors not used by the model, e.g. {}",
                w.origin.display(),
                leftover.len(),
                leftover[0]
            );
        }
        if let Some(crate::config::RopeScaling::Dynamic { factor }) = &c.rope_scaling {
            if max_context > c.context_limit() {
                tracing::info!(
                    "dynamic NTK scaling (factor {factor}): the context ends at max_position_embeddings {}, within which transformers rotates as default RoPE",
                    c.context_limit()
                );
            }
        }
        let max_context = max_context.min(c.context_limit()).max(1);
        if let Some(crate::config::RopeScaling::LongRope(l)) = &c.rope_scaling {
            let original = l.original_max_position_embeddings;
            let long = max_context as f64 > original;
            // The other set, where the model's own limit leaves it reachable.
            let hint = match (long, c.context_limit() as f64 > original) {
                (true, _) => {
                    format!("; a --max-context of {original} or less picks the short ones")
                }
                (false, true) => format!("; a --max-context above {original} picks the long ones"),
                (false, false) => String::new(),
            };
            tracing::info!(
                "LongRoPE: the {} factors, for a context of {max_context} tokens (the original is {original}{hint})",
                if long { "long" } else { "short" }
            );
        }
        let rope = backend.upload(&rope_table::cos_sin_table(c, max_context))?;
        // Gemma 3's and OLMo 3's sliding-window layers: their own base, no scaling (no table
        // of their own where that is the others' rotation).
        let same =
            |t: f64| t == c.rope_theta && c.rope_scaling.is_none() && c.rope_freq_factors.is_none();
        let rope_local = match c.local_rope_theta.filter(|&t| !same(t)) {
            Some(theta) => {
                let local = ModelConfig {
                    rope_theta: theta,
                    rope_scaling: None,
                    rope_freq_factors: None,
                    ..c.clone()
                };
                Some(backend.upload(&rope_table::cos_sin_table(&local, max_context))?)
            }
            None => None,
        };
        let rope_none = match c.rope_layers.contains(&false) {
            true => Some(backend.upload(&rope_table::identity_table(max_context, c.head_dim))?),
            false => None,
        };
        Ok(Model {
            backend,
            config,
            embed,
            lm_head,
            norm,
            layers,
            rope,
            rope_local,
            rope_none,
            max_context,
            adapter_names: Vec::new(),
            lora_id: crate::backend::unique_id(),
        })
    }
}
