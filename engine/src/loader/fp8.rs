//! FP8 checkpoints ([`Fp8Quant`]), dequantized to f32 at load: each F8_E4M3 `weight` times
//! its `weight_scale_inv`, one scale per block of the weight or one for the whole tensor, as
//! transformers' `Fp8Dequantize` multiplies them where it has no FP8 GPU (the product in f32).
//! The model is then built as from a BF16 release; LoRA adapters apply to the dequantized
//! weights, as PEFT applies them to transformers' dequantized model.
//!
//! The element formats are the OCP 8-bit floating point ones (arXiv 2209.05433): E4M3 as
//! PyTorch's `float8_e4m3fn` (no infinities; `S.1111.111` is NaN), E5M2 as IEEE half's top
//! byte, and E8M0 (`float8_e8m0fnu`, DeepSeek's `ue8m0` scales) a bare biased exponent.

use std::collections::HashMap;
use std::path::Path;

use crate::config::Fp8Quant;
use crate::error::{Error, Result};
use crate::tensor::WeightMap;

/// `2^k` for `k` in f32's normal range, exactly.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// One F8_E4M3 (`float8_e4m3fn`) byte as f32, exactly: exponent bias 7, three mantissa bits,
/// subnormals below 2^-6, NaN for `0x7f` / `0xff`, no infinities (largest 448).
pub fn e4m3_to_f32(b: u8) -> f32 {
    let (e, m) = (i32::from((b >> 3) & 0xf), i32::from(b & 7));
    let magnitude = match (e, m) {
        (15, 7) => f32::NAN,
        (0, _) => m as f32 * pow2(-9),
        _ => (8 + m) as f32 * pow2(e - 10),
    };
    if b & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// One F8_E5M2 (`float8_e5m2`) byte as f32, exactly: exponent bias 15, two mantissa bits,
/// infinities and NaNs as IEEE's.
pub fn e5m2_to_f32(b: u8) -> f32 {
    half::f16::from_bits(u16::from(b) << 8).to_f32()
}

/// One F8_E8M0 (`float8_e8m0fnu`) byte as f32, exactly: `2^(b - 127)`, NaN for `0xff`.
pub fn e8m0_to_f32(b: u8) -> f32 {
    match b {
        0xff => f32::NAN,
        // 2^-127 is below f32's normal range: its one mantissa bit.
        0 => f32::from_bits(1 << 22),
        _ => f32::from_bits(u32::from(b) << 23),
    }
}

/// A quantized weight's scale: transformers' name, then AutoFP8's (per tensor, as vLLM reads
/// it); both multiply the stored values.
const SCALES: [&str; 2] = ["weight_scale_inv", "weight_scale"];

/// Scales an FP8 checkpoint may carry for an FP8 KV cache or attention (vLLM's `k_scale`,
/// `v_scale`, `q_scale`, the older `kv_scale` and AutoFP8's `k_proj.output_scale`): this
/// engine's cache holds the keys and values unquantized, so none applies.
const CACHE_SCALES: [&str; 5] = [
    ".k_scale",
    ".v_scale",
    ".q_scale",
    ".kv_scale",
    ".output_scale",
];

/// A scale stored as a 16-bit float: compressed-tensors forms the product in that dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HalfScale {
    /// BF16.
    Bf16,
    /// F16 (IEEE half).
    F16,
}

impl HalfScale {
    /// `v` rounded to this dtype (to nearest, ties to even, as PyTorch rounds a product).
    fn round(self, v: f32) -> f32 {
        match self {
            HalfScale::Bf16 => half::bf16::from_f32(v).to_f32(),
            HalfScale::F16 => half::f16::from_f32(v).to_f32(),
        }
    }
}

/// How a checkpoint stored the tensors [`dequantize`] reads (the map holds their values as f32
/// either way): the names of the 8-bit float tensors, and the scales stored as 16-bit floats.
#[derive(Debug, Default)]
pub struct Stored {
    /// Tensors stored as F8_E4M3 or F8_E5M2.
    pub float8: Vec<String>,
    /// Scales (`*weight_scale*`) stored as BF16 or F16.
    pub half_scales: HashMap<String, HalfScale>,
}

