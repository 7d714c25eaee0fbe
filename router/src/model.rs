//! Plain-Rust router inference: tokenizer → embedding table → mean pool → MLP → logits.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tokenizers::Tokenizer;

use crate::config::{DevMetrics, RouterConfig, WEIGHTS_FILE};
use crate::select::{select, softmax, SelectConfig};
use crate::RouterError;

/// One dense layer, `y = W x + b`, with `W` row-major `[outputs, inputs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `outputs * inputs` weights, one row per output.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// The router's learned parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterWeights {
    /// Rows of the embedding table.
    pub vocab: usize,
    /// Embedding width.
    pub dim: usize,
    /// `vocab * dim` token embeddings, row-major.
    pub embed: Vec<f32>,
    /// The MLP; ReLU follows every layer but the last.
    pub layers: Vec<Dense>,
}

impl RouterWeights {
    /// Number of learned parameters.
    pub fn num_params(&self) -> usize {
        self.embed.len()
            + self
                .layers
                .iter()
                .map(|l| l.weight.len() + l.bias.len())
                .sum::<usize>()
    }

    /// Logits for a batch of token-id sequences. Ids outside the table are ignored; a sequence
    /// with no usable token pools to the zero vector (the router's prior, from the biases).
    pub fn logits(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let last = self.layers.last().expect("a router has at least one layer");
        self.features(batch)
            .iter()
            .map(|x| dense(last, x, false))
            .collect()
    }

    /// The last hidden layer's activations (the input of the output layer), one row per
    /// sequence: what router extension learns new labels from. With a single layer, the
    /// pooled embeddings.
    pub fn features(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let mut x: Vec<f32> = vec![0.0; batch.len() * self.dim];
        for (row, ids) in x.chunks_mut(self.dim).zip(batch) {
            let mut n = 0usize;
            for &id in ids {
                let id = id as usize;
                if id < self.vocab {
                    let e = &self.embed[id * self.dim..(id + 1) * self.dim];
                    row.iter_mut().zip(e).for_each(|(r, v)| *r += v);
                    n += 1;
                }
            }
            if n > 0 {
                let inv = 1.0 / n as f32;
                row.iter_mut().for_each(|r| *r *= inv);
            }
        }
        let mut width = self.dim;
        for layer in &self.layers[..self.layers.len() - 1] {
            let mut y = vec![0.0f32; batch.len() * layer.outputs];
            // Output-major loop: each weight row is read once per batch, from cache after that.
            for (o, w) in layer.weight.chunks_exact(layer.inputs).enumerate() {
                for (b, xb) in x.chunks_exact(layer.inputs).enumerate() {
                    y[b * layer.outputs + o] = (dot(w, xb) + layer.bias[o]).max(0.0);
                }
            }
            x = y;
            width = layer.outputs;
        }
        x.chunks_exact(width).map(<[f32]>::to_vec).collect()
    }

    /// Writes the weights as safetensors (see [`WEIGHTS_FILE`] for the names and layouts).
    pub fn save(&self, path: &Path) -> Result<(), RouterError> {
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![(
            "embed.weight".into(),
            vec![self.vocab, self.dim],
            bytes(&self.embed),
        )];
        for (k, l) in self.layers.iter().enumerate() {
            owned.push((
                format!("layers.{k}.weight"),
                vec![l.outputs, l.inputs],
                bytes(&l.weight),
            ));
            owned.push((format!("layers.{k}.bias"), vec![l.outputs], bytes(&l.bias)));
        }
        let views = owned
            .iter()
            .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| RouterError::Weights(e.to_string()))?;
        let meta = HashMap::from([("format".to_string(), crate::config::FORMAT.to_string())]);
        safetensors::serialize_to_file(views, Some(meta), path)
            .map_err(|e| RouterError::Weights(format!("{}: {e}", path.display())))
    }

    /// Reads weights written by [`RouterWeights::save`], checking every shape against `widths`
    /// (`[embed_dim, hidden.., labels]`) and `vocab`.
    pub fn load(path: &Path, vocab: usize, widths: &[usize]) -> Result<Self, RouterError> {
        let data = std::fs::read(path).map_err(|e| RouterError::io(path, e))?;
        let st = SafeTensors::deserialize(&data)
            .map_err(|e| RouterError::Weights(format!("{}: {e}", path.display())))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, RouterError> {
            let t = st.tensor(name).map_err(|_| {
                RouterError::Weights(format!("{}: no tensor {name}", path.display()))
            })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(RouterError::Weights(format!(
                    "{}: {name} is {:?} {:?}, router.json implies F32 {shape:?}",
                    path.display(),
                    t.dtype(),
                    t.shape()
                )));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            // A NaN weight routes every sentence to a uniform mixture without a word.
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(RouterError::Weights(format!(
                    "{}: {name} has a non-finite value ({}) at element {i}",
                    path.display(),
                    v[i]
                )));
            }
            Ok(v)
        };
        let dim = widths[0];
        let embed = get("embed.weight", &[vocab, dim])?;
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                Ok(Dense {
                    inputs: w[0],
                    outputs: w[1],
                    weight: get(&format!("layers.{k}.weight"), &[w[1], w[0]])?,
                    bias: get(&format!("layers.{k}.bias"), &[w[1]])?,
                })
            })
            .collect::<Result<Vec<_>, RouterError>>()?;
        Ok(RouterWeights {
            vocab,
            dim,
            embed,
            layers,
        })
    }
}

