//! A checkpoint's `quantization_config`: FP8 checkpoints (transformers' FineGrainedFP8,
//! `quant_method: "fp8"`, and compressed-tensors' FP8 forms, [`super::compressed_tensors`]) are
//! read; every other method is refused by name.
//!
//! FP8 checkpoints store each quantized linear's `weight` as F8_E4M3 values and a
//! `weight_scale_inv` beside it (one value, F32 or BF16, per block of `weight_block_size` or per
//! tensor); the loader multiplies them out to f32 ([`crate::loader::fp8`]), as transformers does
//! where it dequantizes (`FineGrainedFP8Config(dequantize=True)`, which it switches to without an
//! FP8-capable GPU). These are the Qwen3 FP8 releases (128×128 blocks), DeepSeek-V3-style ones,
//! Ministral 3's (one scale per tensor, a static activation scheme) and AutoFP8's
//! (`weight_scale`, `input_scale`, no `weight_block_size`).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// How an FP8 checkpoint's weights are scaled (`quantization_config` with `quant_method`
/// `"fp8"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fp8Quant {
    /// `weight_block_size` as `[rows, columns]` of the weight each scale covers; `None` (the key
    /// null or absent): each weight's block is the one its scales' grid divides it into, one
    /// scale per tensor where it has one (transformers derives every block so; vLLM reads an
    /// absent key as per tensor, AutoFP8's case).
    pub block: Option<[usize; 2]>,
    /// The product is rounded to the scale's stored dtype where that is BF16 or F16, as
    /// compressed-tensors' `dequantize` forms it (`dtype = scale.dtype`); false for
    /// FineGrainedFP8, whose `Fp8Dequantize` multiplies in f32 whatever the scale's dtype.
    pub round_to_scale_dtype: bool,
}

/// A block size `[rows, columns]`: two positive whole numbers, else `None`.
pub(super) fn two_sizes(b: &Value) -> Option<[usize; 2]> {
    match b.as_array()?.as_slice() {
        [r, c] => {
            Some([r.as_u64()?, c.as_u64()?].map(|n| n as usize)).filter(|s| s[0] > 0 && s[1] > 0)
        }
        _ => None,
    }
}

impl Fp8Quant {
    /// The quantization a config object `v` declares: `None` without a (non-null)
    /// `quantization_config`, an FP8 one, or an error naming the key for any other method or
    /// for a value FineGrainedFP8Config would refuse. `path` is for messages.
    pub fn of_config(v: &Value, path: &Path) -> Result<Option<Self>> {
        let Some(q) = v.get("quantization_config").filter(|q| !q.is_null()) else {
            return Ok(None);
        };
        let bad = |key: &str, want: &str, found: &Value| {
            Error::format(
                path,
                format!("`quantization_config.{key}`: expected {want}, found {found}"),
            )
        };
        let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("?");
        if method == "compressed-tensors" {
            return super::compressed_tensors::read(q, path).map(Some);
        }
        if method != "fp8" {
            return Err(Error::unsupported(format!(
                "{}: a quantized checkpoint (`quantization_config`, quant_method `{method}`): this engine reads F32, F16 and BF16 safetensors and FP8 ones (quant_method `fp8`, or `compressed-tensors` with FP8 weights); use the BF16 release, or a GGUF, of the same model",
                path.display()
            )));
        }
        // DeepSeek-V3's config names the element format; FineGrainedFP8Config ignores it.
        if let Some(fmt) = q.get("fmt").filter(|f| !f.is_null()) {
            if fmt.as_str() != Some("e4m3") {
                return Err(bad("fmt", "\"e4m3\"", fmt));
            }
        }
        // Either scheme: a static one's activation scales are for FP8 kernels, and are left
        // out with the dequantized weights (as transformers' dequantized model leaves them).
        if let Some(scheme) = q.get("activation_scheme").filter(|s| !s.is_null()) {
            let lower = scheme.as_str().map(str::to_ascii_lowercase);
            if !matches!(lower.as_deref(), Some("dynamic" | "static")) {
                return Err(bad(
                    "activation_scheme",
                    "\"dynamic\" or \"static\"",
                    scheme,
                ));
            }
        }
        let block = match q.get("weight_block_size") {
            None | Some(Value::Null) => None,
            Some(b) => Some(two_sizes(b).ok_or_else(|| {
                bad(
                    "weight_block_size",
                    "two positive whole numbers [rows, columns], or null",
                    b,
                )
            })?),
        };
        if let Some(f) = q.get("scale_fmt").filter(|f| !f.is_null()) {
            // ue8m0 scales are powers of two; the stored dtype says how to read them (F32 and
            // F8_E8M0 are read; DeepSeek-V3.1 stores F32).
            if !matches!(f.as_str(), Some("float" | "ue8m0")) {
                return Err(bad("scale_fmt", "\"float\" or \"ue8m0\"", f));
            }
        }
        if let Some(e) = q.get("expert_dtype").filter(|e| !e.is_null()) {
            if e.as_str() != Some("fp8") {
                return Err(Error::unsupported(format!(
                    "{}: `quantization_config.expert_dtype` {e}: only FP8 weights are read (FP4-packed experts belong to mixture-of-experts models, which this engine does not run)",
                    path.display()
                )));
            }
        }
        Ok(Some(Fp8Quant {
            block,
            round_to_scale_dtype: false,
        }))
    }

