//! Router training with burn (feature `train`): autodiff on burn-ndarray (CPU) by default,
//! burn-wgpu with the `wgpu` feature.
//!
//! The network is trained on whole instructions *and* on random runs of their sentences (same
//! label), because at inference the router reads both: a whole prompt (per-request routing) or
//! one sentence (per-sentence routing). Generic sentences ("How many are left?") thus learn to
//! spread probability over the tasks they occur in, which is what top-p fusion wants.
//! Early stopping and temperature calibration use the dev split's whole instructions; every
//! dev measurement runs the exported plain-Rust model, the exact code path of inference.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{activation::relu, Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::config::{param_count, DevMetrics, RouterConfig, FORMAT, TOKENIZER_FILE};
use crate::data::{labels_of, Example};
use crate::model::{encode, Dense, Router, RouterWeights};
use crate::segment::split_sentences;
use crate::select::{select, softmax, SelectConfig};
use crate::RouterError;

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDevice {
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-wgpu on the default GPU adapter (needs the `wgpu` feature).
    Wgpu,
}

/// Hyper-parameters of a training run (all recorded in `router.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Token embedding width.
    pub embed_dim: usize,
    /// Hidden layer widths (three for the paper's 4-layer MLP).
    pub hidden: Vec<usize>,
    /// Tokens read per text.
    pub max_tokens: usize,
    /// Maximum passes over the training data.
    pub epochs: usize,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Dropout on the pooled vector and hidden activations.
    pub dropout: f64,
    /// Probability of dropping each token from a training text's mean (robustness to wording).
    pub token_dropout: f32,
    /// Probability that an example also contributes a random run of its sentences per epoch.
    pub chunk_prob: f32,
    /// Stop after this many epochs without a better dev loss.
    pub patience: usize,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Fit a softmax temperature on the dev split after training.
    pub calibrate: bool,
    /// Where to train.
    pub device: TrainDevice,
    /// Draw a progress bar and per-epoch lines on stderr.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            embed_dim: 96,
            hidden: vec![384, 384, 192],
            max_tokens: 256,
            epochs: 20,
            batch_size: 128,
            lr: 3e-3,
            weight_decay: 0.0,
            dropout: 0.1,
            token_dropout: 0.1,
            chunk_prob: 0.5,
            patience: 3,
            seed: 0,
            calibrate: true,
            device: TrainDevice::Ndarray,
            progress: false,
        }
    }
}

/// The widest hidden layer taken (a 16,384-square layer is 1 GB of f32); the embedding width
/// is at most a quarter of it.
const MAX_WIDTH: usize = 16_384;

impl TrainConfig {
    /// Checks every hyper-parameter's range before any data is read, so a bad value is an
    /// error naming it (burn asserts on some of them, and others train a useless router).
    ///
    /// # Errors
    /// [`RouterError::Config`] naming the first field out of range, the range expected and the
    /// value given.
    pub fn check(&self) -> Result<(), RouterError> {
        let bad = |field, expected, got| {
            Err(RouterError::Config {
                field,
                expected,
                got,
            })
        };
        // Past these the tables do not fit memory (a 49,152-token vocabulary at width 4,096
        // is 0.8 GB, with AdamW's two moments 2.4 GB; --embed-dim 1000000 asked for 196 GB
        // and aborted the process), and the paper's router is 5M parameters.
        if !(1..=MAX_WIDTH / 4).contains(&self.embed_dim) {
            return bad("embed_dim", "from 1 to 4096", self.embed_dim.to_string());
        }
        if let Some(i) = (self.hidden.iter()).position(|w| !(1..=MAX_WIDTH).contains(w)) {
            return bad(
                "hidden",
                "widths from 1 to 16384",
                format!("{} at position {}", self.hidden[i], i + 1),
            );
        }
        if self.hidden.len() > 16 {
            return bad(
                "hidden",
                "at most 16 layers",
                format!("{} layers", self.hidden.len()),
            );
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "at least 1", "0".into());
        }
        if self.epochs == 0 {
            return bad("epochs", "at least 1", "0".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "at least 1", "0".into());
        }
        if self.patience == 0 {
            return bad("patience", "at least 1", "0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "finite and > 0", self.lr.to_string());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                "finite and >= 0",
                self.weight_decay.to_string(),
            );
        }
        // burn's Dropout asserts 0 <= p < 1.
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "in [0, 1)", self.dropout.to_string());
        }
        if !(0.0..1.0).contains(&self.token_dropout) {
            return bad("token_dropout", "in [0, 1)", self.token_dropout.to_string());
        }
        if !(0.0..=1.0).contains(&self.chunk_prob) {
            return bad("chunk_prob", "in [0, 1]", self.chunk_prob.to_string());
        }
        if self.device == TrainDevice::Wgpu && !cfg!(feature = "wgpu") {
            return bad(
                "device",
                "ndarray in this build (wgpu training needs dlp-run built with `--features router-wgpu`)",
                "wgpu".into(),
            );
        }
        Ok(())
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f32,
    /// Dev loss (whole instructions, before calibration).
    pub dev_loss: f32,
    /// Dev top-1 (whole instructions).
    pub dev_top1: f32,
    /// Seconds since training began.
    pub seconds: f32,
}

