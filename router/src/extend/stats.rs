//! Per-label statistics of the router's last hidden features: what extension keeps of the
//! original training instead of its data. One Gaussian per label for whole instructions and
//! one for their single sentences (what the router reads at inference; pooled together they
//! would make one broad cloud in which a label's tight cluster of whole instructions is lost).

use std::collections::HashMap;
use std::path::Path;

use rand::{rngs::StdRng, Rng};
use rayon::prelude::*;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::data::Example;
use crate::model::Router;
use crate::segment::split_sentences;
use crate::RouterError;

/// The names of label `i`'s Gaussian `part` (`whole` or `sentences`) in a statistics file
/// start with this (then `.mean`, `.cov`, `.count`).
fn tensor_prefix(i: usize, part: &str) -> String {
    format!("stats.{i}.{part}")
}

/// Mean and covariance of a set of features.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    /// Features they were computed from (0: none; mean and covariance are then zero).
    pub count: usize,
    /// `[dim]`
    pub mean: Vec<f32>,
    /// `[dim, dim]`, row-major, unbiased.
    pub cov: Vec<f32>,
}

/// One label's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStats {
    /// Whole instructions.
    pub whole: Gaussian,
    /// Single sentences of instructions that have two or more.
    pub sentences: Gaussian,
}

/// Per-label statistics of the last hidden layer's features, in the router's label order.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Feature width.
    pub dim: usize,
    /// One entry per router label.
    pub labels: Vec<LabelStats>,
}

/// What the router reads of an example: the whole text (`false`) and each of its sentences
/// (`true`) when it has two or more.
pub fn routed_texts(text: &str) -> Vec<(&str, bool)> {
    let mut v = vec![(text, false)];
    let sentences = split_sentences(text);
    if sentences.len() > 1 {
        v.extend(
            sentences
                .into_iter()
                .map(|r| &text[r])
                .filter(|s| !s.trim().is_empty())
                .map(|s| (s, true)),
        );
    }
    v
}

/// A feature row and what it is: (label index, is a single sentence).
pub type Tagged = (Vec<f32>, (usize, bool));

/// Features of every routed text of `examples`, tagged with the example's label index (from
/// `label_index`) and whether the text is a single sentence.
pub fn example_features(
    router: &Router,
    examples: &[Example],
    label_index: &HashMap<&str, usize>,
) -> Result<Vec<Tagged>, RouterError> {
    let mut texts = Vec::new();
    let mut tags = Vec::new();
    for e in examples {
        let l = *label_index.get(e.label.as_str()).ok_or_else(|| {
            RouterError::Data(format!("label `{}` is not one of the router's", e.label))
        })?;
        for (t, sentence) in routed_texts(&e.text) {
            texts.push(t);
            tags.push((l, sentence));
        }
    }
    let feats: Vec<Vec<f32>> = texts
        .par_chunks(256)
        .map(|c| Ok(router.weights().features(&router.encode(c)?)))
        .collect::<Result<Vec<_>, RouterError>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(feats.into_iter().zip(tags).collect())
}

/// Label `l`'s statistics among `rows`.
pub fn label_stats(rows: &[Tagged], l: usize, dim: usize) -> LabelStats {
    let part = |sentence: bool| -> Vec<&Vec<f32>> {
        rows.iter()
            .filter(|(_, t)| *t == (l, sentence))
            .map(|(f, _)| f)
            .collect()
    };
    LabelStats {
        whole: gaussian(&part(false), dim),
        sentences: gaussian(&part(true), dim),
    }
}

/// Mean and unbiased covariance of `rows`, accumulated in f64.
fn gaussian(rows: &[&Vec<f32>], dim: usize) -> Gaussian {
    let n = rows.len();
    let mut mean = vec![0f64; dim];
    let mut cov = vec![0f64; dim * dim];
    if n > 0 {
        for r in rows {
            mean.iter_mut()
                .zip(r.iter())
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut c = vec![0f64; dim];
        for r in rows {
            c.iter_mut()
                .zip(r.iter().zip(&mean))
                .for_each(|(c, (&x, m))| *c = f64::from(x) - m);
            for i in 0..dim {
                if c[i] != 0.0 {
                    let ci = c[i];
                    cov[i * dim..(i + 1) * dim]
                        .iter_mut()
                        .zip(&c)
                        .for_each(|(v, &cj)| *v += ci * cj);
                }
            }
        }
        let denom = (n.max(2) - 1) as f64;
        cov.iter_mut().for_each(|v| *v /= denom);
    }
    Gaussian {
        count: n,
        mean: mean.iter().map(|&m| m as f32).collect(),
        cov: cov.iter().map(|&v| v as f32).collect(),
    }
}

impl Gaussian {
    /// `n` draws, clipped at 0 (the features come out of a ReLU).
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        let dim = self.mean.len();
        let l = cholesky(&self.cov, dim);
        (0..n)
            .map(|_| {
                let z: Vec<f64> = (0..dim).map(|_| normal(rng)).collect();
                (0..dim)
                    .map(|i| {
                        let v: f64 = (0..=i).map(|k| l[i * dim + k] * z[k]).sum();
                        (f64::from(self.mean[i]) + v).max(0.0) as f32
                    })
                    .collect()
            })
            .collect()
    }
}

