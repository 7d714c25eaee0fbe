//! The settings of PEFT's `LoraConfig` that make an adapter other than plain LoRA
//! (`delta W = scale * B @ A` on every token), refused with a message rather than computed as
//! plain LoRA: DoRA, trained biases, `modules_to_save`, activated LoRA, replicated layers,
//! initialisations that changed the base weights, and the other variants. Field names and
//! meanings from PEFT's `LoraConfig` (peft/tuners/lora/config.py).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// `init_lora_weights` values that only chose the starting A and B: the trained adapter is
/// plain LoRA on the unchanged base model (MiCA's forward is vanilla LoRA's, PEFT says).
const PLAIN_INITS: [&str; 4] = ["gaussian", "eva", "orthogonal", "mica"];

/// `init_lora_weights` values that also moved part of the base weight into the adapter at
/// initialisation (PiSSA, OLoRA, CorDA, LoRA-GA): saved without PEFT's conversion, the
/// adapter belongs with that changed base model, which is not the one loaded here. (LoftQ,
/// which also quantised the base, is said apart: PEFT cannot convert it.)
const BASE_CHANGING_INITS: [&str; 4] = ["pissa", "olora", "corda", "lora_ga"];

/// Fields whose non-empty value makes another computation than plain LoRA, and what it is.
const VARIANTS: [(&str, &str); 8] = [
    ("use_bdlora", "block-diagonal LoRA (BD-LoRA)"),
    (
        "alora_invocation_tokens",
        "activated LoRA (the adapter applies only after its invocation tokens)",
    ),
    (
        "layer_replication",
        "replicated layers (PEFT rebuilds the layer stack)",
    ),
    (
        "target_parameters",
        "LoRA on parameters (not on linear modules)",
    ),
    (
        "trainable_token_indices",
        "trained embedding rows of chosen tokens",
    ),
    ("arrow_config", "Arrow routing among LoRA experts"),
    ("kasa_config", "KaSA (singular values between B and A)"),
    (
        "monteclora_config",
        "MonteCLoRA (Monte Carlo sampling over the adapter)",
    ),
];

/// Checks `v`, the parsed `adapter_config.json` at `path`, for settings that are not plain
/// LoRA. Errors: `Unsupported` naming the setting (an `init_lora_weights` this loader does
/// not know too); `Format` for a switch that is not a JSON boolean or an
/// `init_lora_weights` that is no bool or string.
pub(super) fn check(v: &Value, path: &Path) -> Result<()> {
    let bad = |m: String| Error::format(path, m);
    let unsupported = |m: String| Error::unsupported(format!("{}: {m}", path.display()));
    // PEFT's switches are JSON booleans; Python would read `1` or `"yes"` as true, so
    // another kind is refused rather than read as false (`"use_rslora": 1` had loaded as
    // plain LoRA scaling).
    for k in [
        "use_dora",
        "lora_bias",
        "use_qalora",
        "fan_in_fan_out",
        "use_rslora",
    ] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null() && !x.is_boolean()) {
            return Err(bad(format!(
                "field `{k}`: expected true or false, found {x}"
            )));
        }
    }
    let truthy = |k: &str| truthy(v, k);
    if truthy("use_dora") {
        return Err(unsupported("use_dora = true (DoRA adapters are not supported; merge the magnitude vector or retrain as plain LoRA)".into()));
    }
    if truthy("lora_bias") {
        return Err(unsupported(
            "lora_bias = true (LoRA B biases are not supported)".into(),
        ));
    }
    match v.get("bias").and_then(|b| b.as_str()) {
        None | Some("none") => {}
        Some(b) => {
            return Err(unsupported(format!(
            "bias = `{b}` (the adapter trains base-model biases; only bias = \"none\" is supported)"
        )))
        }
    }
    match v.get("modules_to_save") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(m) => {
            return Err(unsupported(format!(
            "modules_to_save = {m} (fully fine-tuned modules are not supported; only LoRA deltas)"
        )))
        }
    }
    if truthy("use_qalora") {
        return Err(unsupported("use_qalora = true is not supported".into()));
    }
    for (k, what) in VARIANTS {
        let empty = match v.get(k) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if !empty {
            return Err(unsupported(format!(
                "{k} = {} is {what}, not plain LoRA; not supported",
                v[k]
            )));
        }
    }
    init_weights(v.get("init_lora_weights"), path)
}

