//! Stacking loaded adapters per (layer, module) for the fused LoRA ops, and turning named
//! mixtures into slot mixtures.

use crate::backend::LoraStackHost;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::loader::peft::PeftAdapter;
use crate::LoraModule;

/// A mixture by slot: `(adapter slot, weight)` pairs. Empty = the base model.
pub type Mixture = Vec<(usize, f32)>;

/// Builds the stack of `module` in `layer` from all adapters (slot = index in `adapters`), or
/// `None` when no adapter targets it.
pub fn stack(
    adapters: &[PeftAdapter],
    cfg: &ModelConfig,
    layer: usize,
    module: LoraModule,
) -> Option<LoraStackHost> {
    let (in_dim, out_dim) = cfg.module_dims(module);
    let mut s = LoraStackHost {
        in_dim,
        out_dim,
        ..Default::default()
    };
    for ad in adapters {
        s.slot_offset.push(s.slot_rank.iter().sum::<u32>());
        match ad.pairs.get(&(layer, module)) {
            Some(p) => {
                let r = p.rank();
                s.a.extend_from_slice(&p.a.data);
                // B is [out, r]; store its transpose so each rank row is contiguous.
                for j in 0..r {
                    s.bt.extend((0..out_dim).map(|o| p.b.data[o * r + j]));
                }
                s.slot_rank.push(r as u32);
                s.slot_scale.push(p.scale);
                s.max_rank = s.max_rank.max(r);
            }
            None => {
                s.slot_rank.push(0);
                s.slot_scale.push(0.0);
            }
        }
    }
    (s.max_rank > 0).then_some(s)
}

/// Resolves `(name, weight)` pairs to slots, checking that every name is loaded and every
/// weight is finite and non-negative.
pub fn resolve_mixture(names: &[String], mix: &[(String, f32)]) -> Result<Mixture> {
    let mut out = Vec::with_capacity(mix.len());
    for (name, w) in mix {
        let slot = names.iter().position(|n| n == name).ok_or_else(|| {
            Error::invalid(format!(
                "mixture names adapter `{name}`, which is not loaded (loaded: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })?;
        if !w.is_finite() || *w < 0.0 {
            return Err(Error::invalid(format!(
                "mixture weight of `{name}` is {w}; expected a finite number >= 0"
            )));
        }
        if out.iter().any(|&(s, _)| s == slot) {
            return Err(Error::invalid(format!(
                "mixture names adapter `{name}` twice"
            )));
        }
        out.push((slot, *w));
    }
    Ok(out)
}
