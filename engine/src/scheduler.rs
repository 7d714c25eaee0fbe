//! Continuous batching: sequences join and leave between steps. Every step runs one forward
//! pass for the next token of every decoding sequence plus prompt chunks of newly admitted
//! ones (decodes first, so a long prompt never stalls running streams), samples where a
//! sequence's last token went through, and retires finished sequences at once, freeing their
//! KV slot for the next waiting request.
//!
//! [`crate::generate::generate`] (a fixed batch) and the HTTP server both run on it, so a
//! request served alone takes exactly the steps `generate` takes for it.

use std::collections::VecDeque;
use std::time::Instant;

use crate::backend::Backend;
use crate::constraint::TokenConstraint;
use crate::error::{Error, Result};
use crate::generate::{Control, FinishReason, GenOutput, GenRequest, GenStats, PlanBuilder, Seq};
use crate::kv_cache::KvCache;
use crate::lora::check_mixtures;
use crate::model::{Model, Workspace};
use crate::prefix::{choose, Fork};
use crate::sampler::Sampler;

mod forks;
mod pick;

use pick::{sample_rows, set_end_tokens};

/// Sizes of a [`Scheduler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// KV-cache slots: sequences that run at once (more wait in a queue).
    pub max_seqs: usize,
    /// Positions per slot: the longest prompt + generation a sequence may reach.
    pub capacity: usize,
    /// Most tokens per forward pass (decode tokens plus prompt chunks); at least `max_seqs`.
    pub step_tokens: usize,
    /// Most adapters in one mixture.
    pub mix_k: usize,
    /// Slots are sized for far more positions than most sequences use (a server's whole
    /// context per slot): memory is committed as written, in small pages.
    pub sparse_kv: bool,
    /// A sequence that shares a prefix of at least [`crate::prefix::MIN_SHARED`] positions
    /// with a running one copies that one's KV rows instead of recomputing them, where the
    /// backend can ([`Backend::copies_kv`]; not with prompt logits).
    pub share_prefixes: bool,
}

/// Per-sequence options of [`Scheduler::add`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqOptions {
    /// Report every prompt position's logits ([`Event::PromptLogits`]); with `max_tokens` 0
    /// the sequence ends after its prefill.
    pub prompt_logits: bool,
    /// Keep generating through end-of-sequence tokens (until `max_tokens`, a stop, or the
    /// context): for load tests that need a fixed length (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// The caller reads no logit row of this sequence's tokens: while its sampling is plain
    /// (greedy, [`Sampler::picks_argmax`], or a temperature alone,
    /// [`Sampler::plain_temperature`]), no grammar, and every row of a step is such, the step
    /// picks on the device ([`Model::forward_argmax`], [`Model::forward_sample`]) and
    /// [`Event::Token`]'s `logits` is empty.
    pub picks_on_device: bool,
}

/// What a step reports to its callback, one event per logit row.
#[derive(Debug)]
pub enum Event<'a> {
    /// Logits at prompt position `pos` (they predict token `pos + 1`), `[vocab]`; only for
    /// sequences added with `prompt_logits`.
    PromptLogits {
        /// The sequence.
        id: u64,
        /// Position in the prompt.
        pos: usize,
        /// The logit row.
        logits: &'a [f32],
    },
    /// A token was sampled (not an end-of-sequence token) from `logits`. The callback's
    /// [`Control`] decides how the sequence goes on.
    Token {
        /// The sequence.
        id: u64,
        /// The sampled id.
        token: u32,
        /// The logit row it was sampled from (raw model logits); empty where the step picked
        /// on the device ([`SeqOptions::picks_on_device`]).
        logits: &'a [f32],
    },
}

/// A sequence in a KV slot.
struct Running {
    id: u64,
    seq: Seq,
    prompt_len: usize,
    max_tokens: usize,
    sampler: Sampler,
    /// The output grammar, if any.
    constraint: Option<Box<dyn TokenConstraint>>,
    opts: SeqOptions,
    /// Admission order: prompt chunks are scheduled oldest first.
    admitted: u64,
    /// A shared prefix to copy from a leader; its prompt is not planned until then.
    fork: Option<Fork>,
}

