//! A fused `attn_qkv` in a family whose GGUF files otherwise hold `attn_q`, `attn_k` and
//! `attn_v`: llama.cpp's converter writes one with `--fuse-qkv` (PR 22780), and its loader's
//! `create_tensor_qkv` prefers it to the three. llama.cpp's `build_qkv` multiplies by it once
//! and views rows `[0, q)`, `[q, q + k)` and `[q + k, q + k + v)` of the product as Q, K and V,
//! the fused bias added to the whole, so the tensor is the three as the file would hold them
//! apart, stacked by rows. It is split back into them before anything else reads them: a
//! `llama` file's q/k rows are then restored to HF's layout as separate ones are.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Arch;
use crate::error::{Error, Result};
use crate::tensor::HostTensor;

/// The GGUF names of the parts, in row order.
const PARTS: [&str; 3] = ["attn_q", "attn_k", "attn_v"];

/// Whether an `arch` GGUF's `attn_qkv` is split here. Not where the loader reads it as the
/// family's stacked module under HF's names (Phi-3's `qkv_proj`, Falcon's `query_key_value`,
/// GLM's and Phi's optional stack: [`crate::loader::fused::stacks_qkv`]).
pub fn splits(arch: Arch) -> bool {
    !crate::loader::fused::stacks_qkv(arch)
}

/// When GGUF tensor `name` is a layer's fused `attn_qkv` (weight or bias), the names of its
/// parts (`blk.N.attn_q.weight`, ...) with their `rows` (q's, k's, v's: heads x head width,
/// key/value heads x head width twice, as llama.cpp's `create_tensor_qkv` takes them), in row
/// order; `None` for any other tensor.
pub fn parts(name: &str, rows: [usize; 3]) -> Option<[(String, usize); 3]> {
    let (layer, "attn_qkv", suffix) = super::names::layer_tensor(name)? else {
        return None;
    };
    Some(std::array::from_fn(|i| {
        (format!("blk.{layer}.{}.{suffix}", PARTS[i]), rows[i])
    }))
}

/// Splits `t`, read from the fused GGUF tensor `name` of `path`, into `parts` ([`parts`]).
///
/// Errors: a weight whose shape is not `[q + k + v, hidden]`, a bias not `[q + k + v]`.
pub fn split(
    path: &Path,
    name: &str,
    t: HostTensor,
    parts: [(String, usize); 3],
    hidden: usize,
) -> Result<Vec<(String, HostTensor)>> {
    let [q, k, v] = parts.each_ref().map(|p| p.1);
    let rows = q.checked_add(k).and_then(|r| r.checked_add(v));
    let want: Vec<usize> = match name.ends_with(".bias") {
        true => rows.into_iter().collect(),
        false => rows.into_iter().chain([hidden]).collect(),
    };
    if rows.is_none() || t.shape != want {
        // As the file lists them, ne[0] first.
        let ggml = |s: &[usize]| s.iter().rev().copied().collect::<Vec<_>>();
        return Err(Error::format(
            path,
            format!(
                "tensor `{name}` has shape {:?} (GGUF order, ne[0] first), expected {:?}: the rows of attn_q, attn_k and attn_v stacked ({q} + {k} + {v})",
                ggml(&t.shape),
                ggml(&want)
            ),
        ));
    }
    let pieces = t.split_rows([q, k, v]);
    Ok(parts.into_iter().map(|p| p.0).zip(pieces).collect())
}

/// Refuses a layer whose q/k/v come in two forms: a fused `attn_qkv` beside a separate
/// `attn_q`, `attn_k` or `attn_v` (weights or biases), a fused weight with separate biases, or
/// separate weights with a fused bias. llama.cpp's `create_tensor_qkv` (and the loaders of the
/// families that stack q/k/v natively) reads `attn_qkv.bias` only beside `attn_qkv.weight`
/// and the separate biases only beside the separate weights, so its loader refuses such a file
/// (a tensor left over: "wrong number of tensors"). `names`: the file's tensors.
pub fn check_one_form<'a>(path: &Path, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    // Per layer, the first tensor of each form: fused weight, separate weight, fused bias,
    // separate bias.
    let mut layers: BTreeMap<usize, [Option<&str>; 4]> = BTreeMap::new();
    for name in names {
        let Some((layer, module, suffix)) = super::names::layer_tensor(name) else {
            continue;
        };
        let separate = PARTS.contains(&module);
        let form = match (module, suffix) {
            ("attn_qkv", "weight") => 0,
            (_, "weight") if separate => 1,
            ("attn_qkv", "bias") => 2,
            (_, "bias") if separate => 3,
            _ => continue,
        };
        layers.entry(layer).or_default()[form].get_or_insert(name);
    }
    for [fused_w, sep_w, fused_b, sep_b] in layers.into_values() {
        let (one, other, why) = match (fused_w, sep_w, fused_b, sep_b) {
            (Some(f), Some(s), _, _) | (_, _, Some(f), Some(s)) => {
                (s, f, "llama.cpp reads one form of a layer's q/k/v only")
            }
            (Some(w), None, None, Some(b)) => (
                b,
                w,
                "llama.cpp reads a fused attn_qkv's bias from attn_qkv.bias only",
            ),
            (None, Some(w), Some(b), None) => (
                b,
                w,
                "llama.cpp reads attn_qkv.bias only beside a fused attn_qkv.weight",
            ),
            _ => continue,
        };
        return Err(Error::format(
            path,
            format!("tensor `{one}` beside `{other}`: {why} (its loader refuses this file: a tensor left over)"),
        ));
    }
    Ok(())
}
