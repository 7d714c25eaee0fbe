//! `router.json`: what a router directory says about itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RouterError;

/// The `format` value this crate writes and reads.
pub const FORMAT: &str = "dlp-router/1";
/// File names inside a router directory.
pub const CONFIG_FILE: &str = "router.json";
/// The weights: `embed.weight` `[vocab, embed_dim]`, then `layers.K.weight` `[out, in]`
/// (PyTorch's `nn.Linear` layout) and `layers.K.bias` `[out]`, all f32.
pub const WEIGHTS_FILE: &str = "router.safetensors";
/// The tokenizer copy a trained router carries, so that its directory is self-contained.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Metrics measured on the dev split at the end of training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevMetrics {
    /// Number of dev examples (whole instructions).
    pub examples: usize,
    /// Top-1 accuracy on whole instructions.
    pub top1: f32,
    /// Mean cross-entropy (nats) on whole instructions, after temperature calibration.
    pub loss: f32,
    /// Share of dev examples whose true label is inside the top-p (p = 0.9) set.
    pub topp_containment: f32,
    /// Mean number of adapters in the top-p (p = 0.9) set.
    pub mean_adapters: f32,
    /// Top-1 accuracy on the single sentences of the dev instructions (each labelled with its
    /// instruction's label): what `--route-by sentence` faces.
    pub sentence_top1: f32,
    /// The labels of the dev texts where they are not all of the router's (an extension
    /// measured on its new labels' dev data alone); empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl DevMetrics {
    /// What the figures cover: `N texts`, and `of a, b only` where not every label's.
    pub fn texts(&self) -> String {
        match self.labels.is_empty() {
            true => format!("{} texts", self.examples),
            false => format!(
                "{} texts of {} only; eval-router gives the whole router's",
                self.examples,
                self.labels.join(", ")
            ),
        }
    }
}

/// One line, as `train-router`, `--extend` and `inspect` print it: `top-1 93.10%  top-p(0.9)
/// containment 99.00%  mean adapters 1.30  loss 0.2100  sentence top-1 80.00%`.
impl std::fmt::Display for DevMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "top-1 {:.2}%  top-p(0.9) containment {:.2}%  mean adapters {:.2}  loss {:.4}  sentence top-1 {:.2}%",
            100.0 * self.top1,
            100.0 * self.topp_containment,
            self.mean_adapters,
            self.loss,
            100.0 * self.sentence_top1
        )
    }
}

/// The contents of `router.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// One label per output logit, in logit order: the adapter names the router chooses among.
    pub labels: Vec<String>,
    /// The tokenizer.json: relative to the router directory, or absolute.
    pub tokenizer: String,
    /// Rows of the embedding table (the tokenizer's vocabulary, added tokens included).
    pub vocab_size: usize,
    /// Width of a token embedding, and of the pooled sentence vector.
    pub embed_dim: usize,
    /// Widths of the hidden layers (ReLU after each); the last layer maps to `labels.len()`.
    pub hidden: Vec<usize>,
    /// Tokens after the first `max_tokens` of a text are ignored (the same in training).
    pub max_tokens: usize,
    /// Total number of learned parameters.
    pub num_params: usize,
    /// The calibration temperature found on the dev split; already divided into the last
    /// layer's weights and bias, recorded here only to show what calibration did.
    #[serde(default = "one")]
    pub temperature: f32,
    /// Dev-split metrics from training, if any.
    #[serde(default)]
    pub dev: Option<DevMetrics>,
    /// Training hyper-parameters and data summary, free-form.
    #[serde(default)]
    pub training: Option<serde_json::Value>,
    /// Which labels came from which training, in order: a `scratch` training, then any
    /// `extend`s (`train-router --extend`). Empty for routers written before extension.
    #[serde(default)]
    pub trainings: Vec<TrainingRecord>,
    /// The per-label feature statistics file that extension needs (relative to the router
    /// directory); None for routers written before extension existed.
    #[serde(default)]
    pub feature_stats: Option<String>,
}

/// One training that gave a router labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// `scratch` (the body and the first labels) or `extend` (output rows only).
    pub kind: String,
    /// The labels it added, in logit order.
    pub labels: Vec<String>,
    /// Training examples it read.
    pub examples: usize,
    /// Wall-clock seconds.
    pub seconds: f32,
    /// Its settings, free-form.
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

fn one() -> f32 {
    1.0
}

impl RouterConfig {
    /// Reads `DIR/router.json` and checks its format tag and layer sizes.
    pub fn load(dir: &Path) -> Result<Self, RouterError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| RouterError::io(&path, e))?;
        let cfg: RouterConfig = serde_json::from_str(&text).map_err(|e| RouterError::Json {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        if cfg.format != FORMAT {
            return Err(RouterError::Json {
                path: path.display().to_string(),
                msg: format!("format is {:?}, this build reads {FORMAT:?}", cfg.format),
            });
        }
        // A zero width or token limit would route every text the same way (the mean of no
        // tokens), not fail.
        let zero = if cfg.labels.is_empty() {
            Some("labels: none")
        } else if cfg.max_tokens == 0 {
            Some("max_tokens is 0 (a router reads at least 1 token)")
        } else if cfg.embed_dim == 0 || cfg.vocab_size == 0 || cfg.hidden.contains(&0) {
            Some("a layer width (vocab_size, embed_dim or hidden) is 0")
        } else {
            None
        };
        if let Some(msg) = zero {
            return Err(RouterError::Json {
                path: path.display().to_string(),
                msg: msg.into(),
            });
        }
        // Two logits of one name: which adapter the second routes to is anyone's guess.
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = cfg.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(RouterError::Json {
                path: path.display().to_string(),
                msg: format!(
                    "labels: `{dup}` is given twice (each label names one adapter, one output \
                     of the router)"
                ),
            });
        }
        Ok(cfg)
    }

    /// Writes `DIR/router.json` (pretty-printed).
    pub fn save(&self, dir: &Path) -> Result<(), RouterError> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).expect("config serialises");
        std::fs::write(&path, text + "\n").map_err(|e| RouterError::io(&path, e))
    }

    /// The tokenizer path, resolved against the router directory when relative.
    pub fn tokenizer_path(&self, dir: &Path) -> PathBuf {
        let p = Path::new(&self.tokenizer);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    }

    /// Layer widths from the pooled vector to the logits: `[embed_dim, hidden.., labels]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.embed_dim];
        w.extend(&self.hidden);
        w.push(self.labels.len());
        w
    }
}

/// Parameter count of a router with these sizes (embedding table + every dense layer).
pub fn param_count(vocab: usize, embed_dim: usize, hidden: &[usize], labels: usize) -> usize {
    let mut widths = vec![embed_dim];
    widths.extend(hidden);
    widths.push(labels);
    vocab * embed_dim + widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum::<usize>()
}
