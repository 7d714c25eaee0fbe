//! Apertus's checkpoints (`ApertusForCausalLM`): its norms' names, renamed to Llama's at load,
//! and each layer's xIELU constants, from an HF checkpoint's `mlp.act_fn` tensors or from a
//! GGUF's `xielu.*` metadata, where llama.cpp's converter writes the same values.

use std::collections::BTreeMap;
use std::path::Path;

use super::gguf::GgufValue;
use crate::backend::Xielu;
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, WeightMap};

/// transformers' `ApertusDecoderLayer` norm names, renamed to Llama's at load
/// ([`super::renamed::rename_checkpoint`]).
pub(super) struct Apertus;

impl super::renamed::OwnNames for Apertus {
    const FAMILY: &'static str = "Apertus";
    const PAIRS: &'static [(&'static str, &'static str)] = &[
        (".attention_layernorm.", ".input_layernorm."),
        (".feedforward_layernorm.", ".post_attention_layernorm."),
    ];
}

/// The learned constants of `XIELUActivation`, as a checkpoint stores them under
/// `model.layers.<i>.mlp.act_fn.`: the parameters `alpha_p` and `alpha_n` (`[1]`, before their
/// softplus) and the buffers `beta` and `eps` (0-dimensional); a GGUF's `xielu.<name>` key.
const CONSTANTS: [(&str, &[usize]); 4] = [
    ("alpha_p", &[1]),
    ("alpha_n", &[1]),
    ("beta", &[]),
    ("eps", &[]),
];

/// Layer `layer`'s xIELU constants ([`Xielu::from_learned`]), taken from `w`.
///
/// # Errors
/// A constant missing, of another shape, or not finite (named as the file names it).
pub fn xielu_constants(w: &mut WeightMap, layer: usize) -> Result<Xielu> {
    let mut v = [0.0f64; 4];
    for (slot, (name, shape)) in v.iter_mut().zip(CONSTANTS) {
        let full = format!("model.layers.{layer}.mlp.act_fn.{name}");
        let x = w.take(&full, shape)?.values()[0];
        if !x.is_finite() {
            return Err(Error::format(
                &w.origin,
                format!(
                    "tensor {} is {x}: expected a finite number",
                    w.display_name(&full)
                ),
            ));
        }
        *slot = x.into();
    }
    Ok(Xielu::from_learned(v[0], v[1], v[2], v[3]))
}

