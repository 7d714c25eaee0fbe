//! Stacking loaded adapters per (layer, module) for the fused LoRA ops, and turning named
//! mixtures into slot mixtures.

use crate::backend::{LoraStackHost, NO_ADAPTER};
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

/// The largest weight a mixture may give an adapter. A weight scales the adapter's update
/// (the router's weights sum to 1); past 100 a mixture only drowns the base model, and 1e30
/// overflowed the forward pass (every logit NaN): a mistake, refused where it is made.
pub const MAX_MIX_WEIGHT: f32 = 100.0;

/// Resolves `(name, weight)` pairs to slots, checking that every name is loaded once and every
/// weight is from 0 to [`MAX_MIX_WEIGHT`].
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
        if !(0.0..=MAX_MIX_WEIGHT).contains(w) {
            return Err(Error::invalid(format!(
                "mixture weight of `{name}` is {w}; expected a finite number >= 0 and at most \
                 {MAX_MIX_WEIGHT}"
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

/// A random PEFT-shaped adapter held only in memory, for scaling studies without files:
/// rank `rank` on `targets` of every layer, `lora_alpha = 2 * rank`, A and B uniform with
/// scales that keep the delta small but non-zero (like a trained adapter's). Same seed, same
/// adapter.
pub fn synthetic_adapter(
    name: &str,
    cfg: &ModelConfig,
    rank: usize,
    targets: &[LoraModule],
    seed: u64,
) -> PeftAdapter {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pairs = std::collections::BTreeMap::new();
    // A module the model lacks (an ungated feed-forward's gate) is left out.
    let targets: Vec<LoraModule> = targets
        .iter()
        .copied()
        .filter(|&m| cfg.has_module(m))
        .collect();
    for layer in 0..cfg.num_layers {
        for &m in &targets {
            let (n_in, n_out) = cfg.module_dims(m);
            let (sa, sb) = (1.0 / (n_in as f32).sqrt(), 0.02);
            let a: Vec<f32> = (0..rank * n_in)
                .map(|_| rng.random_range(-sa..sa))
                .collect();
            let b: Vec<f32> = (0..n_out * rank)
                .map(|_| rng.random_range(-sb..sb))
                .collect();
            pairs.insert(
                (layer, m),
                crate::loader::peft::LoraPair {
                    a: crate::HostTensor::new(vec![rank, n_in], a),
                    b: crate::HostTensor::new(vec![n_out, rank], b),
                    scale: 2.0,
                },
            );
        }
    }
    PeftAdapter {
        name: name.to_string(),
        dir: std::path::PathBuf::from(format!("<synthetic seed {seed}>")),
        format: crate::loader::peft::AdapterFormat::Peft,
        base_model: None,
        r: rank,
        alpha: 2.0 * rank as f64,
        rslora: false,
        targets,
        pairs,
    }
}

/// Merges a mixture into f32 base weights once, `W += sum_k w_k * scale_k * B_k @ A_k` (the
/// static-fusion floor that sentence-level fusion is measured against). Packed weights cannot
/// be merged: load with f32 weights.
pub fn merge_into(
    weights: &mut crate::WeightMap,
    adapters: &[PeftAdapter],
    mixture: &Mixture,
) -> Result<()> {
    for &(slot, w) in mixture {
        let ad = adapters
            .get(slot)
            .ok_or_else(|| Error::invalid(format!("merge: no adapter in slot {slot}")))?;
        for (&(layer, m), p) in &ad.pairs {
            let name = format!("model.layers.{layer}.{}.weight", m.hf_path());
            let t = weights.get_mut(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "merge: adapter `{}` targets missing `{name}`",
                    ad.name
                ))
            })?;
            if t.packed.is_some() {
                return Err(Error::invalid(format!(
                    "merge: `{name}` is packed; load the model with f32 weights to merge"
                )));
            }
            let (r, n_in) = (p.rank(), p.a.shape[1]);
            let f = w * p.scale;
            for (o, row) in t.data.chunks_exact_mut(n_in).enumerate() {
                for j in 0..r {
                    let c = f * p.b.data[o * r + j];
                    let a = &p.a.data[j * n_in..(j + 1) * n_in];
                    row.iter_mut().zip(a).for_each(|(x, a)| *x += c * a);
                }
            }
        }
    }
    Ok(())
}

/// Every mixture names one of `n_adapters` slots with a finite weight >= 0, at most `mix_k`
/// entries.
pub(crate) fn check_mixtures<'a>(
    mixtures: impl IntoIterator<Item = &'a Mixture>,
    n_adapters: usize,
    mix_k: usize,
) -> Result<()> {
    for m in mixtures {
        if m.len() > mix_k {
            return Err(Error::invalid(format!(
                "a mixture of {} adapters exceeds the limit of {mix_k}",
                m.len()
            )));
        }
        for &(slot, w) in m {
            if slot as u32 == NO_ADAPTER || slot >= n_adapters {
                return Err(Error::invalid(format!(
                    "a mixture names adapter slot {slot}, {n_adapters} adapters are loaded"
                )));
            }
            if !(0.0..=MAX_MIX_WEIGHT).contains(&w) {
                return Err(Error::invalid(format!(
                    "a mixture weight is {w}; expected a finite number >= 0 and at most \
                     {MAX_MIX_WEIGHT}"
                )));
            }
        }
    }
    Ok(())
}