/// What [`dequantize`] did, for the load's log line.
#[derive(Debug, Default, PartialEq)]
pub struct Dequantized {
    /// Weights multiplied out.
    pub weights: usize,
    /// `activation_scale`s / `input_scale`s dropped (a static activation scheme's).
    pub activation_scales: usize,
    /// KV-cache and attention scales dropped ([`CACHE_SCALES`]).
    pub cache_scales: usize,
}

/// The file that holds `name` (for messages), else the map's origin.
fn file_of<'a>(map: &'a WeightMap, name: &str) -> &'a Path {
    map.file_of(name).unwrap_or(&map.origin)
}

/// Multiplies out every FP8 weight of `map`: `stored.float8` names the tensors that were stored
/// as an 8-bit float (now in `map` as their exact f32 values), `quant` is the config's
/// declaration (`None`: it declared none). The product is f32, rounded to a 16-bit scale's dtype
/// where [`Fp8Quant::round_to_scale_dtype`] says so. Each scale `<stem>.weight_scale_inv` (or `<stem>.weight_scale`)
/// is removed once applied, as are the `activation_scale` / `input_scale` of quantized linears
/// and the checkpoint's KV-cache scales.
///
/// A weight `[rows, cols]` takes a scale of one value, or `[ceil(rows / r), ceil(cols / c)]`
/// values for `weight_block_size` `[r, c]` (where the config gives none, the block that divides
/// the weight into the scale's grid, as transformers derives it).
///
/// # Errors
/// An FP8 tensor in a checkpoint that declares no FP8 quantization, one that is not a 2-D
/// `weight`, a missing scale, a scale of the wrong shape or one whose product overflows, and a
/// scale with no FP8 weight: each names the tensor and its file.
pub fn dequantize(
    map: &mut WeightMap,
    quant: Option<&Fp8Quant>,
    stored: &Stored,
) -> Result<Dequantized> {
    let mut done = Dequantized::default();
    let mut float8 = stored.float8.clone();
    float8.sort();
    if let Some(scale) = float8
        .iter()
        .find(|n| SCALES.iter().any(|s| n.ends_with(s)))
    {
        return Err(Error::format(
            file_of(map, scale),
            format!("scale `{scale}` is stored as an 8-bit float (F8_E4M3 or F8_E5M2): scales are F32, BF16, F16 or F8_E8M0"),
        ));
    }
    for name in &float8 {
        let Some(quant) = quant else {
            return Err(Error::format(
                file_of(map, name),
                format!("tensor `{name}` is an 8-bit float, but config.json declares no FP8 `quantization_config` (quant_method `fp8`), so its scales are unknown"),
            ));
        };
        done.activation_scales += dequantize_one(map, name, quant, stored)?;
        done.weights += 1;
    }
    let stray = (map.names()).find_map(|n| {
        let stem = SCALES.iter().find_map(|s| n.strip_suffix(s))?;
        Some((n.to_string(), format!("{stem}weight")))
    });
    if let Some((stray, weight)) = stray {
        return Err(Error::format(
            file_of(map, &stray),
            format!("scale `{stray}` belongs to no FP8 weight (`{weight}` is absent or not stored as an 8-bit float)"),
        ));
    }
    if quant.is_some() {
        let cache: Vec<String> = (map.names())
            .filter(|n| CACHE_SCALES.iter().any(|s| n.ends_with(s)))
            .map(String::from)
            .collect();
        for n in &cache {
            map.remove(n);
        }
        done.cache_scales = cache.len();
    }
    Ok(done)
}

