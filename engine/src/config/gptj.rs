//! What GPTJConfig reads that the Llama reading does not (transformers 5.25's `GPTJConfig`,
//! `GPTJRotaryEmbedding`, `GPTJAttention`): GPT-2's key names (`n_embd`, `n_layer`, `n_head`,
//! `n_positions`, `n_inner`, `layer_norm_epsilon`; its `attribute_map` reads the Llama names as
//! them too), and the rotation: `rotary_dim` dimensions of each head in adjacent pairs at base
//! 10000, whatever RoPE keys a file holds (GPT-J's rotary embedding reads none).

use std::path::Path;

use serde_json::Value;

use super::fields::Fields;
use crate::error::{Error, Result};

/// `(GPT-J's key, the Llama reading's)`: the Llama name where the file has it (it wins in
/// transformers), else GPT-J's.
const KEYS: [(&str, &str); 4] = [
    ("n_embd", "hidden_size"),
    ("n_layer", "num_hidden_layers"),
    ("n_head", "num_attention_heads"),
    ("n_positions", "max_position_embeddings"),
];

/// The RoPE keys other families read, which GPT-J's rotary embedding does not.
const UNREAD: [&str; 4] = [
    "rope_parameters",
    "rope_scaling",
    "rope_theta",
    "partial_rotary_factor",
];

/// `v` as the Llama reading takes it: GPT-J's keys under the Llama names (`n_positions`
/// absent: the family's default context, 2048), `intermediate_size` (`n_inner`, 4 x `n_embd` where absent or null),
/// `rms_norm_eps` (`layer_norm_epsilon`, default 1e-5), and no RoPE keys (base 10000, no
/// scaling, as GPT-J rotates).
///
/// # Errors
/// A key of another type, a null eps (GPTJConfig takes none). (Hidden not a multiple of the
/// heads is refused with the other families', [`super::heads::head_dim`].)
pub(super) fn gptj_view(v: &Value, path: &Path) -> Result<Value> {
    let bad = |m: String| Err(Error::format(path, m));
    let Some(o) = v.as_object() else {
        return bad("expected a JSON object".into());
    };
    let mut out = o.clone();
    for key in UNREAD {
        out.remove(key);
    }
    let f = Fields { v, path };
    let mut hidden = 0;
    for (own, llama) in KEYS {
        // The Llama name wins where both are present (GPTJConfig's attribute_map sets it last);
        // where neither is, the message names GPT-J's, and the context takes its default.
        let key = match o.contains_key(llama) {
            true => llama,
            false if own == "n_positions" && !o.contains_key(own) => continue,
            false => own,
        };
        let n = f.usize(key)?;
        out.insert(llama.into(), n.into());
        if own == "n_embd" {
            hidden = n;
        }
    }
    let inner = f.usize_or("n_inner", hidden.saturating_mul(4))?;
    out.insert("intermediate_size".into(), inner.into());
    let eps = f.f64_no_null_or("layer_norm_epsilon", 1e-5)?;
    out.insert("rms_norm_eps".into(), eps.into());
    Ok(Value::Object(out))
}

/// The rotated dimensions of each head: `rotary_dim` (GPTJConfig's default 64).
///
/// # Errors
/// A null (GPTJConfig refuses it), or a count GPT-J's attention fails on: zero, odd, or wider
/// than the head (`n_embd / n_head`).
pub(super) fn rotary_dim(v: &Value, head_dim: usize, path: &Path) -> Result<usize> {
    let r =
        match v.get("rotary_dim") {
            Some(Value::Null) => return Err(Error::format(
                path,
                "field `rotary_dim`: expected a positive even integer (GPTJConfig takes no null)",
            )),
            _ => (Fields { v, path }).usize_or("rotary_dim", 64)?,
        };
    if r == 0 || !r.is_multiple_of(2) || r > head_dim {
        return Err(Error::format(
            path,
            format!("field `rotary_dim` = {r}: expected an even number from 2 to the head's {head_dim} dimensions (n_embd / n_head; GPT-J's attention fails on others)"),
        ));
    }
    Ok(r)
}
