//! `generate`'s sampling flags: temperature and the filters, penalties and `--logit-bias`,
//! stop strings and tokens, `--min-tokens`, allowed tokens and bad words, into the engine's
//! [`SamplingParams`].

use anyhow::{bail, Result};
use clap::Args;
use dlp_engine::SamplingParams;

/// Sampling flags shared by generating commands.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// Most new tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 = greedy (deterministic argmax).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than MIN_P times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalise tokens already in the context (1 = off; 1.1 is a common choice).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// OpenAI's presence penalty, from -2 to 2: subtracted once from the logit of every token
    /// generated so far (0 = off; positive values favour new tokens).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty, from -2 to 2: subtracted from a token's logit once per time
    /// it was generated so far (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Add BIAS (-100 to 100) to token ID's logit before sampling (repeatable; `dlp-run
    /// tokenize --text " Paris" --show-tokens` shows ids): -100 all but bans the token, 100
    /// all but forces it.
    #[arg(long, value_name = "ID=BIAS", value_parser = parse_logit_bias, allow_hyphen_values = true)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this string is generated (repeatable); it is not printed (unless
    /// --include-stop-str).
    #[arg(long = "stop", value_name = "TEXT", allow_hyphen_values = true)]
    pub stop: Vec<String>,
    /// Keep the stop string that ended the text at its end (vLLM's
    /// `include_stop_str_in_output`).
    #[arg(long)]
    pub include_stop_str: bool,
    /// Print special tokens (`<|im_start|>`, ...) as text instead of dropping them (vLLM's
    /// `skip_special_tokens: false`); the end-of-sequence token that ends the answer only
    /// with --include-stop-str.
    #[arg(long)]
    pub show_special_tokens: bool,
    /// End a sequence when token ID is generated, as an end-of-sequence token does
    /// (repeatable; vLLM's `stop_token_ids`); it is not printed (unless --include-stop-str).
    #[arg(long = "stop-token-id", value_name = "ID")]
    pub stop_token_ids: Vec<u32>,
    /// Generate at least N tokens: end-of-sequence and --stop-token-id tokens are held back,
    /// and --stop strings ignored, until then (vLLM's `min_tokens`; at most --max-tokens).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_tokens: usize,
    /// Sample only these tokens (repeatable; vLLM's `allowed_token_ids`): a classifier's
    /// labels, say.
    #[arg(long = "allowed-token-id", value_name = "ID")]
    pub allowed_token_ids: Vec<u32>,
    /// Never write this word (repeatable; vLLM's `bad_words`): its last token is masked
    /// wherever the text so far ends with the rest of it, spelled alone or after a space.
    #[arg(long = "bad-word", value_name = "WORD", allow_hyphen_values = true)]
    pub bad_words: Vec<String>,
}

/// `--logit-bias ID=BIAS`.
fn parse_logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=BIAS (e.g. 504=-100)"))?;
    let id = id
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("`{id}` is not a token id (a whole number from 0)"))?;
    let bias = bias
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|b| (-100.0..=100.0).contains(b))
        .ok_or_else(|| format!("`{bias}` is not a bias from -100 to 100"))?;
    Ok((id, bias))
}

impl SamplingArgs {
    /// The flags' own checks, each error named by its flag (the engine would name the field):
    /// empty stop strings and blank bad words, a `--logit-bias` id given twice, and every
    /// range [`SamplingParams::validate`] checks.
    pub fn check(&self) -> Result<()> {
        if self.stop.iter().any(String::is_empty) {
            bail!("--stop \"\": a stop string must not be empty");
        }
        self.check_logit_bias_once()?;
        if let Some(w) = self.bad_words.iter().find(|w| w.trim().is_empty()) {
            bail!("--bad-word {w:?}: a bad word must not be blank");
        }
        if let Err(dlp_engine::sampler::SamplerError::InvalidParam {
            field,
            value,
            expected,
        }) = self.params().validate()
        {
            if field == "min_tokens" {
                let max = self.max_tokens;
                bail!("--min-tokens {value}: must be at most --max-tokens ({max})");
            }
            bail!("--{} {value}: must be {expected}", field.replace('_', "-"));
        }
        // Accepted (as vLLM does), but said: greedy decoding takes the argmax, so the filters
        // and the seed change nothing.
        if self.temperature == 0.0 {
            note_idle(
                &[
                    (self.top_k != 0, "--top-k"),
                    (self.top_p != 1.0, "--top-p"),
                    (self.min_p != 0.0, "--min-p"),
                    (self.seed != 0, "--seed"),
                ],
                " at --temperature 0 (greedy, the default); give --temperature above 0 to sample",
            );
        }
        Ok(())
    }

    /// Refuses a token id given twice to `--logit-bias`.
    fn check_logit_bias_once(&self) -> Result<()> {
        for (i, &(t, _)) in self.logit_bias.iter().enumerate() {
            if self.logit_bias[..i].iter().any(|&(u, _)| u == t) {
                bail!("--logit-bias: token {t} is given twice");
            }
        }
        Ok(())
    }

    /// Refuses a `--logit-bias` or `--stop-token-id` token outside a vocabulary of `vocab`
    /// tokens (the sampler would ignore it silently).
    pub fn check_token_ids_vocab(&self, vocab: usize) -> Result<()> {
        if let Some(&(t, _)) = self.logit_bias.iter().find(|&&(t, _)| t as usize >= vocab) {
            bail!(
                "--logit-bias {t}=...: token {t} is outside this model's vocabulary ({})",
                crate::common::vocab_ids(vocab)
            );
        }
        for (flag, ids) in [
            ("--stop-token-id", &self.stop_token_ids),
            ("--allowed-token-id", &self.allowed_token_ids),
        ] {
            if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
                bail!(
                    "{flag} {t}: token {t} is outside this model's vocabulary ({})",
                    crate::common::vocab_ids(vocab)
                );
            }
        }
        Ok(())
    }

    /// The sampler parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: {
                let mut b = self.logit_bias.clone();
                b.sort_by_key(|&(t, _)| t);
                b
            },
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            stop_token_ids: self.stop_token_ids.clone(),
            min_tokens: self.min_tokens,
            allowed_token_ids: {
                let mut a = self.allowed_token_ids.clone();
                a.sort_unstable();
                a.dedup();
                a
            },
            // Tokenized once the model's tokenizer is loaded.
            bad_words_ids: Vec::new(),
        }
    }
}

/// Says on stderr that the flags given (`(given, flag)`) change nothing, `why` right after:
/// accepted, as vLLM accepts such fields, but not waved through in silence.
pub fn note_idle(flags: &[(bool, &str)], why: &str) {
    let idle: Vec<&str> = (flags.iter())
        .filter_map(|&(given, flag)| given.then_some(flag))
        .collect();
    if !idle.is_empty() {
        let verb = if idle.len() == 1 { "changes" } else { "change" };
        eprintln!("note: {} {verb} nothing{why}", idle.join(", "));
    }
}