/// A trained router and how it got there.
pub struct TrainOutcome {
    /// The router, with `config.tokenizer` = [`TOKENIZER_FILE`] (save it with
    /// [`Router::save_self_contained`]).
    pub router: Router,
    /// Per-epoch history.
    pub history: Vec<EpochLog>,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Wall-clock seconds, tokenisation included.
    pub seconds: f32,
}

#[derive(Module, Debug)]
struct Net {
    embed: Embedding,
    layers: Vec<Linear>,
    dropout: Dropout,
}

impl Net {
    fn new(vocab: usize, cfg: &TrainConfig, labels: usize, device: &Device) -> Self {
        // Small embeddings: the mean of a few N(0, 0.1) rows leaves the first layer in its
        // linear range, and Adam's fixed step size moves them quickly relative to their scale.
        let embed = EmbeddingConfig::new(vocab, cfg.embed_dim)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.1,
            })
            .init(device);
        let mut widths = vec![cfg.embed_dim];
        widths.extend(&cfg.hidden);
        widths.push(labels);
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Net {
            embed,
            layers,
            dropout: DropoutConfig::new(cfg.dropout).init(),
        }
    }

    /// `ids` `[B, T]`, `mask` `[B, T]` (1 = token counts) → logits `[B, labels]`.
    fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let [b, _] = ids.dims();
        let e = self.embed.forward(ids);
        let summed = (e * mask.clone().unsqueeze_dim::<3>(2)).sum_dim(1);
        let d = summed.dims()[2];
        let mut x = summed.reshape([b, d]) / mask.sum_dim(1).clamp_min(1.0);
        for (k, layer) in self.layers.iter().enumerate() {
            x = layer.forward(self.dropout.forward(x));
            if k + 1 < self.layers.len() {
                x = relu(x);
            }
        }
        x
    }

    /// Copies the parameters out into the plain-Rust inference layout.
    fn export(&self) -> RouterWeights {
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().expect("f32 parameters");
        let [vocab, dim] = self.embed.weight.dims();
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let [inputs, outputs] = l.weight.dims();
                // burn stores [in, out]; the file layout is [out, in].
                let weight = vec(l.weight.val().transpose());
                let bias = l.bias.as_ref().map_or(vec![0.0; outputs], |b| {
                    b.val()
                        .into_data()
                        .try_to_vec::<f32>()
                        .expect("f32 parameters")
                });
                Dense {
                    inputs,
                    outputs,
                    weight,
                    bias,
                }
            })
            .collect();
        RouterWeights {
            vocab,
            dim,
            embed: vec(self.embed.weight.val()),
            layers,
        }
    }
}

#[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; ndarray is faster here.
fn make_device(which: TrainDevice) -> Result<Device, RouterError> {
    match which {
        TrainDevice::Ndarray => Ok(Device::ndarray().autodiff()),
        #[cfg(feature = "wgpu")]
        TrainDevice::Wgpu => Ok(Device::wgpu(Default::default()).autodiff()),
        #[cfg(not(feature = "wgpu"))]
        TrainDevice::Wgpu => Err(RouterError::Train(
            "this build has no wgpu training: rebuild dlp-run with `--features router-wgpu` (dlp-router's `wgpu` feature)".into(),
        )),
    }
}