/// A queued request.
struct Waiting {
    id: u64,
    req: GenRequest,
    opts: SeqOptions,
}

/// Whose logits a row of the step's output is.
#[derive(Clone, Copy)]
struct Row {
    slot: usize,
    /// Position of the token in its sequence.
    pos: usize,
    /// A prompt row wanted for its own sake.
    prompt: bool,
    /// The sequence's last token: sample from this row.
    sample: bool,
}

/// What one [`Scheduler::step`] did.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    /// Tokens through the model.
    pub tokens: usize,
    /// Of them, prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt positions copied from a running sequence's KV rows instead ([`crate::prefix`]).
    pub shared_tokens: usize,
    /// Tokens sampled (EOS included).
    pub sampled: usize,
    /// Seconds in the forward pass.
    pub secs: f64,
    /// Sequences that ended this step, with their results.
    pub finished: Vec<(u64, GenOutput)>,
}

/// The continuous-batching loop state: KV cache, scratch, running and waiting sequences.
pub struct Scheduler<B: Backend> {
    cfg: SchedulerConfig,
    kv: KvCache<B>,
    ws: Workspace<B>,
    slots: Vec<Option<Running>>,
    waiting: VecDeque<Waiting>,
    admissions: u64,
    /// Slots freed since the last step, with the positions they held (`sparse_kv` only).
    released: Vec<(usize, usize)>,
    builder: PlanBuilder,
    rows: Vec<Row>,
    logits: Vec<f32>,
    /// A step's picks made on the device ([`Model::forward_argmax`],
    /// [`Model::forward_sample`]), a row each.
    picks: Vec<Option<u32>>,
    /// Totals since creation, as [`crate::generate::generate`] reports them.
    pub stats: GenStats,
}

impl<B: Backend> Scheduler<B> {
    /// Allocates the KV cache (`max_seqs` slots of `capacity` positions) and scratch for steps
    /// of `step_tokens` tokens on `model`'s backend.
    ///
    /// # Errors
    /// A zero size, `capacity` past the model's context, or a failed allocation.
    pub fn new(model: &Model<B>, cfg: SchedulerConfig) -> Result<Self> {
        if cfg.max_seqs == 0 || cfg.capacity < 2 || cfg.step_tokens < cfg.max_seqs {
            return Err(Error::invalid(format!(
                "scheduler: {} sequences of {} positions with {} tokens per step (need at least 1 sequence, 2 positions and a step of at least one token per sequence)",
                cfg.max_seqs, cfg.capacity, cfg.step_tokens
            )));
        }
        Ok(Scheduler {
            kv: model.kv_cache_with(cfg.max_seqs, cfg.capacity, cfg.sparse_kv)?,
            ws: model.workspace(cfg.step_tokens, cfg.mix_k)?,
            slots: (0..cfg.max_seqs).map(|_| None).collect(),
            waiting: VecDeque::new(),
            admissions: 0,
            released: Vec::new(),
            builder: PlanBuilder::new(),
            rows: Vec::new(),
            logits: Vec::new(),
            picks: Vec::new(),
            stats: GenStats::default(),
            cfg,
        })
    }

    /// The sizes it was built with.
    pub fn config(&self) -> SchedulerConfig {
        self.cfg
    }

    /// Rebuilds the step scratch after the model's adapters changed (their largest rank sizes
    /// the LoRA buffer). Running sequences are not disturbed.
    pub fn adapters_changed(&mut self, model: &Model<B>) -> Result<()> {
        self.ws = model.workspace(self.cfg.step_tokens, self.cfg.mix_k)?;
        Ok(())
    }

