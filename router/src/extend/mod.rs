//! Adding labels to a trained router without retraining its body (DLP-LoRA's extensibility
//! claim): the embedding table and hidden layers stay frozen, the old labels' output rows
//! stay as they are, and only the new labels' rows are fitted.
//!
//! The old tasks' data is not needed. `train-router` stores, per label, the mean and covariance
//! of the last hidden layer's features over its training texts ([`stats`], in [`STATS_FILE`]).
//! Extension computes the new labels' features from their data, draws stand-ins for the old
//! labels from those Gaussians, and fits the new rows by
//! softmax cross-entropy over all labels with the old rows fixed: new rows learn to win on
//! their data and lose on the old labels' features. A convex problem, solved full-batch
//! with Adam in plain Rust (no autodiff needed); deterministic for a seed.

mod stats;

use std::collections::HashMap;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use stats::{example_features, label_stats};
pub use stats::{routed_texts, FeatureStats, Gaussian, LabelStats};

use crate::config::{DevMetrics, TrainingRecord};
use crate::data::Example;
use crate::model::{Dense, Router};
use crate::segment::split_sentences;
use crate::select::{select, softmax, SelectConfig};
use crate::RouterError;

/// The file of per-label feature statistics inside a router directory.
pub const STATS_FILE: &str = "router-stats.safetensors";

/// Settings of an extension.
#[derive(Debug, Clone, Serialize)]
pub struct ExtendConfig {
    /// Full-batch Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// L2 penalty on the new rows' weights.
    pub l2: f32,
    /// Most features per new label used for fitting (texts beyond are subsampled).
    pub max_per_label: usize,
    /// Draws per old label.
    pub replay_per_label: usize,
    /// Seed of subsampling and drawing.
    pub seed: u64,
    /// Draw a progress bar on stderr.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for ExtendConfig {
    fn default() -> Self {
        ExtendConfig {
            steps: 300,
            lr: 0.05,
            l2: 1e-4,
            max_per_label: 3000,
            replay_per_label: 1500,
            seed: 0,
            progress: false,
        }
    }
}

/// An extended router and its statistics.
pub struct Extended {
    /// The router with the new labels appended.
    pub router: Router,
    /// Statistics of every label, old and new.
    pub stats: FeatureStats,
    /// The new labels, in order.
    pub new_labels: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f32,
}