    /// A short description for logs and `inspect`: `FP8 (e4m3, 128×128 blocks)`.
    pub fn describe(&self) -> String {
        match self.block {
            Some([r, c]) => format!("FP8 (e4m3, {r}×{c} blocks)"),
            None => "FP8 (e4m3, one scale per tensor or per block of its grid)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(q: Value) -> Result<Option<Fp8Quant>> {
        Fp8Quant::of_config(
            &json!({ "quantization_config": q }),
            Path::new("config.json"),
        )
    }

    fn refused(q: Value, want: &str) {
        let e = read(q).unwrap_err().to_string();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }

    #[test]
    fn fp8_configs_are_read() {
        assert_eq!(read(Value::Null).unwrap(), None);
        // Qwen3-8B-FP8's.
        let qwen3 = json!({"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                           "weight_block_size": [128, 128]});
        assert_eq!(
            read(qwen3).unwrap(),
            Some(Fp8Quant {
                block: Some([128, 128]),
                round_to_scale_dtype: false,
            })
        );
        // Ministral 3's: one scale per tensor, static activations.
        let ministral = json!({"activation_scheme": "static", "dequantize": false,
                               "modules_to_not_convert": ["model.vision_tower", "lm_head"],
                               "quant_method": "fp8", "weight_block_size": null});
        let m = read(ministral).unwrap().unwrap();
        assert_eq!(m.block, None);
        assert_eq!(
            m.describe(),
            "FP8 (e4m3, one scale per tensor or per block of its grid)"
        );
        // AutoFP8's: no block size (its scales are per tensor); the scheme is case-blind.
        let d = read(json!({"quant_method": "fp8", "activation_scheme": "Static"}));
        assert_eq!(d.unwrap().unwrap().block, None);
        let ue8m0 =
            json!({"quant_method": "fp8", "scale_fmt": "ue8m0", "weight_block_size": [1, 32]});
        assert_eq!(read(ue8m0).unwrap().unwrap().block, Some([1, 32]));
    }

    #[test]
    fn other_methods_and_bad_values_are_refused() {
        refused(
            json!({"quant_method": "gptq", "bits": 4}),
            "quant_method `gptq`): this engine reads F32, F16 and BF16 safetensors and FP8 ones (quant_method `fp8`, or `compressed-tensors` with FP8 weights)",
        );
        refused(json!({"bits": 4}), "quant_method `?`");
        refused(
            json!({"quant_method": "fp8", "fmt": "e5m2"}),
            "`quantization_config.fmt`: expected \"e4m3\", found \"e5m2\"",
        );
        refused(
            json!({"quant_method": "fp8", "activation_scheme": "token"}),
            "`quantization_config.activation_scheme`: expected \"dynamic\" or \"static\"",
        );
        for b in [
            json!([128]),
            json!([128, 0]),
            json!([128, -1]),
            json!("128"),
            json!([1, 2, 3]),
        ] {
            refused(
                json!({"quant_method": "fp8", "weight_block_size": b}),
                "`quantization_config.weight_block_size`: expected two positive whole numbers",
            );
        }
        refused(
            json!({"quant_method": "fp8", "scale_fmt": "e4m3"}),
            "`quantization_config.scale_fmt`",
        );
        refused(
            json!({"quant_method": "fp8", "expert_dtype": "fp4"}),
            "`quantization_config.expert_dtype` \"fp4\"",
        );
    }
}