    /// Checks that `req` can run here: sampling parameters, a prompt of 1 to `capacity - 1`
    /// tokens inside the vocabulary, segments from token 0 in order, mixtures of loaded
    /// adapters with weights from 0 to [`MAX_MIX_WEIGHT`](crate::lora::MAX_MIX_WEIGHT) and at
    /// most `mix_k` entries.
    pub fn check(&self, model: &Model<B>, req: &GenRequest) -> Result<()> {
        req.params
            .validate()
            .map_err(|e| Error::invalid(e.to_string()))?;
        if req.prompt.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        if req.prompt.len() >= self.cfg.capacity {
            return Err(Error::invalid(format!(
                "the prompt has {} tokens, the context holds {} (leave room for at least one new token)",
                req.prompt.len(),
                self.cfg.capacity,
            )));
        }
        let vocab = model.config.embed_rows();
        if let Some(t) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {t} is outside the vocabulary ({vocab})"
            )));
        }
        if let Some((first, _)) = req.segments.first() {
            if *first != 0 {
                return Err(Error::invalid("the first segment must start at token 0"));
            }
        }
        if req.segments.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(Error::invalid("segments must start at increasing tokens"));
        }
        check_mixtures(
            req.segments.iter().map(|s| &s.1),
            model.adapter_names().len(),
            self.cfg.mix_k,
        )
    }

    /// Queues a request under `id` (ids are the caller's; they must be unique among live
    /// sequences), with `opts`.
    ///
    /// # Errors
    /// What [`Scheduler::check`] finds.
    pub fn add(
        &mut self,
        model: &Model<B>,
        id: u64,
        req: GenRequest,
        opts: SeqOptions,
    ) -> Result<()> {
        self.check(model, &req)?;
        if opts.ignore_eos && req.constraint.is_some() {
            return Err(Error::invalid(
                "ignore_eos with an output grammar: the grammar ends where an end-of-sequence token may come",
            ));
        }
        self.waiting.push_back(Waiting { id, req, opts });
        Ok(())
    }

    /// Drops sequence `id` (queued or running) at once, freeing its slot; false if unknown.
    pub fn cancel(&mut self, id: u64) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            self.waiting.remove(i);
            return true;
        }
        match self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|r| r.id == id))
        {
            Some(slot) => {
                let r = self.slots[slot].take().expect("found above");
                if self.cfg.sparse_kv {
                    self.released.push((slot, r.seq.tokens.len()));
                }
                true
            }
            None => false,
        }
    }

    /// Sequences in KV slots.
    pub fn running(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Sequences waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// KV positions held by running sequences (prompt and generated tokens so far).
    pub fn kv_positions(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|r| r.seq.tokens.len())
            .sum()
    }

    /// Whether anything is queued or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(Option::is_some)
    }

    /// Every mixture of every live sequence (queued or running), for callers that must know
    /// which adapters are in use.
    pub fn mixtures(&self) -> impl Iterator<Item = &crate::lora::Mixture> {
        let running = self.slots.iter().flatten().flat_map(|r| &r.seq.segments);
        let queued = self.waiting.iter().flat_map(|w| &w.req.segments);
        running.chain(queued).map(|s| &s.1)
    }

    /// Rewrites the adapter slot of every mixture entry of every live sequence (after the
    /// model's adapter list changed). `map` returns the new slot.
    pub fn remap_slots(&mut self, map: impl Fn(usize) -> usize) {
        let running = self.slots.iter_mut().flatten().map(|r| &mut r.seq.segments);
        let queued = self.waiting.iter_mut().map(|w| &mut w.req.segments);
        for segs in running.chain(queued) {
            for (_, m) in segs.iter_mut() {
                for e in m.iter_mut() {
                    e.0 = map(e.0);
                }
            }
        }
    }

    /// Moves waiting requests into free slots; requests that end before any forward
    /// (`max_tokens` 0 without prompt logits) finish at once.
    fn admit(&mut self, finished: &mut Vec<(u64, GenOutput)>, share: bool) {
        while let Some(free) = self.slots.iter().position(Option::is_none) {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            let prompt_len = w.req.prompt.len();
            let segments = if w.req.segments.is_empty() {
                vec![(0, vec![])]
            } else {
                w.req.segments
            };
            if w.req.params.max_tokens == 0 && !w.opts.prompt_logits {
                finished.push((
                    w.id,
                    GenOutput {
                        tokens: Vec::new(),
                        stop_token: None,
                        finish: FinishReason::Length,
                        grammar_error: None,
                        prompt_tokens: prompt_len,
                        segments,
                    },
                ));
                continue;
            }
            self.admissions += 1;
            self.stats.prefill_tokens += prompt_len;
            let fork = (share && !w.opts.prompt_logits)
                .then(|| choose(&w.req.prompt, &segments, prompt_len, self.leaders(false)))
                .flatten();
            self.slots[free] = Some(Running {
                id: w.id,
                seq: Seq {
                    tokens: w.req.prompt,
                    segments,
                    cached: 0,
                },
                prompt_len,
                max_tokens: w.req.params.max_tokens,
                sampler: Sampler::new(w.req.params),
                constraint: w.req.constraint.map(|c| c.0),
                opts: w.opts,
                admitted: self.admissions,
                fork,
            });
        }
    }

    /// Lays out the next step: every decoding sequence's next token, then prompt chunks
    /// (oldest admission first) up to `step_tokens`. Returns the number of prompt tokens in it.
    fn plan(&mut self) -> usize {
        let b = &mut self.builder;
        b.clear();
        self.rows.clear();
        let mut budget = self.cfg.step_tokens;
        let mut order: Vec<(bool, u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|r| r.fork.is_none())
                    .map(|r| (r.seq.cached < r.prompt_len, r.admitted, i))
            })
            .collect();
        // Decodes (false) before prefills (true), each by admission.
        order.sort_unstable();
        let mut prompt_tokens = 0;
        for (_, _, slot) in order {
            if budget == 0 {
                break;
            }
            let r = self.slots[slot].as_mut().expect("listed above");
            let s = &mut r.seq;
            let (from, to) = (s.cached, (s.cached + budget).min(s.tokens.len()));
            prompt_tokens += r.prompt_len.clamp(from, to) - from;
            let first = b.plan.token_ids.len();
            b.push(slot, s, from, to);
            budget -= to - from;
            // Advanced before the forward: if it fails, the step's error ends everything.
            s.cached = to;
            for (k, pos) in (from..to).enumerate() {
                let prompt = r.opts.prompt_logits && pos < r.prompt_len;
                let sample = pos + 1 == s.tokens.len();
                if prompt || sample {
                    b.plan.logit_rows.push((first + k) as u32);
                    self.rows.push(Row {
                        slot,
                        pos,
                        prompt,
                        sample,
                    });
                }
            }
        }
        prompt_tokens
    }

    /// Gives back the KV-cache memory of the slots freed since the last step (`sparse_kv`).
    /// Each step does it first; a server gone idle calls it itself, since no step runs then
    /// (the last requests' pages had stayed resident: 1.9 GB after an n = 16 request).
    pub fn release_freed(&mut self, model: &Model<B>) {
        for (slot, positions) in self.released.drain(..) {
            self.kv
                .release_slot(&model.backend, &model.config, slot, positions);
        }
    }

    /// Admits what fits, runs one forward pass, reports every logit row to `on_event`, and
    /// retires sequences that ended (EOS in `eos` or one of the request's `stop_token_ids`,
    /// `max_tokens`, a [`Control::Stop`], or a full KV slot). Does nothing when idle.
    ///
    /// # Errors
    /// A failed forward pass or an error of `on_event`; the running sequences are then in an
    /// unspecified state (drop the scheduler or cancel them).
    pub fn step(
        &mut self,
        model: &Model<B>,
        eos: &[u32],
        mut on_event: impl FnMut(Event<'_>) -> Result<Control>,
    ) -> Result<StepReport> {
        let t_step = Instant::now();
        let mut report = StepReport::default();
        self.release_freed(model);
        let share = self.cfg.share_prefixes && model.backend.copies_kv();
        self.admit(&mut report.finished, share);
        if self.slots.iter().all(Option::is_none) {
            return Ok(report);
        }
        report.shared_tokens = self.resolve_forks(model)?;
        report.prompt_tokens = self.plan();
        let has_prompt = report.prompt_tokens > 0;
        let (tokens, secs, on_device) = self.forward(model)?;
        (report.tokens, report.secs) = (tokens, secs);
        let vocab = model.config.vocab_size;
        // Again now that this step's rows are in: a leader that ends below (its first token
        // an end, `max_tokens` 1) still leaves its prefix to its followers.
        report.shared_tokens += self.resolve_forks(model)?;
        self.stats.steps += 1;
        if has_prompt {
            self.stats.prefill_secs += report.secs;
        } else {
            self.stats.decode_secs += report.secs;
        }
        let capacity = self.cfg.capacity;
        let t_pick = Instant::now();
        let mut host_picks = if on_device {
            Vec::new()
        } else {
            sample_rows(&mut self.slots, &self.rows, &self.logits, vocab, eos)
        };
        if !has_prompt {
            self.stats.decode_pick_secs += t_pick.elapsed().as_secs_f64();
        }
        for (i, row) in self.rows.iter().enumerate() {
            let logits: &[f32] = if on_device {
                &[]
            } else {
                &self.logits[i * vocab..(i + 1) * vocab]
            };
            let Some(r) = self.slots[row.slot].as_mut() else {
                continue;
            };
            if row.prompt {
                on_event(Event::PromptLogits {
                    id: r.id,
                    pos: row.pos,
                    logits,
                })?;
            }
            if !row.sample {
                continue;
            }
            let mut finish = None;
            let mut stop_token = None;
            let mut grammar_error = None;
            let picked = if on_device {
                set_end_tokens(r, eos);
                (r.max_tokens > 0).then(|| Ok(r.sampler.accept_argmax(self.picks[i])))
            } else {
                host_picks[i].take()
            };
            match picked {
                None => finish = Some(FinishReason::Length),
                Some(Err(e)) => {
                    tracing::warn!("sequence {}: the output grammar failed: {e}", r.id);
                    finish = Some(FinishReason::Grammar);
                    grammar_error = Some(e);
                }
                // No usable logit: the forward pass's fault (a NaN, or nothing finite), or
                // else the request's masks left nothing.
                Some(Ok(None))
                    if on_device
                        || logits.iter().any(|x| x.is_nan())
                        || !logits.iter().any(|x| x.is_finite()) =>
                {
                    finish = Some(FinishReason::NonFinite)
                }
                Some(Ok(None)) => finish = Some(FinishReason::NoAllowedToken),
                Some(Ok(Some(id))) => {
                    report.sampled += 1;
                    if !has_prompt {
                        self.stats.decode_tokens += 1;
                    }
                    let stop_id = r.sampler.params().stop_token_ids.contains(&id);
                    if stop_id || (eos.contains(&id) && !r.opts.ignore_eos) {
                        finish = Some(FinishReason::Eos);
                        stop_token = Some(id);
                    } else {
                        r.seq.tokens.push(id);
                        match on_event(Event::Token {
                            id: r.id,
                            token: id,
                            logits,
                        })? {
                            Control::Continue => {}
                            Control::Stop => finish = Some(FinishReason::Stop),
                            Control::Remix(m) => {
                                check_mixtures([&m], model.adapter_names().len(), self.cfg.mix_k)?;
                                r.seq.segments.push((r.seq.tokens.len() - 1, m));
                            }
                        }
                        let generated = r.seq.tokens.len() - r.prompt_len;
                        if finish.is_none() {
                            if r.constraint.as_ref().is_some_and(|c| c.finished()) {
                                // Nothing may follow but an end-of-sequence token: end
                                // without spending a step on it.
                                finish = Some(FinishReason::Eos);
                            } else if generated >= r.max_tokens {
                                finish = Some(FinishReason::Length);
                            } else if r.seq.tokens.len() >= capacity {
                                finish = Some(FinishReason::Context);
                            }
                        }
                    }
                }
            }
            if let Some(f) = finish {
                let r = self.slots[row.slot].take().expect("checked above");
                if self.cfg.sparse_kv {
                    self.released.push((row.slot, r.seq.tokens.len()));
                }
                report.finished.push((
                    r.id,
                    GenOutput {
                        tokens: r.seq.tokens[r.prompt_len..].to_vec(),
                        stop_token,
                        finish: f,
                        grammar_error,
                        prompt_tokens: r.prompt_len,
                        segments: r.seq.segments,
                    },
                ));
            }
        }
        if !has_prompt {
            self.stats.decode_wall_secs += t_step.elapsed().as_secs_f64();
        }
        Ok(report)
    }
}
