//! Building a [`Model`] from host weights: the embedding and output head (tied or not), each
//! layer's linears and norms, and the RoPE tables.

use super::{Layer, Linear, Model, Norm};
use crate::backend::Backend;
use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::rope_table;
use crate::tensor::HostTensor;
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
        // Apertus 1.5's embedding has more rows than its pruned head.
        let embed_t = w.take_opt("model.embed_tokens.weight", &[c.embed_rows(), h])?;
        let head_t = w.take_opt("lm_head.weight", &[v, h])?;
        // A tied checkpoint may store the shared matrix under either name (transformers
        // loads both spellings); an untied one needs both.
        let (embed, lm_head) = match (embed_t, head_t, c.tie_word_embeddings) {
            (Some(e), Some(hd), false) => (e, Some(hd)),
            (Some(e), head, true) => {
                // transformers 4 ties such a file to the embedding (as here); transformers 5
                // keeps the stored lm_head: say so where the two differ.
                if head.is_some_and(|hd| hd.values() != e.values()) {
                    tracing::warn!(
                        "{}: config.json says tie_word_embeddings = true, but the file also holds an `lm_head.weight` that differs from the embedding; it is tied (transformers 4 does the same; transformers 5 would use the stored lm_head)",
                        w.origin.display()
                    );
                }
                (e, None)
            }
            (None, Some(hd), true) => (hd, None),
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
                        "missing tensor {}, and no {} either",
                        w.display_name("model.embed_tokens.weight"),
                        w.display_name("lm_head.weight")
                    ),
                ))
            }
        };
        // OLMo's norms have no weight: ones, so that the backends' norm is theirs.
        let ones = c.arch.unweighted_norms().then(|| vec![1f32; h]);
        let norm = match &ones {
            Some(ones) => backend.upload(ones)?,
            None => backend.upload(&w.take("model.norm.weight", &[h])?.values())?,
        };
        let logit_bias = logit_bias(c, &mut w, lm_head.as_ref().unwrap_or(&embed))?
            .map(|b| backend.upload(&b))
            .transpose()?;
        let embed = backend.upload_weight(&embed)?;
        let lm_head = lm_head.map(|t| backend.upload_weight(&t)).transpose()?;
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
            // An ungated feed-forward has no gate (Arch::gated_mlp).
            let linears = [
                Some(lin(Q, c.qkv_bias)?),
                Some(lin(K, c.qkv_bias)?),
                Some(lin(V, c.qkv_bias)?),
                Some(lin(O, c.o_bias)?),
                c.has_module(Gate)
                    .then(|| lin(Gate, c.mlp_bias))
                    .transpose()?,
                Some(lin(Up, c.mlp_bias)?),
                Some(lin(Down, c.mlp_bias)?),
            ];
            let qk_norm = if c.qk_norm {
                let mut norm = |m: &str, width: usize| -> Result<B::Buf> {
                    let name = format!("{p}.self_attn.{m}.weight");
                    backend.upload(&w.take(&name, &[width])?.values())
                };
                let ((q, k), (hq, hk)) = (c.qk_norm_widths(), c.qk_norm_weight_rows());
                Some((norm("q_norm", q * hq)?, norm("k_norm", k * hk)?))
            } else {
                None
            };
            // A LayerNorm's bias (Arch::norm_bias) beside its weight.
            let mut norm = |name: &str| -> Result<Norm<B>> {
                let weight = match &ones {
                    Some(ones) => backend.upload(ones)?,
                    None => {
                        backend.upload(&w.take(&format!("{p}.{name}.weight"), &[h])?.values())?
                    }
                };
                let bias = match c.arch.norm_bias() {
                    true => {
                        Some(backend.upload(&w.take(&format!("{p}.{name}.bias"), &[h])?.values())?)
                    }
                    false => None,
                };
                Ok(Norm { weight, bias })
            };
            // Gemma 2 and 3 and GLM-4 norm each sub-block's output too, OLMo 2 only its output.
            let names = c.norm_names();
            let post_norms = match c.post_norms() {
                // No family has both yet: a bias here would have to be added too.
                true if c.arch.norm_bias() => {
                    return Err(Error::unsupported(
                        "norms after each sub-block with LayerNorm biases",
                    ))
                }
                true => Some((norm(names.attn_out)?.weight, norm(names.ffn_out)?.weight)),
                false => None,
            };
            // A parallel block's feed-forward reads the attention's normed input; GPT-NeoX's and
            // Falcon-40B's read a norm of their own of the same input.
            let (attn_norm, ffn_norm) = match (c.pre_norms(), c.parallel_block()) {
                (true, false) => (Some(norm(names.attn_in)?), Some(norm(names.ffn_in)?)),
                (true, true) => {
                    let ffn = (c.parallel_norms).then(|| norm(names.ffn_in)).transpose()?;
                    (Some(norm(names.attn_in)?), ffn)
                }
                (false, _) => (None, None),
            };
            let xielu = match c.activation {
                Activation::Xielu => Some(crate::loader::apertus::xielu_constants(&mut w, i)?),
                _ => None,
            };
            layers.push(Layer {
                xielu,
                qk_norm,
                post_norms,
                attn_norm,
                ffn_norm,
                linears,
                lora: Default::default(),
                lora_max_rank: [0; 7],
            });
        }
        let leftover: Vec<&str> = w.names().collect();
        if w.file_names.is_some_and(|n| n.gguf_order) {
            refuse_gguf_leftovers(&w, &leftover)?;
        }
        if !leftover.is_empty() {
            tracing::warn!(
                "{}: {} tensors not used by the model, e.g. {}",
                w.origin.display(),
                leftover.len(),
                w.display_name(leftover[0])
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
        let keys = rope_table::cos_sin_table(c, max_context);
        // Ministral 3's queries past the temperature's step rotate by a table of their own.
        let rope_query =
            (rope_table::query_table(c, &keys).map(|t| backend.upload(&t))).transpose()?;
        let rope = backend.upload(&keys)?;
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
            logit_bias,
            rope,
            rope_local,
            rope_none,
            rope_query,
            max_context,
            adapter_names: Vec::new(),
            lora_id: crate::backend::unique_id(),
        })
    }
}

