//! Token sampler shared by every backend: logit bias, repetition penalty, frequency and presence
//! penalties (vLLM's order), then temperature, top-k, top-p, min-p (in that order, as Hugging
//! Face `transformers` does), then a seeded draw; plus helpers for stop strings.
//!
//! Non-finite logits: NaN is treated as `-inf` (never chosen while any other token is); `+inf` is
//! treated as the largest finite `f32` (so such tokens win, and share the mass if several). When no
//! token has a usable logit (all NaN / `-inf`), `try_sample` returns `None` (`sample` token 0).

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::constraint::TokenConstraint;

mod draw;
pub(crate) mod probs;
#[cfg(test)]
use draw::nucleus;

/// Tolerance on probability comparisons (top-p cumulative mass, min-p ratio), so that a boundary
/// given exactly (e.g. `top_p = 0.8` over probabilities `0.5, 0.3, ...`) is not lost to rounding.
const PROB_EPS: f64 = 1e-6;

/// Parameters of one generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax, ties go to the lowest token id).
    pub temperature: f32,
    /// Keep only the `top_k` highest logits; `0` disables.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of most probable tokens whose cumulative
    /// probability is `>= top_p` (always at least one); `1.0` disables.
    pub top_p: f32,
    /// Drop tokens whose probability is `< min_p * max_prob`; `0` disables.
    pub min_p: f32,
    /// HF/CTRL repetition penalty over each distinct token of the context (prompt + generated):
    /// a positive logit is divided by it, a negative one multiplied; `1.0` disables.
    pub repetition_penalty: f32,
    /// OpenAI's presence penalty: subtracted once from the logit of every token generated so
    /// far (the prompt does not count, as in vLLM); `0` disables, negative values favour
    /// repeats. Range `[-2, 2]`.
    #[serde(default)]
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted from a token's logit once per time it was
    /// generated so far; `0` disables. Range `[-2, 2]`. Formula (OpenAI's API reference):
    /// `logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty`.
    #[serde(default)]
    pub frequency_penalty: f32,
    /// OpenAI's `logit_bias`: `(token id, bias)` pairs, sorted by id, each id once, added to
    /// the raw logits before every other step (`-100` all but bans a token, `100` all but
    /// forces it). Ids past the logits are ignored. Biases in `[-100, 100]`.
    #[serde(default)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random generator (same seed + same logits => same tokens).
    pub seed: u64,
    /// Maximum number of tokens to generate (enforced by the caller).
    pub max_tokens: usize,
    /// Stop strings, matched by the caller on generated text (see [`find_stop`], [`stop_holdback`]).
    pub stop: Vec<String>,
    /// vLLM's `stop_token_ids`: tokens that end the sequence as an end-of-sequence token does
    /// (enforced by the scheduler; the token itself is not part of the output).
    #[serde(default)]
    pub stop_token_ids: Vec<u32>,
    /// vLLM's `min_tokens`: until this many tokens were returned, the end tokens (EOS, given by
    /// [`Sampler::set_end_tokens`], and `stop_token_ids`) are masked out, and the caller
    /// ignores stop strings. An output grammar that is complete still ends the sequence.
    #[serde(default)]
    pub min_tokens: usize,
    /// vLLM's `allowed_token_ids`: when not empty, only these tokens may be sampled (sorted,
    /// each once; masked after bias and penalties, like an output grammar).
    #[serde(default)]
    pub allowed_token_ids: Vec<u32>,
    /// vLLM's `bad_words` as token sequences: the last token of each is masked wherever the
    /// tokens generated so far end with the rest of it (a one-token word: always).
    #[serde(default)]
    pub bad_words_ids: Vec<Vec<u32>>,
}

impl Default for SamplingParams {
    /// Greedy, every filter off, seed 0, 128 tokens, no stop strings.
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0,
            max_tokens: 128,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            min_tokens: 0,
            allowed_token_ids: Vec::new(),
            bad_words_ids: Vec::new(),
        }
    }
}

/// Errors of the sampler.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A sampling parameter is out of range.
    #[error("invalid sampling parameter `{field}` = {value}: must be {expected}")]
    InvalidParam {
        /// Name of the offending field.
        field: &'static str,
        /// The value given.
        value: f32,
        /// The accepted range, in words.
        expected: &'static str,
    },
}

