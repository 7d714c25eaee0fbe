//! compressed-tensors checkpoints (`quant_method: "compressed-tensors"`, llm-compressor's
//! output: most RedHatAI / Neural Magic FP8 releases) whose weights are FP8: format
//! `float-quantized` (or `naive-quantized`), every config group's weights 8-bit floats,
//! symmetric, per tensor, channel, group or block. Each `weight` is stored as F8_E4M3 beside its
//! `weight_scale`; the loader multiplies them out ([`crate::loader::fp8`]) as compressed-tensors'
//! `dequantize` does (transformers' `CompressedTensorsConfig(dequantize=True)`), the product in
//! the scale's stored dtype. Input activation schemes (FP8-dynamic's per-token scales) are not
//! applied, as in that dequantized model; every other form is refused by name.

use std::path::Path;

use serde_json::Value;

use super::quantization::{two_sizes, Fp8Quant};
use crate::error::{Error, Result};

/// Formats that store an 8-bit float scheme's weights as F8_E4M3 values beside their scales.
const FLOAT_FORMATS: [&str; 2] = ["float-quantized", "naive-quantized"];

/// The [`Fp8Quant`] of a compressed-tensors `quantization_config` `q`, or why it is not read.
pub(super) fn read(q: &Value, path: &Path) -> Result<Fp8Quant> {
    let refuse = |what: String| {
        Error::unsupported(format!(
            "{}: a compressed-tensors checkpoint with {what}: this engine reads its FP8 weights (format `float-quantized`, 8-bit float weights) only; use the BF16 release, or a GGUF, of the same model",
            path.display()
        ))
    };
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(status) = q.get("quantization_status").filter(|s| !s.is_null()) {
        if status.as_str() != Some("compressed") {
            return Err(refuse(format!(
                "`quantization_status` {status} (the weights are not stored compressed)"
            )));
        }
    }
    for key in ["sparsity_config", "transform_config"] {
        // llm-compressor writes `"sparsity_config": {}` for none.
        let empty = |c: &Value| c.is_null() || c.as_object().is_some_and(|o| o.is_empty());
        let Some(c) = q.get(key).filter(|c| !empty(c)) else {
            continue;
        };
        // A sparsity config of format `dense` stores nothing differently.
        if key == "sparsity_config" && str_of(c, "format").as_deref() == Some("dense") {
            continue;
        }
        return Err(refuse(format!(
            "a `{key}` (sparse storage or rotations applied at run time)"
        )));
    }
    let top_format = str_of(q, "format");
    let groups = (q.get("config_groups").and_then(Value::as_object))
        .filter(|g| !g.is_empty())
        .ok_or_else(|| refuse("no `config_groups`".into()))?;
    let mut blocks = Vec::new();
    for (name, g) in groups {
        let format = str_of(g, "format").or(top_format.clone());
        if !format
            .as_deref()
            .is_some_and(|f| FLOAT_FORMATS.contains(&f))
        {
            let f = format.unwrap_or_else(|| "none".into());
            return Err(refuse(format!("format `{f}` (config group `{name}`)")));
        }
        let Some(w) = g.get("weights").filter(|w| !w.is_null()) else {
            return Err(refuse(format!(
                "config group `{name}` quantizing no weights"
            )));
        };
        let (kind, bits) = (str_of(w, "type"), w.get("num_bits").and_then(Value::as_u64));
        if kind.as_deref() != Some("float") || bits != Some(8) {
            return Err(refuse(format!(
                "config group `{name}`'s weights of type {}, {} bits",
                kind.unwrap_or_else(|| "?".into()),
                bits.map_or("?".into(), |b| b.to_string())
            )));
        }
        if w.get("symmetric")
            .is_some_and(|s| !s.is_null() && s.as_bool() != Some(true))
        {
            return Err(refuse(format!(
                "config group `{name}`'s asymmetric weights (zero points)"
            )));
        }
        if g.get("output_activations").is_some_and(|o| !o.is_null()) {
            return Err(refuse(format!(
                "config group `{name}`'s output activations quantized"
            )));
        }
        match str_of(w, "strategy").as_deref() {
            Some("tensor" | "channel" | "group") => blocks.push(None),
            Some("block") => blocks.push(Some(block_structure(w, name, path)?)),
            other => {
                return Err(refuse(format!(
                    "config group `{name}`'s weight strategy `{}`",
                    other.unwrap_or("none")
                )))
            }
        }
    }
    // One block for the whole checkpoint where every group has the same; otherwise each
    // weight's block is the one its scale grid divides it into.
    let block = match blocks[..] {
        [Some(b), ref rest @ ..] if rest.iter().all(|r| *r == Some(b)) => Some(b),
        _ => None,
    };
    Ok(Fp8Quant {
        block,
        round_to_scale_dtype: true,
    })
}