/// Trains a router on `train`, early-stopping and calibrating on `dev` (which must be
/// non-empty and use only labels that `train` has). Labels are the sorted distinct training
/// labels. Deterministic for a given seed, data and device.
pub fn train(
    tokenizer: Tokenizer,
    train: &[Example],
    dev: &[Example],
    cfg: &TrainConfig,
) -> Result<TrainOutcome, RouterError> {
    cfg.check()?;
    let start = Instant::now();
    let labels = labels_of(train);
    if train.is_empty() || dev.is_empty() {
        return Err(RouterError::Data(format!(
            "{} training and {} dev examples: need both",
            train.len(),
            dev.len()
        )));
    }
    let index = |l: &str| labels.iter().position(|x| x == l);
    let dev_unknown: std::collections::BTreeSet<&str> = dev
        .iter()
        .filter(|e| index(&e.label).is_none())
        .map(|e| e.label.as_str())
        .collect();
    if !dev_unknown.is_empty() {
        return Err(RouterError::Data(format!(
            "dev labels {dev_unknown:?} never occur in the training data"
        )));
    }
    let y_train: Vec<usize> = train
        .iter()
        .map(|e| index(&e.label).expect("own label"))
        .collect();
    let y_dev: Vec<usize> = dev
        .iter()
        .map(|e| index(&e.label).expect("checked"))
        .collect();
    let enc = |texts: &[&str]| encode(&tokenizer, texts, cfg.max_tokens);
    let train_ids = enc(&train.iter().map(|e| e.text.as_str()).collect::<Vec<_>>())?;
    let dev_ids = enc(&dev.iter().map(|e| e.text.as_str()).collect::<Vec<_>>())?;
    let sentences: Vec<_> = train.iter().map(|e| split_sentences(&e.text)).collect();
    let (dev_sent_texts, y_dev_sent): (Vec<&str>, Vec<usize>) = dev
        .iter()
        .zip(&y_dev)
        .flat_map(|(e, &y)| {
            split_sentences(&e.text)
                .into_iter()
                .map(move |r| (&e.text[r], y))
        })
        .filter(|(s, _)| !s.trim().is_empty())
        .unzip();
    let dev_sent_ids = enc(&dev_sent_texts)?;

    let vocab = tokenizer.get_vocab_size(true);
    let device = make_device(cfg.device)?;
    device.seed(cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut net = Net::new(vocab, cfg, labels.len(), &device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay)
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mut history = Vec::new();
    let mut best: Option<(usize, f32, RouterWeights)> = None;
    for epoch in 1..=cfg.epochs {
        // This epoch's items: every whole example, plus a random sentence run of some.
        let mut items: Vec<(Vec<u32>, usize)> = train_ids
            .iter()
            .cloned()
            .zip(y_train.iter().copied())
            .collect();
        let mut chunk_texts = Vec::new();
        let mut chunk_labels = Vec::new();
        for (i, ranges) in sentences.iter().enumerate() {
            if ranges.len() >= 2 && rng.random::<f32>() < cfg.chunk_prob {
                let len = rng.random_range(1..ranges.len());
                let first = rng.random_range(0..=ranges.len() - len);
                chunk_texts.push(&train[i].text[ranges[first].start..ranges[first + len - 1].end]);
                chunk_labels.push(y_train[i]);
            }
        }
        items.extend(enc(&chunk_texts)?.into_iter().zip(chunk_labels));
        items.shuffle(&mut rng);

        let steps = items.len().div_ceil(cfg.batch_size);
        let bar = progress_bar(cfg.progress, steps as u64, epoch, cfg.epochs);
        let mut loss_sum = 0.0f64;
        for batch in items.chunks(cfg.batch_size) {
            let (ids, mask, y) = make_batch(batch, cfg.token_dropout, &mut rng, &device);
            let loss = loss_fn.forward(net.forward(ids, mask), y);
            let lv: f32 = loss.clone().into_scalar();
            if !lv.is_finite() {
                return Err(RouterError::Train(format!(
                    "loss became {lv} in epoch {epoch}: lower --lr"
                )));
            }
            loss_sum += lv as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(cfg.lr, net, grads);
            bar.inc(1);
            bar.set_message(format!("loss {lv:.4}"));
        }
        bar.finish_and_clear();

        let weights = net.export();
        let (dev_loss, dev_top1) = loss_top1(&weights.logits(&dev_ids), &y_dev, 1.0);
        let log = EpochLog {
            epoch,
            train_loss: (loss_sum / steps.max(1) as f64) as f32,
            dev_loss,
            dev_top1,
            seconds: start.elapsed().as_secs_f32(),
        };
        if cfg.progress {
            eprintln!(
                "epoch {epoch:>2}/{}  train loss {:.4}  dev loss {:.4}  dev top-1 {:.2}%  ({:.0} s)",
                cfg.epochs,
                log.train_loss,
                log.dev_loss,
                100.0 * log.dev_top1,
                log.seconds
            );
        }
        history.push(log);
        if best.as_ref().is_none_or(|b| dev_loss < b.1) {
            best = Some((epoch, dev_loss, weights));
        } else if epoch - best.as_ref().expect("set").0 >= cfg.patience {
            if cfg.progress {
                eprintln!("early stop: no better dev loss for {} epochs", cfg.patience);
            }
            break;
        }
    }
    let (best_epoch, _, mut weights) =
        best.ok_or_else(|| RouterError::Train("--epochs must be at least 1".into()))?;

    let dev_logits = weights.logits(&dev_ids);
    let temperature = if cfg.calibrate {
        fit_temperature(&dev_logits, &y_dev)
    } else {
        1.0
    };
    let last = weights.layers.last_mut().expect("at least one layer");
    last.weight
        .iter_mut()
        .chain(last.bias.iter_mut())
        .for_each(|w| *w /= temperature);

    let dev_logits = weights.logits(&dev_ids);
    let (loss, top1) = loss_top1(&dev_logits, &y_dev, 1.0);
    let sel = SelectConfig::default();
    let (mut contained, mut kept) = (0usize, 0usize);
    for (l, &y) in dev_logits.iter().zip(&y_dev) {
        let s = select(&softmax(l), &sel);
        contained += s.iter().any(|&(i, _)| i == y) as usize;
        kept += s.len();
    }
    let (_, sentence_top1) = loss_top1(&weights.logits(&dev_sent_ids), &y_dev_sent, 1.0);
    let dev_metrics = DevMetrics {
        examples: dev.len(),
        top1,
        loss,
        topp_containment: contained as f32 / dev.len() as f32,
        mean_adapters: kept as f32 / dev.len() as f32,
        sentence_top1,
        // A dev set without some labels (train-router warns) measures the others only.
        labels: match (0..labels.len()).all(|i| y_dev.contains(&i)) {
            true => Vec::new(),
            false => (labels.iter().enumerate())
                .filter(|(i, _)| y_dev.contains(i))
                .map(|(_, l)| l.clone())
                .collect(),
        },
    };
    let seconds = start.elapsed().as_secs_f32();
    let config = RouterConfig {
        format: FORMAT.into(),
        num_params: param_count(vocab, cfg.embed_dim, &cfg.hidden, labels.len()),
        labels: labels.clone(),
        tokenizer: TOKENIZER_FILE.into(),
        vocab_size: vocab,
        embed_dim: cfg.embed_dim,
        hidden: cfg.hidden.clone(),
        max_tokens: cfg.max_tokens,
        temperature,
        dev: Some(dev_metrics),
        training: Some(serde_json::json!({
            "hyper_parameters": cfg,
            "train_examples": train.len(),
            "dev_examples": dev.len(),
            "epochs_run": history.len(),
            "best_epoch": best_epoch,
            "seconds": seconds,
            "history": history,
        })),
        trainings: vec![crate::config::TrainingRecord {
            kind: "scratch".into(),
            labels: labels.clone(),
            examples: train.len(),
            seconds,
            settings: None,
        }],
        feature_stats: None,
    };
    Ok(TrainOutcome {
        router: Router::from_parts(config, tokenizer, weights),
        history,
        best_epoch,
        seconds,
    })
}

fn progress_bar(show: bool, steps: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    let style =
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

/// Pads a batch to its longest text; the mask drops padding and, with probability
/// `token_dropout`, real tokens (never all of a text's).
fn make_batch(
    batch: &[(Vec<u32>, usize)],
    token_dropout: f32,
    rng: &mut StdRng,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2>, Tensor<1, Int>) {
    let t = batch
        .iter()
        .map(|(ids, _)| ids.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut ids = vec![0i64; batch.len() * t];
    let mut mask = vec![0f32; batch.len() * t];
    for (b, (row, _)) in batch.iter().enumerate() {
        for (k, &id) in row.iter().enumerate() {
            ids[b * t + k] = id as i64;
            mask[b * t + k] = if rng.random::<f32>() < token_dropout {
                0.0
            } else {
                1.0
            };
        }
        if !row.is_empty() && mask[b * t..b * t + row.len()].iter().all(|&m| m == 0.0) {
            mask[b * t + rng.random_range(0..row.len())] = 1.0;
        }
    }
    let y: Vec<i64> = batch.iter().map(|(_, y)| *y as i64).collect();
    (
        Tensor::from_data(TensorData::new(ids, [batch.len(), t]), device),
        Tensor::from_data(TensorData::new(mask, [batch.len(), t]), device),
        Tensor::from_data(TensorData::new(y, [batch.len()]), device),
    )
}

/// Mean cross-entropy and top-1 accuracy of `logits / temperature`.
fn loss_top1(logits: &[Vec<f32>], y: &[usize], temperature: f32) -> (f32, f32) {
    let (mut loss, mut hits) = (0f64, 0usize);
    for (l, &t) in logits.iter().zip(y) {
        let scaled: Vec<f32> = l.iter().map(|v| v / temperature).collect();
        let p = softmax(&scaled);
        loss -= (p[t].max(1e-12) as f64).ln();
        hits += (crate::select::ranked(&p)[0] == t) as usize;
    }
    let n = logits.len().max(1);
    ((loss / n as f64) as f32, hits as f32 / n as f32)
}

/// The temperature in 0.25..8 that minimises dev cross-entropy (golden-section search on
/// log T; the loss is unimodal in T for fixed logits).
fn fit_temperature(logits: &[Vec<f32>], y: &[usize]) -> f32 {
    let f = |lt: f32| loss_top1(logits, y, lt.exp()).0;
    let (mut a, mut b) = (0.25f32.ln(), 8f32.ln());
    let g = 0.618_034f32;
    for _ in 0..40 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}
