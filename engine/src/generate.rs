//! Batched scoring and generation over the KV cache: many sequences, each with its own
//! segments of mixtures, run through one forward per step (prefill chunks and decode tokens
//! side by side).

use std::collections::HashMap;

use crate::backend::{Backend, StepPlan, NO_ADAPTER};
use crate::error::{Error, Result};
use crate::lora::Mixture;
use crate::model::Model;
use crate::sampler::SamplingParams;
use crate::scheduler::{Event, Scheduler, SchedulerConfig, SeqOptions};

/// Tokens per step when prompts are prefilled (longer prompts are split into chunks).
pub const DEFAULT_STEP_TOKENS: usize = 256;

/// A sequence's routing: `(first token index, mixture)` runs, sorted by start, the first at 0.
pub type Segments = Vec<(usize, Mixture)>;

/// How `score` feeds the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMode {
    /// All tokens of a sequence in one pass (chunked only past the step size).
    Prefill,
    /// One token per step through the KV cache: the generation path.
    Decode,
}

/// Per-sequence state shared by scoring and generation.
pub(crate) struct Seq {
    pub(crate) tokens: Vec<u32>,
    pub(crate) segments: Segments,
    /// Tokens already in the KV cache.
    pub(crate) cached: usize,
}

impl Seq {
    fn mixture_at(&self, i: usize) -> usize {
        self.segments
            .iter()
            .rposition(|(start, _)| *start <= i)
            .unwrap_or(0)
    }
}

/// Builds one step from several sequences' pending tokens.
pub(crate) struct PlanBuilder {
    pub(crate) plan: StepPlan,
    seg_index: HashMap<(usize, usize), u32>,
    mixtures: Vec<Mixture>,
}

impl PlanBuilder {
    pub(crate) fn new() -> Self {
        PlanBuilder {
            plan: StepPlan::default(),
            seg_index: HashMap::new(),
            mixtures: Vec::new(),
        }
    }

    /// Empties the builder for the next step, keeping every allocation.
    pub(crate) fn clear(&mut self) {
        let p = &mut self.plan;
        for v in [&mut p.token_ids, &mut p.positions, &mut p.kv_slots] {
            v.clear();
        }
        p.segment_of_token.clear();
        p.mix_slots.clear();
        p.mix_weights.clear();
        p.logit_rows.clear();
        p.pick_args.clear();
        self.seg_index.clear();
        self.mixtures.clear();
    }

    /// Adds tokens `from..to` of sequence `slot`; returns the step index of the last one.
    pub(crate) fn push(&mut self, slot: usize, seq: &Seq, from: usize, to: usize) -> u32 {
        for i in from..to {
            let mi = seq.mixture_at(i);
            let seg = *self.seg_index.entry((slot, mi)).or_insert_with(|| {
                self.mixtures.push(
                    seq.segments
                        .get(mi)
                        .map(|s| s.1.clone())
                        .unwrap_or_default(),
                );
                (self.mixtures.len() - 1) as u32
            });
            self.plan.token_ids.push(seq.tokens[i]);
            self.plan.positions.push(i as u32);
            self.plan.kv_slots.push(slot as u32);
            self.plan.segment_of_token.push(seg);
        }
        (self.plan.token_ids.len() - 1) as u32
    }

    /// The plan's [`StepPlan::pick_args`], filled by a step that samples on the device.
    pub(crate) fn pick_args(&mut self) -> &mut Vec<f32> {
        &mut self.plan.pick_args
    }

    /// Fills the mixture table; the plan is then ready.
    pub(crate) fn finish(&mut self) -> &StepPlan {
        let k = self
            .mixtures
            .iter()
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
            .max(1);
        self.plan.mix_k = k;
        for m in &self.mixtures {
            for e in 0..k {
                let (s, w) = m.get(e).map_or((NO_ADAPTER, 0.0), |&(s, w)| (s as u32, w));
                self.plan.mix_slots.push(s);
                self.plan.mix_weights.push(w);
            }
        }
        &self.plan
    }
}

/// A sequence to score: its ids and routing.
#[derive(Debug, Clone)]
pub struct ScoreInput {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Routing; empty = base model everywhere.
    pub segments: Segments,
}

fn max_mix(segs: impl Iterator<Item = usize>) -> usize {
    segs.max().unwrap_or(0).max(1)
}

