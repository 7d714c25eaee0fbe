//! HF safetensors: one file, or shards listed in `model.safetensors.index.json`.
//! Files are memory-mapped; f32/f16/bf16 tensors are upcast to f32.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use safetensors::{Dtype, SafeTensors};

use crate::config::Fp8Quant;
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, WeightMap};

/// Memory-maps a file.
pub fn mmap(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and dropped before this process could write the file;
    // another process truncating it underneath us is outside what any loader can defend.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Calls `f(name, tensor)` for every tensor of a safetensors file, upcast to f32. 8-bit floats
/// are refused: their values mean something only with the scales that an FP8 model checkpoint
/// declares ([`load_hf_weights`] reads those).
pub fn for_each_tensor(
    path: &Path,
    mut f: impl FnMut(String, HostTensor) -> Result<()>,
) -> Result<()> {
    for_each_typed(path, |name, dtype, t| {
        if float8(dtype) || dtype == Dtype::F8_E8M0 {
            return Err(Error::format(
                path,
                format!("tensor `{name}` is an 8-bit float ({dtype:?}): only an FP8 model checkpoint's weights are read in that form, with the scales its config.json declares"),
            ));
        }
        f(name, t)
    })
}

/// As [`for_each_tensor`], with each tensor's stored dtype.
fn for_each_typed(
    path: &Path,
    mut f: impl FnMut(String, Dtype, HostTensor) -> Result<()>,
) -> Result<()> {
    let map = mmap(path)?;
    let st = SafeTensors::deserialize(&map).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
        if saved_buffer(&name, view.dtype()) {
            continue;
        }
        let data = to_f32(view.dtype(), view.data())
            .map_err(|m| Error::format(path, format!("tensor `{name}`: {m}")))?;
        f(
            name,
            view.dtype(),
            HostTensor::new(view.shape().to_vec(), data),
        )?;
    }
    Ok(())
}

/// Buffers older transformers saved beside the weights (GPT-NeoX's causal mask
/// `attention.bias` and `attention.masked_bias`, GPT-J's `attn.bias` and `attn.masked_bias`,
/// which early GPT-J code saved as uint8, RoPE's `inv_freq`), by name.
const BUFFERS: [&str; 5] = [
    ".attention.bias",
    ".attention.masked_bias",
    ".attn.bias",
    ".attn.masked_bias",
    ".rotary_emb.inv_freq",
];

/// Whether tensor `name` of `dtype` is such a buffer, or any boolean tensor (a mask): no model
/// reads one, so it is left out here, in whatever dtype it was saved (a mask's booleans would
/// otherwise be refused for their dtype, and a float one reported unused).
fn saved_buffer(name: &str, dtype: Dtype) -> bool {
    dtype == Dtype::BOOL || BUFFERS.iter().any(|b| name.ends_with(b))
}

/// Whether `dtype` is an 8-bit float that holds a quantized weight ([`super::fp8`]).
fn float8(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F8_E4M3 | Dtype::F8_E5M2)
}

/// Converts raw little-endian bytes of `dtype` to f32 (8-bit floats exactly, as stored: an
/// FP8 checkpoint's scales are applied by [`super::fp8::dequantize`]).
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::F8_E4M3 => bytes.iter().map(|&b| super::fp8::e4m3_to_f32(b)).collect(),
        Dtype::F8_E5M2 => bytes.iter().map(|&b| super::fp8::e5m2_to_f32(b)).collect(),
        Dtype::F8_E8M0 => bytes.iter().map(|&b| super::fp8::e8m0_to_f32(b)).collect(),
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (expected F32, F16, BF16, F64, or an FP8 checkpoint's F8_E4M3 with its scales)"
            ))
        }
    })
}

/// The `weight_map` of `model.safetensors.index.json` (tensor name -> shard file name), each
/// shard a file that exists beside it.
fn read_index(dir: &Path, index: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            index,
            format!("not valid JSON (truncated or corrupt?): {e}"),
        )
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            Error::format(
                index,
                "missing object field `weight_map` (tensor name -> shard file)",
            )
        })?;
    let mut entries = Vec::with_capacity(map.len());
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| {
            Error::format(
                index,
                format!("weight_map[`{name}`]: expected a file name, found {f}"),
            )
        })?;
        if f.contains('/') || f.contains('\\') {
            return Err(Error::format(
                index,
                format!("weight_map[`{name}`]: `{f}` must be a file name in the same directory"),
            ));
        }
        if !dir.join(f).exists() {
            return Err(Error::format(
                index,
                format!("weight_map[`{name}`] names shard `{f}`, which does not exist"),
            ));
        }
        entries.push((name.clone(), f.to_string()));
    }
    Ok(entries)
}

/// The index of a sharded HF model directory, if it has one.
fn index_path(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("model.safetensors.index.json")).filter(|p| p.exists())
}

