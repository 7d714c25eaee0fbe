//! `dlp-run score`: teacher-forced logits of every position, written as safetensors.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use dlp_engine::generate::{score_batch, ScoreInput, ScoreMode, DEFAULT_STEP_TOKENS};
use dlp_engine::Backend;
use safetensors::{tensor::TensorView, Dtype};

use crate::common::{load, ModelArgs, WithBackend};
use crate::mix_args::{mixture, parse_mix};
use crate::output::{check_outputs, write_atomic, OutFormat};

/// How the tokens are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// All tokens in one pass.
    Prefill,
    /// One token at a time through the KV cache (the generation path).
    Decode,
}

/// Write the logits of every position of a token sequence to a safetensors file
/// (tensor `logits`, f32, [len, vocab]).
#[derive(Debug, Args, Clone)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Adapter mixture: `NAME=W[,NAME=W]...`, each weight from 0 to 100 (omit for the base
    /// model).
    #[arg(long, value_name = "NAME=W,...")]
    pub mix: Option<String>,
    /// Token ids, comma-separated (as `dlp-run tokenize` prints them, brackets allowed).
    #[arg(long, value_name = "1,2,3")]
    pub ids: String,
    /// Output file.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// `prefill`: one pass; `decode`: token by token through the KV cache.
    #[arg(long, value_enum, default_value = "prefill")]
    pub mode: Mode,
}

/// Parses `1,2,3` or `[1, 2, 3]`.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    if s.trim().is_empty() {
        bail!("--ids: no token ids given");
    }
    s.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, p)| {
            if p.is_empty() {
                bail!("--ids: element {} is empty (`1,,2`?)", i + 1);
            }
            p.parse::<u32>()
                .with_context(|| format!("--ids: `{p}` is not a token id (a non-negative integer)"))
        })
        .collect()
}

impl WithBackend for &ScoreArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        let ids = parse_ids(&self.ids)?;
        let out = ("--out", Some(self.out.as_path()), OutFormat::Safetensors);
        check_outputs(&[out], &self.model.inputs()?)?;
        let named = self
            .mix
            .as_deref()
            .map(parse_mix)
            .transpose()?
            .unwrap_or_default();
        let loaded = load(backend, &self.model)?;
        let model = &loaded.model;
        // Ids the embedding holds (Apertus 1.5's past its pruned head's too); the logits are
        // the head's `vocab_size` wide.
        let rows = model.config.embed_rows();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= rows) {
            bail!("--ids: token id {bad} is outside the vocabulary (size {rows})");
        }
        let vocab = model.config.vocab_size;
        if ids.len() > model.max_context {
            bail!(
                "--ids: {} tokens, the context holds {} (--max-context or the model's limit)",
                ids.len(),
                model.max_context,
            );
        }
        let mix = mixture(model, &named).context("--mix")?;
        let mode = match self.mode {
            Mode::Prefill => ScoreMode::Prefill,
            Mode::Decode => ScoreMode::Decode,
        };
        let input = ScoreInput {
            ids: ids.clone(),
            segments: vec![(0, mix)],
        };
        let logits = score_batch(model, &[input], mode, DEFAULT_STEP_TOKENS)?.remove(0);
        if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
            bail!(
                "the logits of position {} are not finite ({}): the forward pass overflowed; \
                 check the mixture's weights (far from 1?) and the model's weights and config \
                 (nothing written)",
                i / vocab,
                logits[i]
            );
        }
        let bytes: &[u8] = bytemuck::cast_slice(&logits);
        let view = TensorView::new(Dtype::F32, vec![ids.len(), vocab], bytes)?;
        let bytes = safetensors::serialize([("logits", view)], None)?;
        write_atomic(&self.out, &bytes)?;
        eprintln!(
            "wrote logits [{}, {vocab}] to {}",
            ids.len(),
            self.out.display()
        );
        Ok(())
    }
}