/// Teacher-forced logits of every position of every input, `[len, vocab]` each, all inputs
/// run side by side in the same steps.
pub fn score_batch<B: Backend>(
    model: &Model<B>,
    inputs: &[ScoreInput],
    mode: ScoreMode,
    step_tokens: usize,
) -> Result<Vec<Vec<f32>>> {
    let vocab = model.config.vocab_size;
    let longest = inputs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    if inputs.is_empty() || inputs.iter().any(|s| s.ids.is_empty()) {
        return Err(Error::invalid(
            "nothing to score: every sequence needs at least one token",
        ));
    }
    if longest > model.max_context {
        return Err(Error::invalid(format!(
            "a sequence of {longest} tokens exceeds the context of {} positions",
            model.max_context
        )));
    }
    let mut seqs: Vec<Seq> = inputs
        .iter()
        .map(|s| Seq {
            tokens: s.ids.clone(),
            segments: if s.segments.is_empty() {
                vec![(0, vec![])]
            } else {
                s.segments.clone()
            },
            cached: 0,
        })
        .collect();
    let per_step = match mode {
        ScoreMode::Prefill => step_tokens.max(1),
        ScoreMode::Decode => 1,
    };
    let ws_tokens = (per_step * seqs.len()).min(inputs.iter().map(|s| s.ids.len()).sum());
    let mut ws = model.workspace(
        ws_tokens,
        max_mix(
            seqs.iter()
                .flat_map(|s| s.segments.iter().map(|m| m.1.len())),
        ),
    )?;
    let mut kv = model.kv_cache(seqs.len(), longest)?;
    let mut out: Vec<Vec<f32>> = inputs
        .iter()
        .map(|s| Vec::with_capacity(s.ids.len() * vocab))
        .collect();
    let (mut b, mut owners, mut logits) = (PlanBuilder::new(), Vec::new(), Vec::new());
    while seqs.iter().any(|s| s.cached < s.tokens.len()) {
        b.clear();
        owners.clear();
        for (slot, s) in seqs.iter().enumerate() {
            let to = (s.cached + per_step).min(s.tokens.len());
            if to > s.cached {
                let first = b.plan.token_ids.len() as u32;
                b.push(slot, s, s.cached, to);
                for r in first..first + (to - s.cached) as u32 {
                    b.plan.logit_rows.push(r);
                    owners.push(slot);
                }
            }
        }
        let plan = b.finish();
        model.forward_into(plan, &mut kv, &mut ws, &mut logits)?;
        for (row, &slot) in owners.iter().enumerate() {
            out[slot].extend_from_slice(&logits[row * vocab..(row + 1) * vocab]);
        }
        for s in seqs.iter_mut() {
            s.cached = (s.cached + per_step).min(s.tokens.len());
        }
    }
    Ok(out)
}

/// One generation request (`Default`: empty, no segments, default sampling, no constraint).
#[derive(Debug, Clone, Default)]
pub struct GenRequest {
    /// Prompt ids (at least one).
    pub prompt: Vec<u32>,
    /// Routing of the prompt; generated tokens continue under the last segment's mixture
    /// until the callback remixes.
    pub segments: Segments,
    /// Sampling and stopping.
    pub params: SamplingParams,
    /// Structured output: only tokens this grammar allows are sampled (None: any token).
    pub constraint: Option<crate::constraint::Constraint>,
}

/// What the token callback tells the generator.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Stop this sequence (e.g. a stop string was seen).
    Stop,
    /// Continue, with a new mixture from the token just sampled on (it has not been through
    /// the model yet): sentence-level re-routing, where that token opens the next sentence.
    Remix(Mixture),
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token, or the end of the output grammar.
    Eos,
    /// `max_tokens` reached.
    Length,
    /// The callback stopped it (stop string).
    Stop,
    /// The context (KV capacity) is full.
    Context,
    /// A logit was NaN or none was usable (all `-inf`): the forward pass overflowed (a broken
    /// model, or a mixture weight far from 1). Not a normal end: callers report it as an error.
    NonFinite,
    /// The output grammar ([`GenRequest::constraint`]) could not go on; its error is logged.
    /// Not a normal end: callers report it as an error.
    Grammar,
    /// The logits were finite but the request's masks (allowed tokens, bad words, end tokens
    /// held back by `min_tokens`, the output grammar) left no token to sample. Not a normal
    /// end: callers report it as the request's error.
    NoAllowedToken,
}

/// The result of one request.
#[derive(Debug, Clone)]
pub struct GenOutput {
    /// Generated ids (an EOS that ended generation is not included).
    pub tokens: Vec<u32>,
    /// The end-of-sequence or `stop_token_ids` token that ended generation (sampled, but not
    /// in `tokens`); `None` for every other end, a finished output grammar's too.
    pub stop_token: Option<u32>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Why the output grammar could not go on ([`FinishReason::Grammar`]): the grammar
    /// engine's message (a limit it hit, say); `None` for every other end.
    pub grammar_error: Option<String>,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Final routing, including remixes during generation.
    pub segments: Segments,
}

impl GenOutput {
    /// Tokens sampled for it, the one that ended it included: vLLM's `completion_tokens` (the
    /// end token cost a step and was sampled like any other).
    pub fn completion_tokens(&self) -> usize {
        self.tokens.len() + usize::from(self.stop_token.is_some())
    }
}

/// Timings of a generate call.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenStats {
    /// Prompt tokens processed.
    pub prefill_tokens: usize,
    /// Seconds spent in steps that carried prompt tokens.
    pub prefill_secs: f64,
    /// Tokens decoded.
    pub decode_tokens: usize,
    /// Seconds spent in decode-only steps' forward passes (their picks on the device
    /// included, not those on the host).
    pub decode_secs: f64,
    /// Seconds the host spent picking decode-only steps' tokens from their logit rows
    /// (sampling, grammars; rows side by side on the host's cores), after the forward pass.
    pub decode_pick_secs: f64,
    /// Wall seconds of decode-only steps, each whole ([`crate::scheduler::Scheduler::step`]:
    /// admission, planning, the forward pass, the picks, the events): what a client waits a
    /// step. Less `decode_secs` and `decode_pick_secs`, the host's other work.
    pub decode_wall_secs: f64,
    /// Forward passes.
    pub steps: usize,
}