impl SamplingParams {
    /// Checks every field's range: `temperature` finite and `>= 0`, `top_p` in `(0, 1]`,
    /// `min_p` in `[0, 1]`, `repetition_penalty` finite and `> 0`, `presence_penalty` and
    /// `frequency_penalty` in `[-2, 2]`, each `logit_bias` in `[-100, 100]` with ids sorted
    /// and distinct, `min_tokens` at most `max_tokens`.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let check = |field, value: f32, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(SamplerError::InvalidParam {
                    field,
                    value,
                    expected,
                })
            }
        };
        let t = self.temperature;
        check(
            "temperature",
            t,
            t.is_finite() && t >= 0.0,
            "finite and >= 0",
        )?;
        let p = self.top_p;
        check("top_p", p, p > 0.0 && p <= 1.0, "in (0, 1]")?;
        let m = self.min_p;
        check("min_p", m, (0.0..=1.0).contains(&m), "in [0, 1]")?;
        let r = self.repetition_penalty;
        check(
            "repetition_penalty",
            r,
            r.is_finite() && r > 0.0,
            "finite and > 0",
        )?;
        let pp = self.presence_penalty;
        check(
            "presence_penalty",
            pp,
            (-2.0..=2.0).contains(&pp),
            "in [-2, 2]",
        )?;
        let f = self.frequency_penalty;
        check(
            "frequency_penalty",
            f,
            (-2.0..=2.0).contains(&f),
            "in [-2, 2]",
        )?;
        for &(_, b) in &self.logit_bias {
            check(
                "logit_bias",
                b,
                (-100.0..=100.0).contains(&b),
                "in [-100, 100]",
            )?;
        }
        if let Some(w) = self.logit_bias.windows(2).find(|w| w[0].0 >= w[1].0) {
            check(
                "logit_bias",
                w[1].0 as f32,
                false,
                "token ids sorted and each given once",
            )?;
        }
        check(
            "min_tokens",
            self.min_tokens as f32,
            self.min_tokens <= self.max_tokens,
            "at most max_tokens",
        )?;
        if let Some(w) = (self.allowed_token_ids.windows(2)).find(|w| w[0] >= w[1]) {
            check(
                "allowed_token_ids",
                w[1] as f32,
                false,
                "token ids sorted and each given once",
            )?;
        }
        if self.bad_words_ids.iter().any(Vec::is_empty) {
            check("bad_words_ids", 0.0, false, "non-empty token sequences")?;
        }
        Ok(())
    }

    /// A non-positive or NaN temperature: the best token, no draw.
    fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0
    }

    /// Whether the frequency or presence penalty is on (the sampler then counts its tokens).
    fn counts_tokens(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }

    /// `logit_bias`'s bias for `token` (0 when absent).
    fn bias(&self, token: u32) -> f32 {
        self.logit_bias
            .binary_search_by_key(&token, |&(t, _)| t)
            .map_or(0.0, |i| self.logit_bias[i].1)
    }
}

/// Stateful sampler: parameters, a seeded RNG and scratch space reused between calls (no
/// allocation per token once the first call has sized it for the vocabulary).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Penalised, sanitised logits, indexed by token id.
    work: Vec<f32>,
    /// Surviving candidates: (token id, logit), the logit later replaced by `exp((l - max) / T)`.
    cand: Vec<(u32, f32)>,
    /// The sums of the probabilities of each block of `work` (the draw's scratch).
    blocks: Vec<f64>,
    /// The maxima of chunks of `work` (the selections' scratch).
    maxima: Vec<f32>,
    /// How often each token was returned, for the frequency and presence penalties (kept only
    /// while one is on).
    counts: HashMap<u32, u32>,
    /// Tokens returned so far (for `min_tokens`).
    returned: usize,
    /// The end-of-sequence ids masked while fewer than `min_tokens` were returned.
    end_tokens: Vec<u32>,
}

