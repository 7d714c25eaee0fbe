//! Gemma's weights as the Llama computation reads them ([`crate::config::GemmaFeatures`]):
//! GemmaRMSNorm multiplies by `1 + w`, as Nemotron's LayerNorm1P does, so an HF checkpoint's
//! norm weights get the 1 added ([`ModelConfig::norm_weights_less_one`]; llama.cpp's converters
//! add it when they write a GGUF). The attention scale (`query_pre_attn_scalar`) is the
//! backends' ([`crate::backend::AttnShape::scale`]).

use crate::config::ModelConfig;
use crate::tensor::{HostTensor, WeightMap};

/// Prepares the weights of an HF checkpoint: for Gemma, the norms + 1; for Nemotron
/// (`NemotronLayerNorm1P` normalizes by `weight + 1`), the norms + 1 (a GGUF's need nothing).
/// A tensor the map lacks is left for the model to name.
pub fn prepare_hf(w: &mut WeightMap, cfg: &ModelConfig) {
    if !cfg.norm_weights_less_one() {
        return;
    }
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

/// `t`'s values through `f`, as f32 (a packed tensor is unpacked: norms are vectors).
fn map_values(t: &mut HostTensor, f: impl Fn(f32) -> f32) {
    if t.packed.is_some() {
        *t = HostTensor::new(t.shape.clone(), t.values().into_owned());
    }
    t.data.iter_mut().for_each(|x| *x = f(*x));
}