/// Multiplies out FP8 weight `name` (as [`dequantize`] says), removing its scale and its
/// zero points, activation and input scales: the count of the latter two removed.
fn dequantize_one(
    map: &mut WeightMap,
    name: &str,
    quant: &Fp8Quant,
    stored: &Stored,
) -> Result<usize> {
    let file = file_of(map, name).to_path_buf();
    let Some(stem) = name.strip_suffix("weight") else {
        return Err(Error::format(
            &file,
            format!("tensor `{name}` is an 8-bit float but not a layer's `weight`: FP8 checkpoints quantize weights only"),
        ));
    };
    let [inv, plain] = SCALES.map(|s| format!("{stem}{s}"));
    let (scale_name, scale) = match (map.remove(&inv), map.remove(&plain)) {
        (Some(s), None) => (inv, s),
        (None, Some(s)) => (plain, s),
        (Some(_), Some(_)) => {
            return Err(Error::format(
                &file,
                format!("FP8 weight `{name}` has two scales, `{inv}` and `{plain}`: which one applies is not for the loader to guess"),
            ))
        }
        (None, None) => {
            return Err(Error::format(
                &file,
                format!("FP8 weight `{name}` has no scale `{inv}` (each quantized weight is stored with its `weight_scale_inv`, or an AutoFP8 checkpoint's `weight_scale`)"),
            ))
        }
    };
    // Every name in `stored.float8` was inserted, and only scales are removed before this.
    let w = map.get_mut(name).ok_or_else(|| {
        Error::format(
            &file,
            format!("FP8 weight `{name}` is not among the tensors read"),
        )
    })?;
    let &[rows, cols] = &w.shape[..] else {
        return Err(Error::format(
            &file,
            format!(
                "FP8 weight `{name}` has shape {:?}: expected a matrix [rows, columns]",
                w.shape
            ),
        ));
    };
    let (block, grid_cols) = if scale.data.len() == 1 {
        ([rows.max(1), cols.max(1)], 1)
    } else {
        block_of(&scale.shape, rows, cols, quant.block).map_err(|want| {
            Error::format(
                &file,
                format!(
                    "`{scale_name}` has shape {:?}, but FP8 weight `{name}` [{rows}, {cols}] needs {want}",
                    scale.shape
                ),
            )
        })?
    };
    let round = (stored.half_scales.get(&scale_name)).filter(|_| quant.round_to_scale_dtype);
    for (r, row) in w.data.chunks_exact_mut(cols.max(1)).enumerate() {
        let scales = &scale.data[(r / block[0]) * grid_cols..];
        for (c, v) in row.iter_mut().enumerate() {
            *v *= scales[c / block[1]];
            if let Some(h) = round {
                *v = h.round(*v);
            }
        }
    }
    // Stored values and scales are finite (the map refuses others); their product may not be.
    if let Some(bad) = w.data.iter().find(|v| !v.is_finite()) {
        return Err(Error::format(
            &file,
            format!(
                "FP8 weight `{name}` times its `{scale_name}` gives {bad}: the scales are corrupt"
            ),
        ));
    }
    // A symmetric scheme's zero points (older llm-compressor wrote them) are all zero; any
    // other would shift every value, which these weights are not read with.
    let zero_point = format!("{stem}weight_zero_point");
    if let Some(v) = (map.remove(&zero_point)).and_then(|z| z.data.into_iter().find(|v| *v != 0.0))
    {
        return Err(Error::format(
            &file,
            format!("`{zero_point}` holds {v}: asymmetric (zero-point) weights are not read; only symmetric FP8 ones, whose zero points are all 0"),
        ));
    }
    let activation = ["activation_scale", "input_scale"]
        .iter()
        .filter(|extra| map.remove(&format!("{stem}{extra}")).is_some())
        .count();
    Ok(activation)
}