/// Runs all requests as one batch on a [`Scheduler`] with a slot for each; `on_token(request
/// index, token id)` sees every new token (EOS excluded) and may stop or remix its sequence.
///
/// # Errors
/// Bad requests, backend failures, and a sequence that ended with
/// [`FinishReason::NonFinite`] or [`FinishReason::Grammar`] (the first such, by index:
/// [`failure`]).
/// [`generate_each`] returns those outputs instead.
pub fn generate<B: Backend>(
    model: &Model<B>,
    requests: &[GenRequest],
    eos: &[u32],
    step_tokens: usize,
    on_token: impl FnMut(usize, u32) -> Result<Control>,
) -> Result<(Vec<GenOutput>, GenStats)> {
    let (outputs, stats) = generate_each(model, requests, eos, step_tokens, on_token)?;
    if let Some(e) =
        (outputs.iter().enumerate()).find_map(|(i, o)| failure(&format!("request {i}"), o))
    {
        return Err(e);
    }
    Ok((outputs, stats))
}

/// [`generate`], where a sequence that ended with [`FinishReason::NonFinite`] is one output
/// among the others (its tokens up to the broken row), so a batch keeps every good answer.
pub fn generate_each<B: Backend>(
    model: &Model<B>,
    requests: &[GenRequest],
    eos: &[u32],
    step_tokens: usize,
    mut on_token: impl FnMut(usize, u32) -> Result<Control>,
) -> Result<(Vec<GenOutput>, GenStats)> {
    let ctx = model.max_context;
    let capacity = requests
        .iter()
        .map(|r| r.prompt.len().saturating_add(r.params.max_tokens.max(1)))
        .max()
        .unwrap_or(2)
        .clamp(2, ctx.max(2));
    let mix_k = max_mix(
        requests
            .iter()
            .flat_map(|r| r.segments.iter().map(|s| s.1.len())),
    )
    .max(8);
    let n = requests.len().max(1);
    let cfg = SchedulerConfig {
        max_seqs: n,
        capacity: capacity.min(ctx),
        step_tokens: step_tokens.max(n),
        mix_k,
        sparse_kv: false,
        // A fixed batch computes every prompt, as `bench` and `eval` measure it.
        share_prefixes: false,
    };
    let mut sched = Scheduler::new(model, cfg)?;
    // The callback sees ids only: greedy and plain sampled steps may pick on the device.
    let opts = SeqOptions {
        picks_on_device: true,
        ..SeqOptions::default()
    };
    for (i, r) in requests.iter().enumerate() {
        sched
            .add(model, i as u64, r.clone(), opts)
            .map_err(|e| Error::invalid(format!("request {i}: {e}")))?;
    }
    let mut outputs: Vec<Option<GenOutput>> = vec![None; requests.len()];
    while sched.has_work() {
        let report = sched.step(model, eos, |ev| match ev {
            Event::Token { id, token, .. } => on_token(id as usize, token),
            Event::PromptLogits { .. } => Ok(Control::Continue),
        })?;
        for (id, out) in report.finished {
            outputs[id as usize] = Some(out);
        }
    }
    let outputs = outputs
        .into_iter()
        .map(|o| o.expect("every request finishes before the scheduler idles"))
        .collect();
    Ok((outputs, sched.stats.clone()))
}

/// The error for a sequence (`who`: "request 3") that ended abnormally
/// ([`FinishReason::NonFinite`], [`FinishReason::Grammar`],
/// [`FinishReason::NoAllowedToken`]); `None` for a normal end.
pub fn failure(who: &str, out: &GenOutput) -> Option<Error> {
    let generated = out.tokens.len();
    match out.finish {
        FinishReason::NonFinite => Some(non_finite(who, generated)),
        FinishReason::Grammar => Some(Error::invalid(format!(
            "{who}: the output format could not go on after {generated} generated tokens: {}",
            out.grammar_error.as_deref().unwrap_or("(no message)")
        ))),
        FinishReason::NoAllowedToken => Some(Error::invalid(format!(
            "{who}: no token could be sampled at generated token {generated}: the allowed \
             tokens, bad words, end tokens held back by min_tokens and the output format \
             together allow none"
        ))),
        _ => None,
    }
}

/// The error for a sequence (`who`: "request 3") that ended with [`FinishReason::NonFinite`]
/// after `generated` tokens.
pub fn non_finite(who: &str, generated: usize) -> Error {
    Error::invalid(format!(
        "{who}: a NaN logit, or no finite logit, at generated token {generated}: the forward \
         pass overflowed; check the mixture's weights (far from 1?) and the \
         model's weights and config"
    ))
}
