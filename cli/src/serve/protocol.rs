//! What the HTTP side and the engine thread say to each other: the submissions and commands
//! sent to the engine, the events sent back per request, the state both read, and the
//! log-probability figures events carry.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use dlp_engine::generate::FinishReason;
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::SamplingParams;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::error::ApiError;
use super::metrics::Metrics;
use crate::routing::Decision;

/// A named mixture: `(adapter, weight)` pairs.
pub type NamedMix = Vec<(String, f32)>;

/// One sequence of a submission.
pub struct SeqSpec {
    /// Index of the choice in the response.
    pub choice: usize,
    /// Prompt ids.
    pub prompt: Vec<u32>,
    /// `(first token, mixture)` runs, by adapter name.
    pub segments: Vec<(usize, NamedMix)>,
    /// Sampling.
    pub params: SamplingParams,
    /// Log-probabilities of the prompt's tokens, with this many alternatives.
    pub prompt_logprobs: Option<usize>,
    /// Log-probabilities of generated tokens, with this many alternatives.
    pub logprobs: Option<usize>,
    /// How its text is cut and shown (stop strings, special tokens), and whether it is
    /// re-routed after every generated sentence.
    pub text: crate::pipeline::TextOptions,
    /// Generate through end-of-sequence tokens (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// Structured output: the grammar its tokens must follow (a copy per choice).
    pub constraint: Option<dlp_engine::constraint::Constraint>,
    /// The request field the format came from, named by an error the format meets mid-answer.
    pub format_param: Option<std::borrow::Cow<'static, str>>,
    /// The routing decisions behind `segments` (for the response's `dlp` object).
    pub decisions: Vec<Decision>,
}

/// A request's sequences and where their events go.
pub struct Submission {
    /// The sequences (one per choice).
    pub seqs: Vec<SeqSpec>,
    /// Events of all of them, in order per choice.
    pub events: UnboundedSender<Event>,
    /// When the request arrived (time to first token).
    pub arrived: Instant,
}

/// Log-probability of one token, with the most likely alternatives at its position.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    /// The token.
    pub token: u32,
    /// Its log-probability under the raw model logits.
    pub logprob: f32,
    /// The `n` most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
    /// Its rank among all tokens, from 1: the number of tokens at least as likely, itself
    /// included (vLLM's count, so tied tokens share the last rank of their tie).
    pub rank: usize,
}

/// A segment as the response's `dlp` object reports it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Index (prompt + generated) of its first token.
    pub first_token: usize,
    /// `(adapter, weight)` pairs.
    pub mixture: NamedMix,
    /// `request` (chosen by the request), `prompt` or `generated` (routed from that text).
    pub source: &'static str,
    /// The text the router read, when routed.
    pub text: Option<String>,
}

/// What the engine tells a request.
#[derive(Debug)]
pub enum Event {
    /// Log-probability of the next prompt token (positions 1, 2, ... in order) of a choice.
    Prompt {
        /// The choice.
        choice: usize,
        /// The token's log-probability.
        lp: TokenLogprob,
    },
    /// A generated token and the text that became final with it (possibly empty: a stop
    /// string may be starting, or a character is not complete yet).
    Token {
        /// The choice.
        choice: usize,
        /// Its log-probability, when asked for.
        lp: Option<TokenLogprob>,
        /// New final text.
        text: String,
    },
    /// Text held back until the end (a possible stop-string prefix that was not one).
    Text {
        /// The choice.
        choice: usize,
        /// The text.
        text: String,
    },
    /// The choice ended.
    Done {
        /// The choice.
        choice: usize,
        /// Why.
        finish: FinishReason,
        /// Tokens sampled, the end token included (vLLM's count).
        completion_tokens: usize,
        /// vLLM's `stop_reason`: the stop string or `stop_token_ids` token that ended it, or
        /// null.
        stop_reason: serde_json::Value,
        /// Routing as used.
        segments: Vec<SegmentInfo>,
    },
    /// The request failed.
    Error(ApiError),
}

