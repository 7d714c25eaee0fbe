//! One timed generation of a `dlp-run bench` scenario ([`run_once`]), from the routing of its
//! prompt to the per-token latencies of request 0.

use std::time::Instant;

use anyhow::{bail, Result};
use dlp_engine::generate::{generate, Control, GenRequest, Segments, DEFAULT_STEP_TOKENS};
use dlp_engine::model::Model;
use dlp_engine::sampler::SamplerError;
use dlp_engine::Backend;
use dlp_engine::SamplingParams;
use dlp_router::SelectConfig;

use crate::bench::{BenchArgs, Plan, Scenario};
use crate::bench_report::Sample;
use crate::routing::{Routing, SentenceTracker};

/// What every run shares.
pub(crate) struct Ctx<'a> {
    /// The prompt's token ids.
    pub ids: &'a [u32],
    /// Byte offset in `text.text` where each prompt token starts.
    pub starts: &'a [usize],
    pub text: &'a crate::pipeline::Rendered,
    pub new_tokens: usize,
    pub tok: &'a dlp_engine::tokenizer::TextTokenizer,
    pub routing: &'a Routing,
    /// The loaded adapters' names.
    pub names: &'a [String],
    /// `--profile-decode`.
    pub profile_decode: bool,
    /// `--temperature` and its filters (request `i` is seeded with `i`).
    pub sampling: &'a SamplingParams,
}

/// A fixed top-k selection (the token-level scenario compares at the same K as fused K).
fn top_k(k: usize) -> SelectConfig {
    SelectConfig {
        top_p: None,
        top_k: Some(k),
        ..SelectConfig::default()
    }
}

/// One generation of scenario `s`, timed.
pub(crate) fn run_once<B: Backend>(model: &Model<B>, s: &Scenario, c: &Ctx) -> Result<Sample> {
    let t_route = Instant::now();
    let (segments_of, k_tok): (Vec<Segments>, usize) = match &s.plan {
        Plan::Fixed { batch, mixes } => (
            (0..*batch)
                .map(|i| vec![(0, mixes[i % mixes.len()].clone())])
                .collect(),
            0,
        ),
        Plan::Routed => {
            let t = c.text;
            let (segs, _) =
                c.routing
                    .route_prompt(&t.text, t.span.clone(), &t.user, c.starts, c.names);
            (vec![segs], 0)
        }
        Plan::TokenLevel => {
            // Every prompt token routed from its sentence so far: one segment per token.
            let segs = (0..c.ids.len())
                .map(|i| {
                    let end = c.starts.get(i + 1).copied().unwrap_or(c.text.text.len());
                    let from = c.text.text[..end]
                        .rfind(['.', '?', '!', '\n'])
                        .map_or(0, |p| p + 1);
                    let text = &c.text.text[from..end];
                    (i, c.routing.route_with(&[text], &top_k(s.k)).remove(0))
                })
                .collect();
            (vec![segs], s.k)
        }
    };
    let route_secs = t_route.elapsed().as_secs_f64();
    let requests: Vec<GenRequest> = (0..)
        .zip(segments_of)
        .map(|(seed, segments)| GenRequest {
            prompt: c.ids.to_vec(),
            segments,
            params: SamplingParams {
                max_tokens: c.new_tokens,
                seed,
                ..c.sampling.clone()
            },
            ..GenRequest::default()
        })
        .collect();
    let tok_select = top_k(k_tok);
    let mut stamps: Vec<Instant> = Vec::with_capacity(c.new_tokens);
    let mut decoder = c.tok.stream_decoder(true);
    let mut sentence = String::new();
    let mut tracker = SentenceTracker::default();
    // Request 0's latencies count only steps where every request decodes: before that, a
    // batch's steps also carry other requests' prompt chunks (prefill, reported apart).
    let mut started = vec![false; requests.len()];
    let mut n_started = 0;
    let mut profiling = false;
    let generated = generate(model, &requests, &[], DEFAULT_STEP_TOKENS, |i, id| {
        if !std::mem::replace(&mut started[i], true) {
            n_started += 1;
        }
        if i != 0 {
            return Ok(Control::Continue);
        }
        if n_started == started.len() {
            stamps.push(Instant::now());
            if c.profile_decode && !profiling {
                model.backend.profiler_range(true);
                profiling = true;
            }
        }
        match &s.plan {
            Plan::TokenLevel => {
                if let Some(p) = decoder.push(id)? {
                    sentence.push_str(&p);
                }
                if sentence.ends_with(['.', '?', '!', '\n']) {
                    sentence.clear();
                }
                Ok(Control::Remix(
                    c.routing
                        .route_with(&[sentence.as_str()], &tok_select)
                        .remove(0),
                ))
            }
            Plan::Routed => {
                let piece = decoder.push(id)?;
                Ok(match piece.and_then(|p| tracker.push(&p)) {
                    Some(done) => Control::Remix(c.routing.route(&[done.as_str()]).remove(0)),
                    None => Control::Continue,
                })
            }
            Plan::Fixed { .. } => Ok(Control::Continue),
        }
    });
    if profiling {
        model.backend.profiler_range(false);
    }
    let (_, stats) = generated?;
    let lat: Vec<f64> = stamps
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    Ok(Sample {
        prefill_secs: stats.prefill_secs + route_secs,
        prefill_tokens: stats.prefill_tokens,
        // The first token comes from the prefill step; the rest from decode steps.
        decode_secs: stats.decode_secs,
        decode_pick_secs: stats.decode_pick_secs,
        decode_wall_secs: stats.decode_wall_secs,
        decode_tokens: stats.decode_tokens,
        token_latencies: lat,
    })
}

/// The run's sampling in words, for the table's first line.
pub(crate) fn describe_sampling(p: &SamplingParams) -> String {
    if p.temperature == 0.0 {
        return "greedy".into();
    }
    let mut s = format!("temperature {}", p.temperature);
    for (on, what) in [
        (p.top_p < 1.0, format!("top-p {}", p.top_p)),
        (p.top_k > 0, format!("top-k {}", p.top_k)),
        (p.min_p > 0.0, format!("min-p {}", p.min_p)),
    ] {
        if on {
            s += &format!(", {what}");
        }
    }
    s
}

impl BenchArgs {
    /// The sampling every request of the run shares (its seed aside): greedy, or
    /// `--temperature` with its filters, each range checked and named by its flag.
    pub(crate) fn sampling(&self) -> Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            ..SamplingParams::default()
        };
        if let Err(SamplerError::InvalidParam {
            field,
            value,
            expected,
        }) = p.validate()
        {
            bail!("--{} {value}: must be {expected}", field.replace('_', "-"));
        }
        if p.temperature != 0.0 && self.peers {
            bail!("--peers with --temperature: the peers decode greedily, so their ratios would set sampled runs against greedy ones; leave one of them out");
        }
        if p.temperature == 0.0 && (p.top_p != 1.0 || p.top_k != 0 || p.min_p != 0.0) {
            bail!("--top-p, --top-k and --min-p filter a sampled token: give --temperature above 0 with them");
        }
        Ok(p)
    }
}