/// `W x + b` of one layer for one input, ReLU'd when `relu`.
pub fn dense(layer: &Dense, x: &[f32], relu: bool) -> Vec<f32> {
    layer
        .weight
        .chunks_exact(layer.inputs)
        .zip(&layer.bias)
        .map(|(w, b)| {
            let v = dot(w, x) + b;
            if relu {
                v.max(0.0)
            } else {
                v
            }
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent partial sums let the compiler vectorise without reassociation flags.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Loads a tokenizer.json: checked as JSON first, and a panic of the tokenizers library's
/// deserializers (some malformed inputs cause one) reported as an error.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, RouterError> {
    let bytes = std::fs::read(path).map_err(|e| RouterError::io(path, e))?;
    let fail = |e: String| RouterError::Tokenizer(format!("{}: {e}", path.display()));
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| fail(e.to_string()))?;
    match std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes)) {
        Ok(r) => r.map_err(|e| fail(e.to_string())),
        Err(_) => Err(fail("the tokenizers library failed on it".into())),
    }
}

/// Token ids of each text as the router sees them: surrounding whitespace trimmed, no special
/// tokens, at most `max_tokens`. Training and inference both go through this function.
pub fn encode(
    tokenizer: &Tokenizer,
    texts: &[&str],
    max_tokens: usize,
) -> Result<Vec<Vec<u32>>, RouterError> {
    let trimmed: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
    // A few texts (routing a request) are encoded on the caller's thread: `encode_batch` runs
    // on rayon's global pool, which a server's forward passes keep busy, so a request would
    // wait for a whole step. Training's thousands go in parallel.
    let enc = if trimmed.len() < 64 {
        trimmed
            .into_iter()
            .map(|t| tokenizer.encode(t, false))
            .collect::<Result<Vec<_>, _>>()
    } else {
        tokenizer.encode_batch(trimmed, false)
    }
    .map_err(|e| RouterError::Tokenizer(e.to_string()))?;
    Ok(enc
        .into_iter()
        .map(|e| {
            let ids = e.get_ids();
            ids[..ids.len().min(max_tokens)].to_vec()
        })
        .collect())
}

/// A loaded router: configuration, tokenizer and weights.
pub struct Router {
    config: RouterConfig,
    tokenizer: Tokenizer,
    weights: RouterWeights,
}