/// An `apertus` GGUF's weights made a checkpoint's: its xIELU constants as the tensors an HF
/// checkpoint holds, put into `w` from llama.cpp's keys `xielu.alpha_p`, `xielu.alpha_n`,
/// `xielu.beta` and `xielu.eps` (no architecture prefix), each an array of one number per layer
/// or one number for every layer (llama.cpp's `get_key_or_arr`), holding the checkpoint's values
/// (its converter's `.item()` of each); any number type is read, where llama.cpp takes F32
/// only. The query and key norms' biases, which llama.cpp's loader takes as optional and its
/// graph never adds, are dropped with a warning.
///
/// # Errors
/// A key missing, an array of another length than `apertus.block_count`, or a value that is
/// not a number finite in f32.
pub fn prepare_gguf(
    meta: &BTreeMap<String, GgufValue>,
    path: &Path,
    w: &mut WeightMap,
) -> Result<()> {
    let bad = |m: String| Error::format(path, m);
    let layers = (meta.get("apertus.block_count").and_then(GgufValue::as_u64))
        .ok_or_else(|| bad("missing metadata `apertus.block_count`".into()))?
        as usize;
    for (name, shape) in CONSTANTS {
        let key = format!("xielu.{name}");
        let values: Vec<f64> = match meta.get(&key) {
            None => {
                return Err(bad(format!(
                    "missing metadata `{key}` (Apertus's xIELU constants, one per layer)"
                )))
            }
            Some(GgufValue::Array(a)) if a.len() != layers => {
                return Err(bad(format!(
                    "metadata `{key}` holds {} values; expected one per layer ({layers})",
                    a.len()
                )))
            }
            Some(GgufValue::Array(a)) => a.iter().map(GgufValue::as_f64).collect::<Option<_>>(),
            Some(one) => one.as_f64().map(|x| vec![x; layers]),
        }
        .filter(|v| v.iter().all(|&x| (x as f32).is_finite()))
        .ok_or_else(|| bad(format!("metadata `{key}`: expected finite numbers")))?;
        for (i, x) in values.into_iter().enumerate() {
            let t = HostTensor::new(shape.to_vec(), vec![x as f32]);
            w.insert(format!("model.layers.{i}.mlp.act_fn.{name}"), t, path)?;
        }
    }
    let unread: Vec<String> = (w.names())
        .filter(|n| n.ends_with("_norm.bias") && n.contains(".self_attn."))
        .map(String::from)
        .collect();
    if let Some(first) = unread.first() {
        tracing::warn!(
            "{}: {} query/key norm biases left unread, as llama.cpp's `apertus` graph leaves them (e.g. {})",
            path.display(),
            unread.len(),
            w.display_name(first)
        );
    }
    for n in &unread {
        w.remove(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(entries: &[(&str, GgufValue)]) -> BTreeMap<String, GgufValue> {
        let mut m: BTreeMap<String, GgufValue> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        m.insert("apertus.block_count".into(), GgufValue::U32(2));
        m
    }

    /// Arrays per layer and a scalar for all, as llama.cpp's get_key_or_arr reads them, into
    /// the checkpoint's shapes; the refusals name the key.
    #[test]
    fn gguf_constants() {
        use GgufValue::{Array, Str, F32, I32};
        let arr = |a: f32, b: f32| Array(vec![F32(a), F32(b)]);
        let ok = meta(&[
            ("xielu.alpha_p", arr(0.5, 1.5)),
            ("xielu.alpha_n", arr(-0.5, 2.0)),
            ("xielu.beta", F32(0.5)),
            ("xielu.eps", arr(-1e-6, -0.25)),
        ]);
        let mut w = WeightMap::new("m.gguf");
        prepare_gguf(&ok, Path::new("m.gguf"), &mut w).unwrap();
        let c1 = xielu_constants(&mut w, 1).unwrap();
        assert_eq!(c1, Xielu::from_learned(1.5, 2.0, 0.5, -0.25));
        assert_eq!(xielu_constants(&mut w, 0).unwrap().eps, -1e-6);
        let e = |m: &BTreeMap<String, GgufValue>| {
            let mut w = WeightMap::new("m.gguf");
            prepare_gguf(m, Path::new("m.gguf"), &mut w)
                .unwrap_err()
                .to_string()
        };
        let mut short = ok.clone();
        short.insert("xielu.alpha_n".into(), Array(vec![F32(1.0)]));
        assert!(e(&short).contains("`xielu.alpha_n` holds 1 values; expected one per layer (2)"));
        let mut gone = ok.clone();
        gone.remove("xielu.eps");
        assert!(e(&gone).contains("missing metadata `xielu.eps`"));
        let mut text = ok.clone();
        text.insert("xielu.beta".into(), Str("half".into()));
        assert!(e(&text).contains("`xielu.beta`: expected finite numbers"));
        let mut inf = ok.clone();
        inf.insert("xielu.alpha_p".into(), arr(f32::INFINITY, 1.0));
        assert!(e(&inf).contains("`xielu.alpha_p`: expected finite numbers"));
        // A negative integer is a number too.
        let mut int = ok;
        int.insert("xielu.eps".into(), I32(-1));
        let mut w = WeightMap::new("m.gguf");
        prepare_gguf(&int, Path::new("m.gguf"), &mut w).unwrap();
        assert_eq!(xielu_constants(&mut w, 1).unwrap().eps, -1.0);
    }
}