/// Lower-triangular `L` with `L Lᵀ = cov + jitter·I` (f64; the jitter grows until the
/// factorisation succeeds, as covariances of ReLU features are often singular).
fn cholesky(cov: &[f32], dim: usize) -> Vec<f64> {
    let scale = (0..dim).map(|i| f64::from(cov[i * dim + i])).sum::<f64>() / dim.max(1) as f64;
    let mut jitter = 1e-6 * scale.max(1e-12);
    loop {
        let mut l = vec![0f64; dim * dim];
        let mut ok = true;
        'rows: for i in 0..dim {
            for j in 0..=i {
                let mut s = f64::from(cov[i * dim + j]) + if i == j { jitter } else { 0.0 };
                for k in 0..j {
                    s -= l[i * dim + k] * l[j * dim + k];
                }
                if i == j {
                    if s <= 0.0 {
                        ok = false;
                        break 'rows;
                    }
                    l[i * dim + i] = s.sqrt();
                } else {
                    l[i * dim + j] = s / l[j * dim + j];
                }
            }
        }
        if ok {
            return l;
        }
        jitter *= 10.0;
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl FeatureStats {
    /// Computes the statistics of every label of `router` from `examples` (each label must
    /// have at least one).
    pub fn compute(router: &Router, examples: &[Example]) -> Result<Self, RouterError> {
        let labels = router.labels();
        let index: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let rows = example_features(router, examples, &index)?;
        let dim = rows.first().map_or(0, |r| r.0.len());
        let stats = (0..labels.len())
            .into_par_iter()
            .map(|l| {
                let s = label_stats(&rows, l, dim);
                if s.whole.count == 0 {
                    return Err(RouterError::Data(format!(
                        "label `{}` has no examples to compute its feature statistics from",
                        labels[l]
                    )));
                }
                Ok(s)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FeatureStats { dim, labels: stats })
    }

    /// Writes `stats.<i>.<whole|sentences>.{mean,cov,count}` (i = label index), f32.
    pub fn save(&self, path: &Path) -> Result<(), RouterError> {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, s) in self.labels.iter().enumerate() {
            for (part, g) in [("whole", &s.whole), ("sentences", &s.sentences)] {
                let p = tensor_prefix(i, part);
                let d = self.dim;
                owned.push((format!("{p}.mean"), vec![d], f32s(&g.mean)));
                owned.push((format!("{p}.cov"), vec![d, d], f32s(&g.cov)));
                owned.push((format!("{p}.count"), vec![1], f32s(&[g.count as f32])));
            }
        }
        let views = owned
            .iter()
            .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| RouterError::Weights(e.to_string()))?;
        safetensors::serialize_to_file(views, None, path)
            .map_err(|e| RouterError::Weights(format!("{}: {e}", path.display())))
    }

    /// The tensors a statistics file of `labels` labels of width `dim` holds, F32 each:
    /// `stats.<i>.<whole|sentences>.{mean,cov,count}` with shapes `[dim]`, `[dim, dim]`, `[1]`.
    /// A file's header can be checked against it without reading the data.
    pub fn tensor_shapes(labels: usize, dim: usize) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::with_capacity(labels * 6);
        for i in 0..labels {
            for part in ["whole", "sentences"] {
                let p = tensor_prefix(i, part);
                v.push((format!("{p}.mean"), vec![dim]));
                v.push((format!("{p}.cov"), vec![dim, dim]));
                v.push((format!("{p}.count"), vec![1]));
            }
        }
        v
    }

    /// Reads the statistics of `labels` labels of width `dim`.
    pub fn load(path: &Path, labels: usize, dim: usize) -> Result<Self, RouterError> {
        let data = std::fs::read(path).map_err(|e| RouterError::io(path, e))?;
        let st = SafeTensors::deserialize(&data)
            .map_err(|e| RouterError::Weights(format!("{}: {e}", path.display())))?;
        let get = |name: String, shape: &[usize]| -> Result<Vec<f32>, RouterError> {
            let t = st.tensor(&name).map_err(|_| {
                RouterError::Weights(format!("{}: no tensor {name}", path.display()))
            })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(RouterError::Weights(format!(
                    "{}: {name} is {:?} {:?}, expected F32 {shape:?}",
                    path.display(),
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let gaussian = |p: String| -> Result<Gaussian, RouterError> {
            Ok(Gaussian {
                count: get(format!("{p}.count"), &[1])?[0] as usize,
                mean: get(format!("{p}.mean"), &[dim])?,
                cov: get(format!("{p}.cov"), &[dim, dim])?,
            })
        };
        let labels = (0..labels)
            .map(|i| {
                Ok(LabelStats {
                    whole: gaussian(tensor_prefix(i, "whole"))?,
                    sentences: gaussian(tensor_prefix(i, "sentences"))?,
                })
            })
            .collect::<Result<Vec<_>, RouterError>>()?;
        Ok(FeatureStats { dim, labels })
    }
}