impl Router {
    /// Loads `DIR/router.json`, `DIR/router.safetensors` and the tokenizer that the config names.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, RouterError> {
        let dir = dir.as_ref();
        let config = RouterConfig::load(dir)?;
        let tokenizer_path = config.tokenizer_path(dir);
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let weights =
            RouterWeights::load(&dir.join(WEIGHTS_FILE), config.vocab_size, &config.widths())?;
        // Another tokenizer's ids index other rows (or none: they were dropped), and every
        // figure falls silently (top-1 99.9% -> 66.1% with the wrong tokenizer.json).
        let vocab = tokenizer.get_vocab_size(true);
        if vocab != config.vocab_size {
            return Err(RouterError::Tokenizer(format!(
                "{}: {vocab} tokens, but the router's embedding has {} rows: not the tokenizer it was trained with (put that one back, or train the router again)",
                tokenizer_path.display(),
                config.vocab_size
            )));
        }
        Ok(Router {
            config,
            tokenizer,
            weights,
        })
    }

    /// Assembles a router from parts (as training does before saving).
    pub fn from_parts(config: RouterConfig, tokenizer: Tokenizer, weights: RouterWeights) -> Self {
        Router {
            config,
            tokenizer,
            weights,
        }
    }

    /// Writes `router.json` and `router.safetensors` into `dir` (which must exist). The
    /// tokenizer is not copied: `config.tokenizer` must already point at it.
    pub fn save(&self, dir: &Path) -> Result<(), RouterError> {
        self.weights.save(&dir.join(WEIGHTS_FILE))?;
        self.config.save(dir)
    }

    /// Creates `dir`, copies the tokenizer file `tokenizer_src` into it as
    /// [`TOKENIZER_FILE`](crate::config::TOKENIZER_FILE), points the config at that copy and
    /// saves: the directory then loads anywhere on its own.
    pub fn save_self_contained(
        &mut self,
        dir: &Path,
        tokenizer_src: &Path,
    ) -> Result<(), RouterError> {
        std::fs::create_dir_all(dir).map_err(|e| RouterError::io(dir, e))?;
        let dst = dir.join(crate::config::TOKENIZER_FILE);
        // Copying a file onto itself would truncate it (re-saving into the same directory).
        let same = dst
            .canonicalize()
            .ok()
            .is_some_and(|d| tokenizer_src.canonicalize().ok() == Some(d));
        if !same {
            // The source may be read-only (a shared fixture) and copy() keeps its mode: replace
            // an older copy rather than write into it, and leave the new one writable.
            let _ = std::fs::remove_file(&dst);
            std::fs::copy(tokenizer_src, &dst).map_err(|e| {
                let what = format!("copying {} to {}", tokenizer_src.display(), dst.display());
                RouterError::io(what, e)
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644));
            }
        }
        self.config.tokenizer = crate::config::TOKENIZER_FILE.into();
        self.save(dir)
    }

    /// Records that the router directory holds per-label feature statistics in `file` (see
    /// [`crate::extend`]); saved with the config.
    pub fn set_feature_stats(&mut self, file: &str) {
        self.config.feature_stats = Some(file.to_string());
    }

    /// Records the dev metrics of this router as it is now (`None`: not measured), saved with
    /// the config: an extension replaces those of the router it extended, which describe
    /// fewer labels.
    pub fn set_dev_metrics(&mut self, dev: Option<DevMetrics>) {
        self.config.dev = dev;
    }

    /// The adapter names, in logit order.
    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    /// The configuration read from `router.json`.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The learned parameters.
    pub fn weights(&self) -> &RouterWeights {
        &self.weights
    }

    /// The tokenizer the router reads with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of learned parameters.
    pub fn num_params(&self) -> usize {
        self.weights.num_params()
    }

    /// Token ids of each sentence, as the router sees them (see [`encode`]).
    pub fn encode(&self, sentences: &[&str]) -> Result<Vec<Vec<u32>>, RouterError> {
        encode(&self.tokenizer, sentences, self.config.max_tokens)
    }

    /// Logits, one row per sentence and one column per label.
    pub fn logits(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>, RouterError> {
        Ok(self.weights.logits(&self.encode(sentences)?))
    }

    /// Label probabilities, one row per sentence. A text the tokenizer rejects (which valid
    /// UTF-8 practically never is) is routed as an empty sentence: the router's prior.
    pub fn probs(&self, sentences: &[&str]) -> Vec<Vec<f32>> {
        let ids = self.encode(sentences).unwrap_or_else(|_| {
            sentences
                .iter()
                .map(|s| {
                    self.encode(&[s])
                        .map(|mut v| v.remove(0))
                        .unwrap_or_default()
                })
                .collect()
        });
        self.weights
            .logits(&ids)
            .iter()
            .map(|l| softmax(l))
            .collect()
    }

    /// The adapter mixture for each sentence: `(label index, weight)` pairs (see [`select`]).
    pub fn route(&self, sentences: &[&str], cfg: &SelectConfig) -> Vec<Vec<(usize, f32)>> {
        self.probs(sentences)
            .iter()
            .map(|p| select(p, cfg))
            .collect()
    }
}
