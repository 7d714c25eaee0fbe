//! A fused `attn_qkv` in a family whose GGUF files otherwise hold `attn_q`, `attn_k` and
//! `attn_v`: llama.cpp's converter writes one with `--fuse-qkv` (PR 22780), and its loader's
//! `create_tensor_qkv` prefers it to the three. llama.cpp's `build_qkv` multiplies by it once
//! and views rows `[0, q)`, `[q, q + k)` and `[q + k, q + k + v)` of the product as Q, K and V,
//! the fused bias added to the whole, so the tensor is the three as the file would hold them
//! apart, stacked by rows. It is split back into them before anything else reads them: a
//! `llama` file's q/k rows are then restored to HF's layout as separate ones are.

use std::collections::HashMap;
use std::path::Path;

use crate::config::Arch;
use crate::error::{Error, Result};
use crate::tensor::HostTensor;
use crate::LoraModule;

/// The parts, in row order, with the GGUF names they are read under.
const PARTS: [(LoraModule, &str); 3] = [
    (LoraModule::Q, "attn_q"),
    (LoraModule::K, "attn_k"),
    (LoraModule::V, "attn_v"),
];

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
    let (stem, suffix) = name.split_once(".attn_qkv.")?;
    let layer = stem.strip_prefix("blk.")?;
    if layer.parse::<usize>().is_err() || !matches!(suffix, "weight" | "bias") {
        return None;
    }
    Some(std::array::from_fn(|i| {
        (format!("{stem}.{}.{suffix}", PARTS[i].1), rows[i])
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
    let rows: usize = parts.iter().map(|p| p.1).sum();
    let want: Vec<usize> = match name.ends_with(".bias") {
        true => vec![rows],
        false => vec![rows, hidden],
    };
    if t.shape != want {
        let [q, k, v] = parts.each_ref().map(|p| p.1);
        return Err(Error::format(
            path,
            format!(
                "tensor `{name}` has shape {:?} (rows first), expected {want:?}: the rows of attn_q, attn_k and attn_v stacked ({q} + {k} + {v})",
                t.shape
            ),
        ));
    }
    let mut start = 0;
    Ok(parts
        .into_iter()
        .map(|(part, n)| {
            let piece = t.gather_rows(start..start + n);
            start += n;
            (part, piece)
        })
        .collect())
}

/// Refuses a layer whose q/k/v weights and biases come in different forms: a fused weight
/// with separate biases, or separate weights with a fused bias. llama.cpp reads
/// `attn_qkv.bias` only beside `attn_qkv.weight`, and `attn_q.bias` (...) only beside
/// `attn_q.weight`, so its loader refuses such a file (a tensor left over: "wrong number of
/// tensors"). `sources` maps each HF name read to the GGUF tensor it came from.
pub fn check_one_form(path: &Path, sources: &HashMap<String, &str>) -> Result<()> {
    let fused = |source: &str| source.contains(".attn_qkv.");
    // In name order, so that a file with several is refused naming the same tensor each time.
    let mut read: Vec<_> = sources.iter().collect();
    read.sort();
    for (hf, bias) in read {
        let Some(stem) = PARTS
            .iter()
            .find_map(|(m, _)| hf.strip_suffix(&format!(".{}.bias", m.hf_path())))
        else {
            continue;
        };
        let weight = format!("{stem}.{}.weight", LoraModule::Q.hf_path());
        let Some(weight) = sources.get(&weight) else {
            continue;
        };
        if fused(bias) != fused(weight) {
            let reads = match fused(weight) {
                true => "a fused attn_qkv's bias from attn_qkv.bias",
                false => "attn_qkv.bias only beside a fused attn_qkv.weight",
            };
            return Err(Error::format(
                path,
                format!("tensor `{bias}` beside `{weight}`: llama.cpp reads {reads} (its loader refuses this file: a tensor left over)"),
            ));
        }
    }
    Ok(())
}