/// A block-strategy group's `block_structure` `[rows, columns]`.
fn block_structure(w: &Value, group: &str, path: &Path) -> Result<[usize; 2]> {
    let b = w.get("block_structure").unwrap_or(&Value::Null);
    two_sizes(b).ok_or_else(|| {
        Error::format(
            path,
            format!("`quantization_config.config_groups.{group}.weights.block_structure`: expected two positive whole numbers [rows, columns], found {b}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RedHatAI's FP8-dynamic form (llm-compressor's `FP8_DYNAMIC` preset).
    fn fp8_dynamic() -> Value {
        json!({
            "quant_method": "compressed-tensors", "format": "float-quantized",
            "quantization_status": "compressed", "ignore": ["lm_head"], "kv_cache_scheme": null,
            "sparsity_config": {}, "transform_config": null,
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "float", "symmetric": true, "strategy": "channel",
                            "dynamic": false, "group_size": null, "block_structure": null},
                "input_activations": {"num_bits": 8, "type": "float", "symmetric": true,
                                      "strategy": "token", "dynamic": true},
                "output_activations": null}}})
    }

    fn reads(q: &Value) -> Fp8Quant {
        read(q, Path::new("config.json")).unwrap()
    }

    fn refused(q: &Value, want: &str) {
        let e = read(q, Path::new("config.json")).unwrap_err().to_string();
        assert!(e.contains(want), "{e}\nwanted: {want}");
        assert!(
            e.contains("config.json: a compressed-tensors checkpoint with"),
            "{e}"
        );
    }

    #[test]
    fn fp8_schemes_are_read() {
        let q = reads(&fp8_dynamic());
        assert_eq!((q.block, q.round_to_scale_dtype), (None, true));
        // The FP8 block preset: 128×128 blocks.
        let mut v = fp8_dynamic();
        v["config_groups"]["group_0"]["weights"]["strategy"] = json!("block");
        v["config_groups"]["group_0"]["weights"]["block_structure"] = json!([128, 128]);
        assert_eq!(reads(&v).block, Some([128, 128]));
        // Two groups, one by blocks and one by channels: each weight by its own grid.
        v["config_groups"]["group_1"] = fp8_dynamic()["config_groups"]["group_0"].clone();
        assert_eq!(reads(&v).block, None);
        // The format named by each group (a mixed-precision config).
        let mut v = fp8_dynamic();
        v["format"] = json!("mixed-precision");
        v["config_groups"]["group_0"]["format"] = json!("naive-quantized");
        reads(&v);
        // The sparsity config of a dense checkpoint.
        v["sparsity_config"] = json!({"format": "dense", "global_sparsity": 0.1});
        reads(&v);
    }

    #[test]
    fn other_forms_are_refused_by_name() {
        let edited = |f: &dyn Fn(&mut Value)| {
            let mut v = fp8_dynamic();
            f(&mut v);
            v
        };
        let w = |key: &str, value: Value| {
            edited(&|v: &mut Value| v["config_groups"]["group_0"]["weights"][key] = value.clone())
        };
        refused(
            &edited(&|v| v["format"] = json!("pack-quantized")),
            "format `pack-quantized` (config group `group_0`)",
        );
        refused(
            &w("type", json!("int")),
            "config group `group_0`'s weights of type int, 8 bits",
        );
        refused(&w("num_bits", json!(4)), "weights of type float, 4 bits");
        refused(&w("symmetric", json!(false)), "asymmetric weights");
        refused(&w("symmetric", json!("false")), "asymmetric weights");
        refused(
            &w("strategy", json!("tensor_group")),
            "strategy `tensor_group`",
        );
        refused(
            &edited(&|v| v["quantization_status"] = json!("frozen")),
            "`quantization_status` \"frozen\"",
        );
        refused(
            &edited(&|v| v["sparsity_config"] = json!({"format": "sparse-24-bitmask"})),
            "a `sparsity_config`",
        );
        refused(
            &edited(&|v| v["transform_config"] = json!({"config_groups": {}})),
            "a `transform_config`",
        );
        refused(
            &edited(&|v| v["config_groups"] = json!({})),
            "no `config_groups`",
        );
        refused(
            &edited(&|v| {
                v["config_groups"]["group_0"]["output_activations"] = json!({"num_bits": 8})
            }),
            "output activations quantized",
        );
        let mut v = w("strategy", json!("block"));
        v["config_groups"]["group_0"]["weights"]["block_structure"] = json!([128]);
        let e = read(&v, Path::new("config.json")).unwrap_err().to_string();
        assert!(e.contains("config_groups.group_0.weights.block_structure`: expected two positive whole numbers"), "{e}");
    }
}