/// Whether switch `k` of config `v` is JSON `true` (its kind is checked by [`check`]).
pub(super) fn truthy(v: &Value, k: &str) -> bool {
    v.get(k).is_some_and(|x| x.as_bool() == Some(true))
}

/// `init_lora_weights`: true, false, or a name (compared without case): those of
/// [`PLAIN_INITS`] pass; those of [`BASE_CHANGING_INITS`] (and `pissa_niter_<n>`), `loftq`
/// and names this loader does not know are refused.
fn init_weights(x: Option<&Value>, path: &Path) -> Result<()> {
    let name = match x {
        None | Some(Value::Null) | Some(Value::Bool(_)) => return Ok(()),
        Some(Value::String(s)) => s.as_str(),
        Some(o) => {
            return Err(Error::format(
                path,
                format!(
                    "field `init_lora_weights`: expected true, false or a method name, found {o}"
                ),
            ))
        }
    };
    let lower = name.to_ascii_lowercase();
    if PLAIN_INITS.contains(&lower.as_str()) {
        return Ok(());
    }
    if lower == "loftq" {
        return Err(Error::unsupported(format!(
            "{}: init_lora_weights = \"{name}\": a LoftQ adapter belongs with the base model \
             LoftQ quantised when it was made (the adapter holds the quantisation's residual), \
             not with the one loaded here",
            path.display()
        )));
    }
    // PEFT matches PiSSA (`pissa_niter_<n>`) and CorDA by their start.
    let family = ["pissa", "corda"]
        .into_iter()
        .find(|f| lower.starts_with(f))
        .unwrap_or(lower.as_str());
    if BASE_CHANGING_INITS.contains(&family) {
        return Err(Error::unsupported(format!(
            "{}: init_lora_weights = \"{name}\": this initialisation moved part of the base \
             weights into the adapter, so as saved it belongs with that changed base model; \
             save it converted to plain LoRA (PEFT's save_pretrained with \
             path_initial_model_for_weight_conversion), whose config says true",
            path.display()
        )));
    }
    // PEFT itself refuses a name it does not know; one from a newer PEFT may change the base
    // weights or the forward pass (as five of its nine named methods do), so it is not read
    // as plain LoRA.
    Err(Error::unsupported(format!(
        "{}: init_lora_weights = \"{name}\" is not a method this loader knows (plain LoRA: true, \
         false, {}; refused: {}, loftq)",
        path.display(),
        PLAIN_INITS.join(", "),
        BASE_CHANGING_INITS.join(", ")
    )))
}

/// Why tensor `tname` of an adapter file is none of the LoRA A/B weights this engine applies
/// (`supported`: the model's module names), for the error that names it.
pub(super) fn not_a_lora_weight(tname: &str, supported: &str) -> String {
    let plain = tname.ends_with(".lora_A.weight") || tname.ends_with(".lora_B.weight");
    let why = if tname.contains("lora_magnitude") {
        "a DoRA magnitude vector (DoRA is not supported)"
    } else if plain {
        // A well-formed LoRA pair on a module this engine does not adapt.
        return format!(
            "a LoRA on a module this engine does not adapt (lm_head, embeddings or a name this \
             model does not have); supported for this model: {supported} of `model.layers.N`"
        );
    } else if tname.ends_with(".lora_B.bias") {
        "a LoRA B bias, as `lora_bias = true` adapters hold (not supported)"
    } else if tname.contains(".lora_A.") || tname.contains(".lora_B.") {
        "its name has an adapter-name segment (`lora_A.<name>.weight`): that is the layout of a \
         model's live state dict, not of PEFT's saved files, and PEFT itself would load such a \
         file as a freshly initialised (random) adapter; save it with \
         `model.save_pretrained(...)` or rename the keys to `...lora_A.weight` / \
         `...lora_B.weight`"
    } else if tname.contains("lora_embedding") {
        "an embedding LoRA (only linear modules are supported)"
    } else if tname.ends_with(".bias") {
        "a bias (LoRA biases are not supported)"
    } else {
        "not a LoRA A/B weight of a decoder layer"
    };
    why.to_string()
}
