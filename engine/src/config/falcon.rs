//! What FalconConfig reads that the Llama reading does not (transformers 5.25's
//! `FalconConfig` and `FalconDecoderLayer`): its own keys for the key/value heads
//! (`num_kv_heads`, by `multi_query` and `new_decoder_architecture`), the feed-forward width
//! (`ffn_hidden_size`), the norms' epsilon (`layer_norm_epsilon`), and the decoder layer's
//! shape: one norm or two, side by side or in sequence. The layouts transformers builds and then
//! fails on, and ALiBi, are refused.

use std::path::Path;

use serde_json::Value;

use super::fields::Fields;
use crate::error::{Error, Result};

/// A Falcon flag as the classes test it: absent is `default`, a null is false (Python's
/// `if None`), else true or false.
fn flag(v: &Value, key: &str, default: bool, path: &Path) -> Result<bool> {
    match v.get(key) {
        None => Ok(default),
        Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(x) => Err(Error::format(
            path,
            format!("field `{key}`: expected true or false, found {x}"),
        )),
    }
}

/// A count that FalconConfig defaults where absent or null.
fn count_or(v: &Value, key: &str, default: usize, path: &Path) -> Result<usize> {
    let n = (Fields { v, path }).usize_or(key, default)?;
    match n {
        0 => Err(Error::format(
            path,
            format!("field `{key}`: expected a positive integer, found 0"),
        )),
        n => Ok(n),
    }
}

/// `v` as the Llama reading takes it: `hidden_size` (FalconConfig's `n_embed` wins, as its
/// `__post_init__` sets it), `num_key_value_heads` (the key/value heads the attention makes:
/// `num_kv_heads` in the `new_decoder_architecture` or without `multi_query`, else 1),
/// `intermediate_size` (`ffn_hidden_size`, default 4 x hidden), `rms_norm_eps`
/// (`layer_norm_epsilon`, default 1e-5), and `parallel_attn`, `new_decoder_architecture`,
/// `num_ln_in_parallel_attn` as the decoder layer reads them (nulls false; two norms by default
/// in the new architecture), for [`parallel`].
///
/// # Errors
/// `alibi` (ALiBi position biases, Falcon-RW's: not supported); the layouts FalconDecoderLayer
/// builds and then fails on (the new architecture without `parallel_attn`, or with
/// `num_ln_in_parallel_attn` other than 1 or 2; two norms outside it); `num_kv_heads` that do not
/// fit the heads; a key of another type. (A hidden_size the heads do not divide is refused with
/// the other families', [`super::heads::head_dim`].)
pub(super) fn falcon_view(v: &Value, path: &Path) -> Result<Value> {
    let bad = |m: String| Err(Error::format(path, m));
    if flag(v, "alibi", false, path)? {
        return Err(Error::unsupported(format!(
            "{}: `alibi` true (ALiBi position biases, Falcon-RW's) is not supported; Falcon models with rotary embeddings (`alibi` false) are",
            path.display()
        )));
    }
    let f = Fields { v, path };
    let hidden = match v.get("n_embed").filter(|x| !x.is_null()) {
        Some(_) => f.usize("n_embed")?,
        None => f.usize("hidden_size")?,
    };
    let heads = f.usize("num_attention_heads")?;
    // The key/value counts below default to it.
    if heads == 0 {
        return bad("num_attention_heads must be > 0".into());
    }
    let new = flag(v, "new_decoder_architecture", false, path)?;
    let multi_query = flag(v, "multi_query", true, path)?;
    let parallel = flag(v, "parallel_attn", true, path)?;
    // Read only where FalconAttention reads it (multi-query alone has one key/value head).
    let num_kv = match new || !multi_query {
        true => count_or(v, "num_kv_heads", heads, path)?,
        false => 1,
    };
    let kv_heads = match (new, multi_query) {
        (true, _) if !heads.is_multiple_of(num_kv) => {
            return bad(format!("num_kv_heads {num_kv} must divide num_attention_heads {heads} (each key/value head serves a whole group of query heads)"));
        }
        (true, _) => num_kv,
        // A key and a value per head, repeated heads / num_kv_heads times: a count other than
        // one fails in FalconAttention.
        (false, false) if heads / num_kv != 1 => {
            return bad(format!("num_kv_heads {num_kv} without multi_query or new_decoder_architecture: FalconAttention then stores a key and a value per head ({heads}) and repeats them num_attention_heads / num_kv_heads = {} times, which fails; expected a count above {} and at most {heads}", heads / num_kv, heads / 2));
        }
        (false, false) => heads,
        (false, true) => 1,
    };
    let norms = match v.get("num_ln_in_parallel_attn") {
        None | Some(Value::Null) => None,
        Some(_) => Some(f.usize("num_ln_in_parallel_attn")?),
    };
    let norms = match (new, parallel, norms) {
        (true, false, _) => {
            return bad("`new_decoder_architecture` without `parallel_attn`: FalconDecoderLayer builds it and then fails in its forward pass".into());
        }
        (true, true, None) => 2,
        (true, true, Some(n @ (1 | 2))) => n,
        (true, true, Some(n)) => {
            return bad(format!("field `num_ln_in_parallel_attn` = {n}: expected 1 or 2 (FalconDecoderLayer fails on other counts)"));
        }
        (false, true, Some(2)) => {
            return bad("`num_ln_in_parallel_attn` 2 needs `new_decoder_architecture` (FalconDecoderLayer builds `ln_attn` and `ln_mlp` and then reads `input_layernorm`)".into());
        }
        (false, _, _) => 1,
    };
    let ffn = count_or(v, "ffn_hidden_size", hidden.saturating_mul(4), path)?;
    let eps = f.f64_no_null_or("layer_norm_epsilon", 1e-5)?;
    let mut out = v.clone();
    let Some(o) = out.as_object_mut() else {
        return bad("expected a JSON object".into());
    };
    o.insert("hidden_size".into(), hidden.into());
    o.insert("num_key_value_heads".into(), kv_heads.into());
    o.insert("intermediate_size".into(), ffn.into());
    o.insert("rms_norm_eps".into(), eps.into());
    o.insert("parallel_attn".into(), parallel.into());
    o.insert("new_decoder_architecture".into(), new.into());
    o.insert("num_ln_in_parallel_attn".into(), norms.into());
    Ok(out)
}

/// `(side by side, a norm each)` of a [`falcon_view`]: attention and the feed-forward side by
/// side with `parallel_attn` (always in the new architecture), each on its own norm of one input
/// (`ln_attn`, `ln_mlp`) with the new architecture's two norms.
pub(super) fn parallel(view: &Value) -> (bool, bool) {
    let parallel = view["parallel_attn"] == true;
    let two = view["new_decoder_architecture"] == true && view["num_ln_in_parallel_attn"] == 2;
    (parallel, two)
}