/// HF/CTRL repetition penalty for one logit.
fn penalize(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

impl Sampler {
    /// Creates a sampler whose RNG is seeded from `params.seed`. Does not validate: call
    /// [`SamplingParams::validate`] first (out-of-range values give unspecified but safe picks;
    /// a non-positive or NaN temperature is greedy).
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self {
            params,
            rng,
            work: Vec::new(),
            cand: Vec::new(),
            blocks: Vec::new(),
            maxima: Vec::new(),
            counts: HashMap::new(),
            returned: 0,
            end_tokens: Vec::new(),
        }
    }

    /// The end-of-sequence ids that `min_tokens` masks (with `stop_token_ids`) until that
    /// many tokens were returned; none until set.
    pub fn set_end_tokens(&mut self, ids: &[u32]) {
        self.end_tokens = ids.to_vec();
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether the next pick is the plain argmax of the raw logits: greedy, with no logit bias,
    /// penalty, allowed-token list or bad words, and `min_tokens` reached (no end token held
    /// back). [`Sampler::accept_argmax`] may then take a pick made elsewhere
    /// ([`crate::model::Model::forward_argmax`]).
    pub fn picks_argmax(&self) -> bool {
        self.params.is_greedy() && self.keeps_logits()
    }

    /// The temperature, where the next pick is a plain draw from the raw logits: no top-k,
    /// top-p or min-p, and what [`Sampler::picks_argmax`] asks besides greediness.
    /// [`Sampler::device_draw`] then gives the uniform draw it would make, and
    /// [`Sampler::accept_argmax`] takes the token drawn elsewhere
    /// ([`crate::model::Model::forward_sample`], the same function).
    pub fn plain_temperature(&self) -> Option<f32> {
        let p = &self.params;
        let plain = !p.is_greedy() && p.top_k == 0 && p.top_p >= 1.0 && p.min_p <= 0.0;
        (plain && self.keeps_logits()).then_some(p.temperature)
    }

    /// The uniform draw in `[0, 1)` the next plain draw makes ([`Sampler::plain_temperature`]),
    /// taken from the seeded generator as the draw here would take it.
    pub fn device_draw(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// No logit bias, penalty, allowed-token list or bad words, and `min_tokens` reached (no
    /// end token held back): the next pick reads the raw logits.
    fn keeps_logits(&self) -> bool {
        let p = &self.params;
        p.logit_bias.is_empty()
            && p.repetition_penalty == 1.0
            && !p.counts_tokens()
            && self.returned >= p.min_tokens
            && p.allowed_token_ids.is_empty()
            && p.bad_words_ids.is_empty()
    }

    /// Takes a pick made outside, from the raw logits, as [`Sampler::try_sample`]'s own
    /// (`None`: the row was refused): counts it as returned, as a pick here would. Only while
    /// [`Sampler::picks_argmax`] holds, or [`Sampler::plain_temperature`] with the draw of
    /// [`Sampler::device_draw`]; then it returns what `try_sample` would have.
    pub fn accept_argmax(&mut self, pick: Option<u32>) -> Option<u32> {
        if pick.is_some() {
            self.returned += 1;
        }
        pick
    }

    /// Picks the next token from `logits` (one per vocabulary entry). `context` is the prompt
    /// plus the tokens generated so far, used by the repetition penalty (ids outside the
    /// vocabulary are ignored). The frequency and presence penalties count the tokens this
    /// sampler has returned, which are the generated ones: call it once per generated token.
    /// Greedy sampling does not consume randomness. Probabilities are computed in f32 with the
    /// max subtracted (a polynomial `exp` within 2 ulp, the same bits on every CPU) and summed
    /// in f64; tokens below `e^-86` of the best one's (where f32 leaves its normal range) are
    /// skipped.
    ///
    /// NaN logits are skipped; when no token has a usable logit (all NaN or `-inf`), token 0.
    /// [`Sampler::try_sample`] refuses such rows instead.
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn sample(&mut self, logits: &[f32], context: &[u32]) -> u32 {
        self.pick(logits, context, false, None)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// [`Sampler::sample`], but `None` when a logit is NaN or no token has a usable logit (all
    /// `-inf`): the forward pass broke (a NaN never comes from a sound one, and sampling among
    /// the rest would pass a broken row off as an answer).
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn try_sample(&mut self, logits: &[f32], context: &[u32]) -> Option<u32> {
        self.pick(logits, context, true, None).ok().flatten()
    }

    /// [`Sampler::try_sample`] among the tokens `constraint` allows (masked after bias and
    /// penalties, before temperature and the filters). The constraint is not advanced: the
    /// caller calls [`TokenConstraint::accept`] with the token it keeps.
    ///
    /// # Errors
    /// The constraint's, from [`TokenConstraint::mask`].
    pub fn try_sample_constrained(
        &mut self,
        logits: &[f32],
        context: &[u32],
        constraint: &mut dyn TokenConstraint,
    ) -> Result<Option<u32>, String> {
        self.pick(logits, context, true, Some(constraint))
    }

    /// Every sampler; `nan_fails` says whether one NaN logit refuses the row. The token is
    /// counted for the frequency and presence penalties.
    fn pick(
        &mut self,
        logits: &[f32],
        context: &[u32],
        nan_fails: bool,
        constraint: Option<&mut dyn TokenConstraint>,
    ) -> Result<Option<u32>, String> {
        assert!(!logits.is_empty(), "Sampler::sample: empty logits");
        if constraint.is_none() && self.picks_argmax() {
            // Plain greedy: the argmax op's rule (the same pick), without copying the row. It
            // refuses a row with a NaN, which `sample` skips below instead.
            let id = crate::cpu::argmax::pick(logits);
            if id.is_some() || nan_fails {
                self.returned += usize::from(id.is_some());
                return Ok(id);
            }
        }
        let p = &self.params;
        let work = &mut self.work;
        work.clear();
        work.extend_from_slice(logits);
        for &(t, b) in &p.logit_bias {
            if let Some(l) = work.get_mut(t as usize) {
                *l += b;
            }
        }
        if p.repetition_penalty != 1.0 {
            // From the biased logit, not `work`, so a token repeated in the context is
            // penalised once.
            for &t in context {
                if let Some(&l) = logits.get(t as usize) {
                    work[t as usize] = penalize(l + p.bias(t), p.repetition_penalty);
                }
            }
        }
        for (&t, &c) in &self.counts {
            if let Some(l) = work.get_mut(t as usize) {
                *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
            }
        }
        if self.returned < p.min_tokens {
            for &t in self.end_tokens.iter().chain(&p.stop_token_ids) {
                if let Some(l) = work.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if !p.allowed_token_ids.is_empty() {
            // Keep the allowed logits aside, mask every row, put them back: O(vocab).
            let kept = &mut self.cand;
            kept.clear();
            kept.extend(
                (p.allowed_token_ids.iter()).filter_map(|&t| work.get(t as usize).map(|&l| (t, l))),
            );
            work.fill(f32::NEG_INFINITY);
            for &(t, l) in kept.iter() {
                work[t as usize] = l;
            }
        }
        let generated = &context[context.len().saturating_sub(self.returned)..];
        for word in &p.bad_words_ids {
            let (&last, before) = word.split_last().expect("validated: not empty");
            if generated.ends_with(before) {
                if let Some(l) = work.get_mut(last as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(c) = constraint {
            c.mask(work)?;
        }
        let (max, nan) = probs::sanitize_max(work);
        if max == f32::NEG_INFINITY || (nan && nan_fails) {
            return Ok(None); // no usable logit at all, or a broken row
        }
        let id = if p.is_greedy() {
            work.iter().position(|&l| l == max).unwrap_or(0) as u32
        } else {
            self.draw(max)
        };
        if self.params.counts_tokens() {
            *self.counts.entry(id).or_insert(0) += 1;
        }
        self.returned += 1;
        Ok(Some(id))
    }
}

/// The first stop string in `text` that ends past byte `end` (a caller that already searched
/// the text up to `end` passes its length then, so each byte is searched about once): where
/// it starts (the earliest start over all `stops`; always a char boundary) and its index in
/// `stops` (the first listed of those starting there). Empty stop strings are ignored; a stop
/// may begin before `end`, inside a character's bytes too.
pub fn find_stop(text: &str, stops: &[String], end: usize) -> Option<(usize, usize)> {
    stops
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .filter_map(|(k, s)| {
            // A match ending past `end` starts at `end + 1 - len` or later, on a character.
            let from = (end + 1).saturating_sub(s.len());
            let from = (from..=text.len()).find(|&i| text.is_char_boundary(i))?;
            text[from..].find(s.as_str()).map(|at| (from + at, k))
        })
        .min_by_key(|&(at, _)| at)
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of some stop string,
/// so a streaming caller can hold it back until it knows whether a stop string follows.
/// `text.len() - stop_holdback(..)` is always a char boundary.
pub fn stop_holdback(text: &str, stops: &[String]) -> usize {
    let bytes = text.as_bytes();
    let mut best = 0;
    for s in stops {
        for len in (best + 1..s.len().min(bytes.len() + 1)).rev() {
            let start = bytes.len() - len;
            if text.is_char_boundary(start) && s.as_bytes().starts_with(&bytes[start..]) {
                best = len;
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