/// The block `[r, c]` each value of a `[grid rows, grid cols]` scale covers in a `[rows, cols]`
/// weight, and the grid's column count; `Err` says the grid the weight needs.
fn block_of(
    shape: &[usize],
    rows: usize,
    cols: usize,
    block: Option<[usize; 2]>,
) -> std::result::Result<([usize; 2], usize), String> {
    let [r, c] = match block {
        Some(b) => b,
        // transformers' rule without a configured block: the grid divides the weight.
        None => match shape {
            &[gr, gc] if gr > 0 && gc > 0 && rows.is_multiple_of(gr) && cols.is_multiple_of(gc) => {
                [(rows / gr).max(1), (cols / gc).max(1)]
            }
            _ => {
                return Err(
                    "one scale, or a [rows', cols'] grid that divides it (the config gives no one block size for every weight)"
                        .into(),
                )
            }
        },
    };
    let grid = [rows.div_ceil(r), cols.div_ceil(c)];
    if shape != grid {
        return Err(format!(
            "one scale, or {grid:?}: one per {r}×{c} block (`weight_block_size`)"
        ));
    }
    Ok(([r, c], grid[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::HostTensor;

    #[test]
    fn elements_decode_as_pytorch_does() {
        // Values from torch's float8_e4m3fn / float8_e5m2 / float8_e8m0fnu tables.
        let e4m3 = [
            (0x00, 0.0),
            (0x01, 2f32.powi(-9)),
            (0x07, 7.0 * 2f32.powi(-9)),
            (0x08, 2f32.powi(-6)),
            (0x38, 1.0),
            (0x3c, 1.5),
            (0x7e, 448.0),
            (0xb8, -1.0),
            (0xfe, -448.0),
        ];
        for (b, want) in e4m3 {
            assert_eq!(e4m3_to_f32(b), want, "e4m3 {b:#04x}");
        }
        assert!(e4m3_to_f32(0x7f).is_nan() && e4m3_to_f32(0xff).is_nan());
        assert_eq!(e4m3_to_f32(0x80).to_bits(), (-0.0f32).to_bits());
        assert_eq!(e5m2_to_f32(0x3c), 1.0);
        assert_eq!(e5m2_to_f32(0x7b), 57344.0);
        assert_eq!(e5m2_to_f32(0x01), 2f32.powi(-16));
        assert_eq!(e5m2_to_f32(0x7c), f32::INFINITY);
        assert!(e5m2_to_f32(0x7d).is_nan());
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(130), 8.0);
        assert_eq!(e8m0_to_f32(0), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32(254), 2f32.powi(127));
        assert!(e8m0_to_f32(255).is_nan());
        // Every finite e4m3 value round-trips through f32 as its byte (none is lost).
        let finite: Vec<f32> = (0..=255u8)
            .map(e4m3_to_f32)
            .filter(|v| !v.is_nan())
            .collect();
        assert_eq!(finite.len(), 254);
    }

    type Named = (String, Vec<usize>, Vec<f32>);

    fn map(tensors: &[Named]) -> WeightMap {
        let mut m = WeightMap::new("ckpt");
        for (n, shape, data) in tensors {
            let t = HostTensor::new(shape.clone(), data.clone());
            m.insert(n.clone(), t, Path::new("model.safetensors"))
                .unwrap();
        }
        m
    }

    const Q: &str = "model.layers.0.self_attn.q_proj.";

    fn quant(block: Option<[usize; 2]>) -> Fp8Quant {
        Fp8Quant {
            block,
            round_to_scale_dtype: false,
        }
    }

    fn float8(names: &[String]) -> Stored {
        Stored {
            float8: names.to_vec(),
            half_scales: HashMap::new(),
        }
    }

    /// Blocks of 2 rows × 2 columns over a 3×5 weight (partial blocks at both edges, as
    /// DeepSeek's ceil-divided grid has them): each value times its block's scale.
    #[test]
    fn block_scales_multiply_their_blocks() {
        let w: Vec<f32> = (0..15).map(|i| i as f32).collect();
        let s = vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let mut m = map(&[
            (format!("{Q}weight"), vec![3, 5], w),
            (format!("{Q}weight_scale_inv"), vec![2, 3], s),
            ("model.norm.weight".into(), vec![5], vec![1.0; 5]),
        ]);
        let q = quant(Some([2, 2]));
        let done = dequantize(&mut m, Some(&q), &float8(&[format!("{Q}weight")])).unwrap();
        assert_eq!(done.weights, 1);
        let got = &m.get_mut(&format!("{Q}weight")).unwrap().data;
        let want = [
            0.0, 1.0, 4.0, 6.0, 12.0, // row 0: scales 1 1 2 2 3
            5.0, 6.0, 14.0, 16.0, 27.0, // row 1
            100.0, 110.0, 240.0, 260.0, 420.0, // row 2: scales 10 10 20 20 30
        ];
        assert_eq!(got[..], want);
        assert!(!m.contains(&format!("{Q}weight_scale_inv")));
        assert!(m.contains("model.norm.weight"));
    }

    /// One scale per tensor (Ministral 3's), whatever the config's block; a static scheme's
    /// activation scale and a KV-cache scale go with it. Without a configured block, a grid that
    /// divides the weight gives the block (transformers' rule). AutoFP8's names are read.
    #[test]
    fn tensor_scales_and_derived_blocks() {
        let mut m = map(&[
            (format!("{Q}weight"), vec![2, 2], vec![1.0, -2.0, 0.5, 4.0]),
            (format!("{Q}weight_scale_inv"), vec![], vec![0.25]),
            (format!("{Q}activation_scale"), vec![], vec![3.0]),
            ("model.layers.0.self_attn.k_scale".into(), vec![], vec![2.0]),
        ]);
        let done =
            dequantize(&mut m, Some(&quant(None)), &float8(&[format!("{Q}weight")])).unwrap();
        assert_eq!(
            done,
            Dequantized {
                weights: 1,
                activation_scales: 1,
                cache_scales: 1,
            }
        );
        assert_eq!(m.names().count(), 1);
        let got = &m.get_mut(&format!("{Q}weight")).unwrap().data;
        assert_eq!(got[..], [0.25, -0.5, 0.125, 1.0]);
        let mut m = map(&[
            (format!("{Q}weight"), vec![2, 4], vec![1.0; 8]),
            (format!("{Q}weight_scale_inv"), vec![1, 2], vec![2.0, 3.0]),
        ]);
        dequantize(&mut m, Some(&quant(None)), &float8(&[format!("{Q}weight")])).unwrap();
        let got = &m.get_mut(&format!("{Q}weight")).unwrap().data;
        assert_eq!(got[..], [2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 3.0, 3.0]);
        // AutoFP8's names (as vLLM reads them): `weight_scale` and `input_scale`.
        let mut m = map(&[
            (format!("{Q}weight"), vec![1, 2], vec![2.0, -4.0]),
            (format!("{Q}weight_scale"), vec![1], vec![0.5]),
            (format!("{Q}input_scale"), vec![1], vec![0.1]),
        ]);
        let done =
            dequantize(&mut m, Some(&quant(None)), &float8(&[format!("{Q}weight")])).unwrap();
        assert_eq!((done.weights, done.activation_scales), (1, 1));
        assert_eq!(m.names().count(), 1);
        assert_eq!(m.get_mut(&format!("{Q}weight")).unwrap().data, [1.0, -2.0]);
    }

    /// compressed-tensors' product in a BF16 scale's dtype: rounded to BF16 (to nearest, ties
    /// to even); FineGrainedFP8's stays f32 with the same BF16 scale.
    #[test]
    fn half_scales_round_the_product_where_asked() {
        // 1.125 * (1 + 2^-7) = 1.125 + 1.125 * 2^-7: between two BF16 values.
        let scale = 1.0 + 2f32.powi(-7);
        let exact = 1.125 * scale;
        for (round, want) in [(true, half::bf16::from_f32(exact).to_f32()), (false, exact)] {
            let mut m = map(&[
                (format!("{Q}weight"), vec![1, 1], vec![1.125]),
                (format!("{Q}weight_scale"), vec![1, 1], vec![scale]),
            ]);
            let mut stored = float8(&[format!("{Q}weight")]);
            (stored.half_scales).insert(format!("{Q}weight_scale"), HalfScale::Bf16);
            let q = Fp8Quant {
                block: None,
                round_to_scale_dtype: round,
            };
            dequantize(&mut m, Some(&q), &stored).unwrap();
            assert_eq!(m.get_mut(&format!("{Q}weight")).unwrap().data, [want]);
        }
        assert_ne!(half::bf16::from_f32(exact).to_f32(), exact);
        assert_eq!(HalfScale::F16.round(1.0 + 2f32.powi(-12)), 1.0);
    }

    fn refused(tensors: &[Named], q: Option<Fp8Quant>, want: &str) {
        let mut m = map(tensors);
        let names: Vec<String> = (tensors.iter())
            .filter(|(n, _, _)| n.ends_with("weight"))
            .map(|(n, _, _)| n.clone())
            .collect();
        let e = dequantize(&mut m, q.as_ref(), &float8(&names))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}\nwanted: {want}");
        assert!(e.contains("model.safetensors"), "{e}");
    }

    #[test]
    fn bad_checkpoints_are_named() {
        let w = |shape: Vec<usize>| {
            (
                format!("{Q}weight"),
                shape.clone(),
                vec![4.0; shape.iter().product()],
            )
        };
        let s = |shape: Vec<usize>, v: f32| {
            let n = shape.iter().product::<usize>().max(1);
            (format!("{Q}weight_scale_inv"), shape, vec![v; n])
        };
        let block = Some(quant(Some([2, 2])));
        refused(
            &[w(vec![4, 4])],
            None,
            "declares no FP8 `quantization_config`",
        );
        refused(&[w(vec![4, 4])], block.clone(), "has no scale");
        refused(
            &[w(vec![4, 4]), s(vec![2, 3], 1.0)],
            block.clone(),
            "has shape [2, 3], but FP8 weight `model.layers.0.self_attn.q_proj.weight` [4, 4] needs one scale, or [2, 2]: one per 2×2 block",
        );
        refused(
            &[w(vec![4, 4]), s(vec![3, 3], 1.0)],
            Some(quant(None)),
            "a [rows', cols'] grid that divides it",
        );
        refused(
            &[w(vec![4, 4]), s(vec![], f32::MAX)],
            block.clone(),
            "times its `model.layers.0.self_attn.q_proj.weight_scale_inv` gives inf: the scales are corrupt",
        );
        refused(
            &[w(vec![2, 2, 2]), s(vec![], 1.0)],
            block.clone(),
            "has shape [2, 2, 2]: expected a matrix",
        );
        refused(
            &[w(vec![4, 4]), s(vec![], 1.0), (format!("{Q}weight_scale"), vec![], vec![1.0])],
            block.clone(),
            "has two scales, `model.layers.0.self_attn.q_proj.weight_scale_inv` and `model.layers.0.self_attn.q_proj.weight_scale`",
        );
        let zp = |v: f32| (format!("{Q}weight_zero_point"), vec![], vec![v]);
        refused(
            &[w(vec![4, 4]), s(vec![], 1.0), zp(3.0)],
            block.clone(),
            "`model.layers.0.self_attn.q_proj.weight_zero_point` holds 3: asymmetric",
        );
        let mut m = map(&[w(vec![4, 4]), s(vec![], 1.0), zp(0.0)]);
        dequantize(&mut m, block.as_ref(), &float8(&[format!("{Q}weight")])).unwrap();
        assert_eq!(m.names().count(), 1);
        // A scale stored as an 8-bit float, named as the file holds it.
        let mut m = map(&[w(vec![4, 4]), s(vec![], 1.0)]);
        let names = [format!("{Q}weight"), format!("{Q}weight_scale_inv")];
        let e = dequantize(&mut m, block.as_ref(), &float8(&names)).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("is stored as an 8-bit float"),
            "{e}"
        );
        // A scale beside a weight stored in BF16.
        let mut m = map(&[w(vec![4, 4]), s(vec![], 1.0)]);
        let e = dequantize(&mut m, block.as_ref(), &Stored::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to no FP8 weight"), "{e}");
        let mut m = map(&[("model.embed_tokens.bias".into(), vec![2], vec![1.0; 2])]);
        let e = dequantize(
            &mut m,
            block.as_ref(),
            &float8(&["model.embed_tokens.bias".into()]),
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("not a layer's `weight`"));
    }
}