/// Appends the labels of `new` (sorted) to `router`, fitting only their output rows.
///
/// # Errors
/// No examples; a label that the router has already; statistics that do not match the
/// router; a router without hidden layers.
pub fn extend(
    router: &Router,
    stats: &FeatureStats,
    new: &[Example],
    cfg: &ExtendConfig,
) -> Result<Extended, RouterError> {
    let start = Instant::now();
    let old_labels = router.labels().to_vec();
    let weights = router.weights();
    if weights.layers.len() < 2 {
        return Err(RouterError::Data(
            "this router has no hidden layer; only routers with an MLP body can be extended".into(),
        ));
    }
    if stats.labels.len() != old_labels.len() {
        return Err(RouterError::Data(format!(
            "the feature statistics cover {} labels, the router has {}",
            stats.labels.len(),
            old_labels.len()
        )));
    }
    if new.is_empty() {
        return Err(RouterError::Data("no examples for the new labels".into()));
    }
    let new_labels = crate::data::labels_of(new);
    if let Some(l) = new_labels.iter().find(|l| old_labels.contains(l)) {
        return Err(RouterError::Data(format!(
            "label `{l}` is already one of the router's ({}); extension adds new labels only (retrain to change an existing one)",
            old_labels.join(", ")
        )));
    }
    let all: Vec<String> = old_labels.iter().chain(&new_labels).cloned().collect();
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let rows = example_features(router, new, &index)?;
    let dim = stats.dim;
    let (n_old, n_new) = (old_labels.len(), new_labels.len());
    let mut rng = StdRng::seed_from_u64(cfg.seed);

    // Training set: the new labels' features (subsampled evenly), old labels' draws.
    let mut xs: Vec<Vec<f32>> = Vec::new();
    let mut ys: Vec<usize> = Vec::new();
    let mut new_stats = Vec::with_capacity(n_new);
    for l in n_old..all.len() {
        new_stats.push(label_stats(&rows, l, dim));
        let mine: Vec<&Vec<f32>> = rows
            .iter()
            .filter(|(_, t)| t.0 == l)
            .map(|(f, _)| f)
            .collect();
        let step = (mine.len() as f64 / cfg.max_per_label as f64).max(1.0);
        let mut k = 0.0;
        while (k as usize) < mine.len() {
            xs.push(mine[k as usize].clone());
            ys.push(l);
            k += step;
        }
    }
    for (l, s) in stats.labels.iter().enumerate() {
        // Half the draws from each part (all from the whole texts when a label has no
        // sentences of its own).
        let parts: Vec<&Gaussian> = [&s.whole, &s.sentences]
            .into_iter()
            .filter(|g| g.count > 0)
            .collect();
        for g in &parts {
            for x in g.sample(cfg.replay_per_label / parts.len(), &mut rng) {
                xs.push(x);
                ys.push(l);
            }
        }
    }
    // Each label weighs the same in the loss, whatever its count.
    let mut per_label = vec![0usize; all.len()];
    ys.iter().for_each(|&l| per_label[l] += 1);
    let sample_w: Vec<f32> = ys
        .iter()
        .map(|&l| 1.0 / (per_label[l] as f32 * all.len() as f32))
        .collect();

    let last = weights.layers.last().expect("checked above");
    // Old logits are fixed: computed once.
    let old_logits: Vec<Vec<f32>> = xs
        .par_iter()
        .map(|x| crate::model::dense(last, x, false))
        .collect();
    let mut w = vec![0f32; n_new * dim];
    let mut b = vec![0f32; n_new];
    let (mut mw, mut vw) = (vec![0f32; w.len()], vec![0f32; w.len()]);
    let (mut mb, mut vb) = (vec![0f32; n_new], vec![0f32; n_new]);
    let bar = if cfg.progress {
        let bar = ProgressBar::new(cfg.steps as u64);
        bar.set_style(
            ProgressStyle::with_template("extending [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    for step in 1..=cfg.steps {
        // Gradients of the weighted cross-entropy w.r.t. the new rows, summed over rows.
        // Fixed chunks summed in order: the same seed gives the same router, whatever the
        // thread count or scheduling.
        let parts: Vec<(Vec<f32>, Vec<f32>, f64)> = (0..xs.len())
            .collect::<Vec<_>>()
            .par_chunks(512)
            .map(|idx| {
                let (mut gw, mut gb, mut loss) = (vec![0f32; n_new * dim], vec![0f32; n_new], 0f64);
                for &i in idx {
                    let (x, t, sw) = (&xs[i], ys[i], sample_w[i]);
                    let mut z = old_logits[i].clone();
                    for j in 0..n_new {
                        let row = &w[j * dim..(j + 1) * dim];
                        z.push(row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b[j]);
                    }
                    let p = softmax(&z);
                    loss -= f64::from(sw) * f64::from(p[t].max(1e-12)).ln();
                    for j in 0..n_new {
                        let g = sw * (p[n_old + j] - if t == n_old + j { 1.0 } else { 0.0 });
                        gb[j] += g;
                        gw[j * dim..(j + 1) * dim]
                            .iter_mut()
                            .zip(x)
                            .for_each(|(a, &xv)| *a += g * xv);
                    }
                }
                (gw, gb, loss)
            })
            .collect();
        let (mut gw, mut gb, mut loss) = (vec![0f32; n_new * dim], vec![0f32; n_new], 0f64);
        for (pw, pb, pl) in parts {
            gw.iter_mut().zip(&pw).for_each(|(x, y)| *x += y);
            gb.iter_mut().zip(&pb).for_each(|(x, y)| *x += y);
            loss += pl;
        }
        let t = step as i32;
        let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let adam = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], l2: f32| {
            for i in 0..p.len() {
                let gi = g[i] + l2 * p[i];
                m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                p[i] -= cfg.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            }
        };
        adam(&mut w, &gw, &mut mw, &mut vw, cfg.l2);
        adam(&mut b, &gb, &mut mb, &mut vb, 0.0);
        bar.inc(1);
        if step % 25 == 0 {
            bar.set_message(format!("loss {loss:.4}"));
        }
    }
    bar.finish_and_clear();

    // The new router: same body, the old rows untouched, the new rows appended.
    let mut new_weights = weights.clone();
    let out = new_weights.layers.last_mut().expect("checked above");
    *out = Dense {
        inputs: out.inputs,
        outputs: out.outputs + n_new,
        weight: out.weight.iter().chain(&w).copied().collect(),
        bias: out.bias.iter().chain(&b).copied().collect(),
    };
    let mut config = router.config().clone();
    config.labels = all.clone();
    config.num_params = crate::config::param_count(
        config.vocab_size,
        config.embed_dim,
        &config.hidden,
        all.len(),
    );
    let seconds = start.elapsed().as_secs_f32();
    config.trainings.push(TrainingRecord {
        kind: "extend".into(),
        labels: new_labels.clone(),
        examples: new.len(),
        seconds,
        settings: serde_json::to_value(cfg).ok(),
    });
    let extended = Router::from_parts(config, router.tokenizer().clone(), new_weights);
    let mut stats = stats.clone();
    stats.labels.extend(new_stats);
    Ok(Extended {
        router: extended,
        stats,
        new_labels,
        seconds,
    })
}

/// Top-1, loss, top-p(0.9) containment and mixture size of `router` on `dev` (whole texts),
/// and top-1 on their sentences.
pub fn dev_metrics(router: &Router, dev: &[Example]) -> Result<DevMetrics, RouterError> {
    let y = crate::metrics::truth_indices(router.labels(), dev)?;
    let texts: Vec<&str> = dev.iter().map(|e| e.text.as_str()).collect();
    let logits = router.logits(&texts)?;
    let sel = SelectConfig::default();
    let (mut loss, mut hits, mut contained, mut kept) = (0f64, 0usize, 0usize, 0usize);
    for (l, &t) in logits.iter().zip(&y) {
        let p = softmax(l);
        loss -= f64::from(p[t].max(1e-12)).ln();
        hits += (crate::select::ranked(&p)[0] == t) as usize;
        let s = select(&p, &sel);
        contained += s.iter().any(|&(i, _)| i == t) as usize;
        kept += s.len();
    }
    let (sent, ys): (Vec<&str>, Vec<usize>) = dev
        .iter()
        .zip(&y)
        .flat_map(|(e, &t)| {
            split_sentences(&e.text)
                .into_iter()
                .map(move |r| (&e.text[r], t))
        })
        .filter(|(s, _)| !s.trim().is_empty())
        .unzip();
    let sent_hits = router
        .logits(&sent)?
        .iter()
        .zip(&ys)
        .filter(|(l, &t)| crate::select::ranked(&softmax(l))[0] == t)
        .count();
    let n = dev.len().max(1) as f32;
    Ok(DevMetrics {
        examples: dev.len(),
        top1: hits as f32 / n,
        loss: (loss / f64::from(n)) as f32,
        topp_containment: contained as f32 / n,
        mean_adapters: kept as f32 / n,
        sentence_top1: sent_hits as f32 / sent.len().max(1) as f32,
        labels: Vec::new(),
    })
}