/// What the HTTP side sends the engine.
pub enum Cmd {
    /// Run a request.
    Submit(Submission),
    /// Add a loaded adapter (already checked against the model).
    Load {
        /// The adapter.
        adapter: PeftAdapter,
        /// Where it came from.
        dir: PathBuf,
        /// The answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Remove an adapter once no sequence uses it.
    Unload {
        /// Its name.
        name: String,
        /// The answer: whether it is gone already or waits for running requests.
        reply: oneshot::Sender<Result<bool, ApiError>>,
    },
    /// End every running request now (the shutdown grace period is over).
    Abort,
    /// Stop once idle.
    Shutdown,
}

/// State shared with the HTTP side.
pub struct Shared {
    /// Counters and gauges.
    pub metrics: Metrics,
    /// Sequences submitted and not yet finished (running or queued).
    pub outstanding: AtomicUsize,
}

/// The log-probability of `token` under `logits` and the `top` best alternatives.
pub fn token_logprob(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| f64::from(x - max).exp())
        .sum();
    let lse = f64::from(max) + sum.ln();
    let lp = |x: f32| (f64::from(x) - lse) as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &x) in logits.iter().enumerate() {
            if x.is_nan() || (best.len() == top && x <= best[top - 1].1) {
                continue;
            }
            let at = best.partition_point(|&(_, b)| b >= x);
            best.insert(at, (i as u32, x));
            best.truncate(top);
        }
    }
    let own = logits.get(token as usize).copied().unwrap_or(f32::NAN);
    TokenLogprob {
        token,
        logprob: if own.is_nan() {
            f32::NEG_INFINITY
        } else {
            lp(own)
        },
        top: best.into_iter().map(|(i, x)| (i, lp(x))).collect(),
        // A NaN logit ranks last: no comparison with it holds. A token past the logits (an
        // input-only id of a pruned head, Apertus 1.5's media tokens) after every one of them.
        rank: match logits.get(token as usize) {
            None => logits.len() + 1,
            Some(x) if x.is_nan() => logits.len(),
            Some(_) => logits.iter().filter(|&&x| x >= own).count(),
        },
    }
}

/// The seed of choice `j` of a request seeded `seed`: choice 0 draws what the same request
/// with `n` = 1 draws; the others get seeds mixed with splitmix64's finalizer (Steele et al.,
/// 2014), so that choice 1 of seed s is not choice 0 of seed s + 1.
pub fn choice_seed(seed: u64, j: usize) -> u64 {
    if j == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::{choice_seed, token_logprob};

    /// Ranks from 1, ties sharing their last; a NaN logit last of the logits; a token past
    /// them (an input-only id of a pruned head) after every one, with no log-probability.
    #[test]
    fn ranks_of_tied_nan_and_past_the_logits_tokens() {
        let logits = [1.0, 3.0, 3.0, f32::NAN];
        let rank = |t: u32| token_logprob(&logits, t, 2).rank;
        assert_eq!(
            [rank(1), rank(2), rank(0), rank(3), rank(4)],
            [2, 2, 3, 4, 5]
        );
        let past = token_logprob(&logits, 9, 2);
        assert_eq!((past.logprob, past.top.len()), (f32::NEG_INFINITY, 2));
    }

    #[test]
    fn choices_of_one_seed_are_not_other_seeds() {
        for s in [0u64, 1, 41, u64::MAX] {
            assert_eq!(choice_seed(s, 0), s);
            let of_s: Vec<u64> = (0..4).map(|j| choice_seed(s, j)).collect();
            for (j, &x) in of_s.iter().enumerate() {
                assert!(of_s[..j].iter().all(|&y| y != x), "seed {s}: {of_s:?}");
                // The old rule gave choice j the seed s + j.
                assert!(
                    j == 0 || x != s.wrapping_add(j as u64),
                    "seed {s}, choice {j}"
                );
            }
        }
    }
}