/// A GGUF's tensors the model leaves unread, refused (llama.cpp's loader refuses a file holding
/// a tensor it does not make: "wrong number of tensors"), the message saying why each kind
/// matters: a linear's bias llama.cpp's graph would add (one of a q/k/v set alone, one side of
/// the feed-forward's: other logits than its), a norm's bias the norms lack, any other. An
/// `apertus` file's optional query and key norm biases, which llama.cpp loads and never adds,
/// are dropped before ([`crate::loader::apertus::prepare_gguf`]); a layer past `block_count`
/// and an ungated family's gate are refused as the metadata is read (`stray_tensors`).
///
/// # Errors
/// The first such tensor by name, named as the file names it.
fn refuse_gguf_leftovers(w: &WeightMap, leftover: &[&str]) -> Result<()> {
    let Some(n) = leftover.iter().min() else {
        return Ok(());
    };
    let why = match (n.ends_with(".bias"), n.contains("norm.")) {
        // llama.cpp's loaders make `output.bias` for `qwen2` (optional) and `phi2` only.
        _ if *n == "lm_head.bias" => "an output head bias, which llama.cpp's loader makes for `qwen2` and `phi2` files only; it refuses this file (wrong number of tensors)",
        (true, false) => "a bias this model's configuration does not read (its module's siblings have none); llama.cpp would add it",
        (true, true) => "a norm's bias this model's norms do not have; llama.cpp refuses such a file (wrong number of tensors)",
        (false, _) => "this model's configuration does not read it; llama.cpp refuses such a file (wrong number of tensors)",
    };
    let (what, _) = w.described(n, &[]);
    Err(Error::format(&w.origin, format!("tensor {what}: {why}")))
}

/// What the final norm's bias and the output head's (`lm_head.bias`: Phi's, GPT-J's, a `qwen2`
/// GGUF's; [`ModelConfig::head_bias`]) add to each row of
/// logits, `lm_head_bias + head . final_norm_bias` (`[vocab]`, summed in f64), where the model
/// has either: the head reads `norm(x) * w + b`, and `head . b` is the same for every row, so
/// the backends' fused norm-and-head (`logits`) runs as for an RMSNorm and the row is added
/// after it ([`crate::Backend::add_bias`]). `head`: the output head as stored (`[vocab,
/// hidden]`).
fn logit_bias(c: &ModelConfig, w: &mut WeightMap, head: &HostTensor) -> Result<Option<Vec<f32>>> {
    let (h, v) = (c.hidden_size, c.vocab_size);
    let norm_bias = match c.arch.norm_bias() {
        true => Some(w.take("model.norm.bias", &[h])?),
        false => None,
    };
    let head_bias = match c.head_bias {
        true => Some(w.take("lm_head.bias", &[v])?),
        false => None,
    };
    if norm_bias.is_none() && head_bias.is_none() {
        return Ok(None);
    }
    let rows = head.values();
    let b = norm_bias.as_ref().map(|b| b.values());
    let own = head_bias.as_ref().map(|b| b.values());
    // vocab x hidden products (205 M for StableLM 2 1.6B): over the rows in parallel.
    use rayon::prelude::*;
    let out = (0..v)
        .into_par_iter()
        .map(|r| {
            let from_norm = b.as_ref().map_or(0.0, |b| {
                (rows[r * h..(r + 1) * h].iter().zip(b.iter()))
                    .map(|(&x, &y)| x as f64 * y as f64)
                    .sum::<f64>()
            });
            let own = own.as_ref().map_or(0.0, |o| o[r] as f64);
            (own + from_norm) as f32
        })
        .collect();
    Ok(Some(out))
}