/// The shard files `entries` (an index's `weight_map`) name, each once, in name order.
fn shards(dir: &Path, entries: &[(String, String)]) -> Vec<PathBuf> {
    let files: BTreeSet<&String> = entries.iter().map(|(_, f)| f).collect();
    files.into_iter().map(|f| dir.join(f)).collect()
}

/// The safetensors files of an HF model directory: the shards named by the index, or
/// `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if let Some(index) = index_path(dir) {
        return Ok(shards(dir, &read_index(dir, &index)?));
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    if dir.join("pytorch_model.bin").exists() {
        return Err(Error::unsupported(format!(
            "{}: only pytorch_model.bin found; convert it to safetensors first \
             (python: `from transformers import AutoModelForCausalLM as M; M.from_pretrained(d).save_pretrained(d, safe_serialization=True)`)",
            dir.display()
        )));
    }
    Err(Error::format(
        dir,
        "no model.safetensors or model.safetensors.index.json in this directory",
    ))
}

/// The name, dtype and shape of every tensor of a safetensors file, from its header alone (the
/// file is mapped; its data is not read).
pub fn header(path: &Path) -> Result<Vec<(String, Dtype, Vec<usize>)>> {
    let map = mmap(path)?;
    let (_, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let mut v: Vec<(String, Dtype, Vec<usize>)> = (meta.tensors().into_iter())
        .map(|(n, i)| (n, i.dtype, i.shape.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Where the `model.safetensors.index.json` of `dir` disagrees with its shards' headers: an
/// entry whose shard does not hold it, a shard tensor it lists in another shard or not at
/// all. Empty without an index.
pub fn index_disagreements(dir: &Path) -> Result<Vec<String>> {
    match index_path(dir) {
        Some(index) => disagreements(dir, read_index(dir, &index)?),
        None => Ok(Vec::new()),
    }
}

/// [`index_disagreements`] of the index `entries` of `dir`.
fn disagreements(dir: &Path, entries: Vec<(String, String)>) -> Result<Vec<String>> {
    let mut listed: std::collections::BTreeMap<String, String> = entries.into_iter().collect();
    let shards: BTreeSet<String> = listed.values().cloned().collect();
    let mut why = Vec::new();
    let mut moved = std::collections::HashSet::new();
    for shard in &shards {
        for (name, _, _) in header(&dir.join(shard))? {
            match listed.get(&name) {
                Some(s) if s == shard => {
                    listed.remove(&name);
                }
                Some(s) => {
                    why.push(format!(
                        "weight_map[`{name}`] names shard `{s}`, but the tensor is in `{shard}`"
                    ));
                    moved.insert(name);
                }
                None => why.push(format!(
                    "shard `{shard}` holds tensor `{name}`, which weight_map does not list"
                )),
            }
        }
    }
    // Moved entries were said above, from the shard that holds them.
    for (name, shard) in listed.into_iter().filter(|(n, _)| !moved.contains(n)) {
        why.push(format!(
            "weight_map[`{name}`] names shard `{shard}`, which does not hold it"
        ));
    }
    Ok(why)
}

/// All weights of an HF model directory, with a progress bar for large models; an FP8
/// checkpoint's (`quant`, from its config) dequantized to f32 ([`super::fp8`]).
pub fn load_hf_weights(dir: &Path, quant: Option<&Fp8Quant>) -> Result<WeightMap> {
    // The index read once: its shards are the files, and it is checked against them.
    let index = index_path(dir)
        .map(|i| read_index(dir, &i).map(|e| (i, e)))
        .transpose()?;
    let files = match &index {
        Some((_, entries)) => shards(dir, entries),
        None => weight_files(dir)?,
    };
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    // A stale index (a tensor moved or renamed since it was written; a tied `lm_head.weight`
    // that the safetensors converter dropped from the shards) is said, not refused: every
    // shard is read, as transformers 5 reads them, and a tensor the model needs but no shard
    // holds is named when the model is built.
    if let Some((index, entries)) = index {
        // A few lines, not one per tensor of an index that disagrees throughout.
        let why = disagreements(dir, entries)?;
        for w in why.iter().take(5) {
            tracing::warn!("{}: {w}", index.display());
        }
        if why.len() > 5 {
            tracing::warn!(
                "{}: and {} more such entries",
                index.display(),
                why.len() - 5
            );
        }
    }
    let bar = progress_bar(total, "loading weights");
    let mut map = WeightMap::new(dir);
    let (mut vision, mut prediction) = (0, 0);
    let mut stored = super::fp8::Stored::default();
    for file in &files {
        for_each_typed(file, |name, dtype, t| {
            if super::multimodal::vision_tensor(&name) {
                vision += 1;
                return Ok(());
            }
            // Multi-token-prediction layers (EXAONE 4.5's `mtp.*`), which transformers skips
            // on load and the forward pass never runs.
            if name.starts_with("mtp.") {
                prediction += 1;
                return Ok(());
            }
            // Two shards holding one tensor: which copy wins is not for the loader to guess.
            if let Some(first) = map.file_of(&name) {
                let first = first.file_name().unwrap_or_default().to_string_lossy();
                return Err(Error::format(
                    file,
                    format!("tensor `{name}` is also in shard `{first}` of this model; keep one"),
                ));
            }
            if float8(dtype) {
                stored.float8.push(name.clone());
            }
            // E8M0 holds powers of two: a block scale's form (DeepSeek's ue8m0), no weight's.
            if dtype == Dtype::F8_E8M0 && !name.ends_with("_scale_inv") && !name.ends_with("_scale")
            {
                return Err(Error::format(
                    file,
                    format!("tensor `{name}` is F8_E8M0 (powers of two), which only an FP8 checkpoint's scales are stored in"),
                ));
            }
            let half = match dtype {
                Dtype::BF16 => Some(super::fp8::HalfScale::Bf16),
                Dtype::F16 => Some(super::fp8::HalfScale::F16),
                _ => None,
            };
            if let Some(h) = half.filter(|_| name.contains("weight_scale")) {
                stored.half_scales.insert(name.clone(), h);
            }
            map.insert(name, t, file)
        })?;
        bar.inc(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
    }
    bar.finish_and_clear();
    let done = super::fp8::dequantize(&mut map, quant, &stored)?;
    if let Some(q) = quant.filter(|_| done.weights > 0) {
        let dropped = match done.activation_scales + done.cache_scales {
            0 => String::new(),
            n => format!("; {n} activation and KV-cache scales (for FP8 kernels) left out"),
        };
        tracing::info!(
            "{}: {}: {} weights dequantized to f32 at load, as transformers does without an FP8 GPU{dropped}",
            dir.display(),
            q.describe(),
            done.weights
        );
    }
    if vision > 0 {
        tracing::info!(
            "{}: {vision} tensors of the vision tower and projector (or media tokenizers) left out (text only)",
            dir.display()
        );
    }
    if prediction > 0 {
        tracing::info!(
            "{}: {prediction} tensors of the multi-token-prediction layers (`mtp.*`) left out: the forward pass does not run them",
            dir.display()
        );
    }
    Ok(map)
}

/// A byte-count progress bar on stderr, shown only for loads big enough to wait for.
pub fn progress_bar(total_bytes: u64, what: &str) -> ProgressBar {
    if total_bytes < 64 << 20 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GPT-NeoX checkpoint of transformers 4 (its causal mask saved as a boolean buffer) is
    /// read without it, as are a float RoPE table and GPT-J's uint8 mask; an integer weight is
    /// refused for its dtype.
    #[test]
    fn boolean_buffers_are_left_out() {
        use safetensors::tensor::TensorView;
        let dir = std::env::temp_dir().join(format!("dlp-st-buffers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let w: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mask = [1u8; 4];
        let write = |name: &str, extra: (&str, Dtype)| {
            let tensors = [
                (
                    "gpt_neox.layers.0.attention.dense.weight",
                    TensorView::new(Dtype::F32, vec![2], &w).unwrap(),
                ),
                (
                    extra.0,
                    TensorView::new(extra.1, vec![32 / extra.1.bitsize()], &mask).unwrap(),
                ),
            ];
            let p = dir.join(name);
            safetensors::serialize_to_file(tensors, None, &p).unwrap();
            p
        };
        // A boolean mask, and a RoPE table saved as floats: only the weight is read.
        for (file, buffer) in [
            (
                "a.safetensors",
                ("gpt_neox.layers.0.attention.bias", Dtype::BOOL),
            ),
            (
                "f.safetensors",
                ("model.layers.0.self_attn.rotary_emb.inv_freq", Dtype::F32),
            ),
            // Early GPT-J code's mask, in uint8.
            ("j.safetensors", ("transformer.h.0.attn.bias", Dtype::U8)),
        ] {
            let mut seen = Vec::new();
            for_each_tensor(&write(file, buffer), |n, _| {
                seen.push(n);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, ["gpt_neox.layers.0.attention.dense.weight"]);
        }
        let p = write(
            "b.safetensors",
            ("model.layers.0.mlp.up_proj.weight", Dtype::U8),
        );
        let e = for_each_tensor(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("dtype U8 is not supported"), "{e}");
        // An 8-bit float outside an FP8 checkpoint's load (an adapter's, say) has no scales.
        let p = write(
            "f.safetensors",
            ("base_model.model.lm_head.lora_A.weight", Dtype::F8_E4M3),
        );
        let e = for_each_tensor(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("is an 8-bit float (F8_E4M3)"), "{e}");
        // In a model folder, E8M0 is read as a scale's form only.
        std::fs::rename(
            write("x", ("model.norm.weight", Dtype::F8_E8M0)),
            dir.join("model.safetensors"),
        )
        .unwrap();
        let e = load_hf_weights(&dir, None).err().unwrap().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("tensor `model.norm.weight` is F8_E8M0"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
