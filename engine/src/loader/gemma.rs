//! Gemma's weights as the Llama computation reads them ([`crate::config::GemmaFeatures`]):
//! GemmaRMSNorm multiplies by `1 + w`, so an HF checkpoint's norm weights get the 1 added
//! (llama.cpp's converter adds it when it writes a GGUF); Gemma 3's attention scale, where
//! `query_pre_attn_scalar` is not `head_dim`, is folded into each head's query norm.

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, WeightMap};

/// Prepares the weights of a Gemma model (nothing for the other families); `hf`: they come
/// from an HF checkpoint (else from a GGUF). A tensor the map lacks is left for the model to
/// name.
///
/// # Errors
/// An attention scale other than `head_dim^-0.5` on a model without query norms.
pub fn prepare(w: &mut WeightMap, cfg: &ModelConfig, hf: bool) -> Result<()> {
    let Some(g) = &cfg.gemma else {
        return Ok(());
    };
    if hf {
        let norms: Vec<String> = (w.names())
            .filter(|n| n.ends_with("norm.weight"))
            .map(String::from)
            .collect();
        for name in norms {
            if let Some(t) = w.get_mut(&name) {
                map_values(t, |x| x + 1.0);
            }
        }
    }
    // Scores q·k / sqrt(head_dim) with q times sqrt(head_dim / s) are q·k / sqrt(s).
    let ratio = (cfg.head_dim as f64 / g.query_pre_attn_scalar).sqrt();
    if ratio != 1.0 {
        if !cfg.qk_norm {
            return Err(Error::unsupported(format!(
                "{}: an attention scale of query_pre_attn_scalar {}^-0.5 (not head_dim {}^-0.5) on a model without query norms",
                w.origin.display(),
                g.query_pre_attn_scalar,
                cfg.head_dim
            )));
        }
        for layer in 0..cfg.num_layers {
            if let Some(t) = w.get_mut(&format!("model.layers.{layer}.self_attn.q_norm.weight")) {
                map_values(t, |x| (x as f64 * ratio) as f32);
            }
        }
    }
    Ok(())
}

/// `t`'s values through `f`, as f32 (a packed tensor is unpacked: norms are vectors).
fn map_values(t: &mut HostTensor, f: impl Fn(f32) -> f32) {
    if t.packed.is_some() {
        *t = HostTensor::new(t.shape.clone(), t.values().into_owned());
    }
    t.data.iter_mut().for_each(|x| *x = f(*x));
}
