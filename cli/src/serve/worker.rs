//! The engine thread: it owns the model, the KV cache and the continuous-batching scheduler,
//! takes commands from the HTTP side through a channel, and answers each request through a
//! channel of its own. Between steps it admits new sequences, drops those whose client went
//! away, and applies adapter loads and unloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlp_engine::generate::{Control, FinishReason, GenRequest};
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::model::Model;
use dlp_engine::scheduler::{Event as StepEvent, Scheduler, SchedulerConfig, SeqOptions};
use dlp_engine::tokenizer::TextTokenizer;
use dlp_engine::Backend;
use tokio::sync::mpsc::UnboundedSender;

use super::error::ApiError;
use crate::pipeline::TextStream;
use crate::routing::{Decision, Routing};

pub use super::protocol::{
    token_logprob, Cmd, Event, NamedMix, SegmentInfo, SeqSpec, Shared, Submission, TokenLogprob,
};

/// A sequence the engine is serving.
struct Live<'t> {
    events: UnboundedSender<Event>,
    choice: usize,
    prompt: Vec<u32>,
    text: TextStream<'t>,
    logprobs: Option<usize>,
    prompt_logprobs: Option<usize>,
    reroute: bool,
    decisions: Vec<Decision>,
    arrived: Instant,
    first_token: bool,
    format_param: Option<std::borrow::Cow<'static, str>>,
}

/// Where the worker is in a shutdown.
#[derive(Default)]
struct Stop {
    /// [`Cmd::Abort`]: the running requests were ended; no more are let in.
    aborted: bool,
    /// [`Cmd::Shutdown`]: return once idle.
    shutdown: bool,
}

/// The engine loop; returns when told to shut down (or the HTTP side is gone).
pub struct Worker<'t, B: Backend> {
    /// The model with its adapters.
    pub model: Model<B>,
    /// Each loaded adapter (in slot order) and its directory.
    pub adapters: Vec<(PeftAdapter, PathBuf)>,
    /// The tokenizer.
    pub tok: &'t TextTokenizer,
    /// The router matched to the current adapter slots.
    pub routing: Option<Routing>,
    /// Ids that end generation.
    pub eos: Vec<u32>,
    /// Scheduler sizes.
    pub config: SchedulerConfig,
    /// Shared with the HTTP side.
    pub shared: Arc<Shared>,
}

impl<'t, B: Backend> Worker<'t, B> {
    /// Runs until [`Cmd::Shutdown`] (once idle) or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Cmd>) -> anyhow::Result<()> {
        let mut sched = Scheduler::new(&self.model, self.config)?;
        let mut live: HashMap<u64, Live<'t>> = HashMap::new();
        let mut unloading: Vec<String> = Vec::new();
        let mut next_id = 0u64;
        let mut stop = Stop::default();
        let m = &self.shared.metrics;
        m.kv_slots_total.set(self.config.max_seqs as i64);
        m.adapters_loaded.set(self.adapters.len() as i64);
        loop {
            if !sched.has_work() {
                sched.release_freed(&self.model);
                if stop.shutdown {
                    return Ok(());
                }
                // Idle: wait for work (waking now and then to finish pending unloads).
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok(cmd) => self.command(
                        cmd,
                        &mut sched,
                        &mut live,
                        &mut unloading,
                        &mut next_id,
                        &mut stop,
                    ),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                self.command(
                    cmd,
                    &mut sched,
                    &mut live,
                    &mut unloading,
                    &mut next_id,
                    &mut stop,
                );
            }
            self.drop_disconnected(&mut sched, &mut live);
            self.finish_unloads(&mut sched, &mut unloading);
            self.gauges(&sched);
            if sched.has_work() {
                self.step(&mut sched, &mut live);
            }
        }
    }

    fn command(
        &mut self,
        cmd: Cmd,
        sched: &mut Scheduler<B>,
        live: &mut HashMap<u64, Live<'t>>,
        unloading: &mut Vec<String>,
        next_id: &mut u64,
        stop: &mut Stop,
    ) {
        match cmd {
            // A request prepared while the shutdown's grace ran out (formats compile on one
            // lock) is not let in after the running ones were ended: it had run to its end,
            // holding the exit.
            Cmd::Submit(sub) if stop.aborted => {
                self.shared
                    .outstanding
                    .fetch_sub(sub.seqs.len(), Ordering::SeqCst);
                let _ = sub.events.send(Event::Error(ApiError::unavailable(
                    "the server shut down before this request started",
                )));
            }
            Cmd::Submit(sub) => self.submit(sub, sched, live, unloading, next_id),
            Cmd::Load {
                adapter,
                dir,
                reply,
            } => {
                let _ = reply.send(self.load(adapter, dir, sched, unloading));
            }
            Cmd::Unload { name, reply } => {
                let r = self.unload(&name, unloading);
                let r = r.map(|()| {
                    self.finish_unloads(sched, unloading);
                    !unloading.contains(&name)
                });
                let _ = reply.send(r);
            }
            Cmd::Abort => {
                stop.aborted = true;
                for (id, l) in live.drain() {
                    sched.cancel(id);
                    let _ = l.events.send(Event::Error(ApiError::unavailable(
                        "the server shut down before this request finished",
                    )));
                    self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Cmd::Shutdown => stop.shutdown = true,
        }
    }

    fn names(&self) -> Vec<String> {
        self.model.adapter_names().to_vec()
    }

    /// Resolves a named mixture against the adapters loaded now.
    fn resolve(&self, mix: &NamedMix, unloading: &[String]) -> Result<Vec<(usize, f32)>, ApiError> {
        let names = self.model.adapter_names();
        mix.iter()
            .map(|(n, w)| match names.iter().position(|a| a == n) {
                Some(slot) if !unloading.contains(n) => Ok((slot, *w)),
                _ => Err(ApiError::not_found(format!(
                    "adapter `{n}` is not loaded (it may have been unloaded)"
                ))
                .code("adapter_not_found")),
            })
            .collect()
    }

    fn submit(
        &mut self,
        sub: Submission,
        sched: &mut Scheduler<B>,
        live: &mut HashMap<u64, Live<'t>>,
        unloading: &[String],
        next_id: &mut u64,
    ) {
        let n = sub.seqs.len();
        tracing::debug!(
            seqs = n,
            waited_ms = sub.arrived.elapsed().as_secs_f64() * 1e3,
            "request reached the engine"
        );
        let mut added = Vec::with_capacity(n);
        let mut failed = None;
        for mut spec in sub.seqs {
            let segments = spec
                .segments
                .iter()
                .map(|(first, mix)| Ok((*first, self.resolve(mix, unloading)?)))
                .collect::<Result<Vec<_>, ApiError>>();
            let segments = match segments {
                Ok(s) => s,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let id = *next_id;
            *next_id += 1;
            let prompt_len = spec.prompt.len();
            let req = GenRequest {
                prompt: spec.prompt.clone(),
                segments,
                constraint: spec.constraint.take(),
                params: spec.params.clone(),
            };
            let eos: &[u32] = if spec.ignore_eos { &[] } else { &self.eos };
            let text_opts = std::mem::take(&mut spec.text).eos_first(eos);
            let opts = SeqOptions {
                prompt_logits: spec.prompt_logprobs.is_some(),
                ignore_eos: spec.ignore_eos,
                // A token's logit row is read only for its log-probabilities.
                picks_on_device: spec.logprobs.is_none(),
            };
            if let Err(e) = sched.add(&self.model, id, req, opts) {
                failed = Some(ApiError::bad(e.to_string()));
                break;
            }
            added.push(id);
            for (_, mix) in &spec.segments {
                self.shared.metrics.routed_mixture(mix);
            }
            self.shared.metrics.prompt_tokens.inc_by(prompt_len as u64);
            live.insert(
                id,
                Live {
                    events: sub.events.clone(),
                    choice: spec.choice,
                    reroute: text_opts.reroute,
                    text: TextStream::new(self.tok, prompt_len, text_opts),
                    prompt: spec.prompt,
                    logprobs: spec.logprobs,
                    prompt_logprobs: spec.prompt_logprobs,
                    decisions: spec.decisions,
                    arrived: sub.arrived,
                    first_token: true,
                    format_param: spec.format_param,
                },
            );
        }
        if let Some(e) = failed {
            for id in added {
                sched.cancel(id);
                live.remove(&id);
            }
            self.shared.outstanding.fetch_sub(n, Ordering::SeqCst);
            let _ = sub.events.send(Event::Error(e));
        }
        self.gauges(sched);
    }

    fn load(
        &mut self,
        adapter: PeftAdapter,
        dir: PathBuf,
        sched: &mut Scheduler<B>,
        unloading: &[String],
    ) -> Result<(), ApiError> {
        let name = adapter.name.clone();
        if self.model.adapter_names().contains(&name) {
            let why = if unloading.contains(&name) {
                " (it is being unloaded; retry once its requests have finished)"
            } else {
                ""
            };
            return Err(ApiError::bad_param(
                "lora_name",
                format!("the adapter `{name}` has already been loaded{why}"),
            ));
        }
        self.adapters.push((adapter, dir));
        if let Err(e) = self.apply_adapters(sched) {
            self.adapters.pop();
            // Back to the adapters that worked.
            let _ = self.apply_adapters(sched);
            return Err(ApiError::bad_param(
                "lora_path",
                format!("adapter `{name}`: {e:#}"),
            ));
        }
        tracing::info!(adapter = %name, "adapter loaded");
        Ok(())
    }

    fn unload(&mut self, name: &str, unloading: &mut Vec<String>) -> Result<(), ApiError> {
        let names = self.model.adapter_names();
        // Adapters being unloaded serve no new request: not listed as loaded.
        let loaded: Vec<&str> = (names.iter().map(String::as_str))
            .filter(|n| !unloading.iter().any(|u| u == n))
            .collect();
        if !loaded.contains(&name) {
            let what = if names.iter().any(|n| n == name) {
                "is being unloaded already (requests that were running with it finish first)"
            } else {
                "cannot be found"
            };
            return Err(ApiError::not_found(format!(
                "the adapter `{name}` {what}; loaded: {}",
                if loaded.is_empty() {
                    "none".into()
                } else {
                    loaded.join(", ")
                }
            ))
            .param("lora_name")
            .code("adapter_not_found"));
        }
        if let Some(r) = &self.routing {
            if r.labels().iter().any(|l| l == name) {
                return Err(ApiError::bad_param(
                    "lora_name",
                    format!("the adapter `{name}` is one of the router's labels (model `auto` routes to it); it stays loaded while the router is"),
                ));
            }
        }
        unloading.push(name.to_string());
        Ok(())
    }

    /// Removes adapters being unloaded that no live sequence uses any more.
    fn finish_unloads(&mut self, sched: &mut Scheduler<B>, unloading: &mut Vec<String>) {
        let mut i = 0;
        while i < unloading.len() {
            let Some(slot) = self
                .model
                .adapter_names()
                .iter()
                .position(|n| *n == unloading[i])
            else {
                unloading.remove(i);
                continue;
            };
            if sched.mixtures().any(|m| m.iter().any(|&(s, _)| s == slot)) {
                i += 1;
                continue;
            }
            let (gone, _) = self.adapters.remove(slot);
            if let Err(e) = self.apply_adapters(sched) {
                // Keep serving with the adapter still in place.
                tracing::error!(adapter = %gone.name, "unloading failed: {e:#}");
                self.adapters.insert(slot, (gone, PathBuf::new()));
                i += 1;
                continue;
            }
            sched.remap_slots(|s| if s > slot { s - 1 } else { s });
            self.shared.metrics.forget_adapter(&gone.name);
            tracing::info!(adapter = %gone.name, "adapter unloaded");
            unloading.remove(i);
        }
    }

    /// Puts `self.adapters` on the model and everything that depends on their slots.
    fn apply_adapters(&mut self, sched: &mut Scheduler<B>) -> anyhow::Result<()> {
        let list: Vec<PeftAdapter> = self.adapters.iter().map(|(a, _)| a.clone()).collect();
        self.model.set_adapters(&list)?;
        sched.adapters_changed(&self.model)?;
        let names = self.names();
        if let Some(r) = &mut self.routing {
            r.rematch(&names)?;
        }
        self.shared.metrics.adapters_loaded.set(names.len() as i64);
        Ok(())
    }

    fn drop_disconnected(&self, sched: &mut Scheduler<B>, live: &mut HashMap<u64, Live<'t>>) {
        let gone: Vec<u64> = live
            .iter()
            .filter(|(_, l)| l.events.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            sched.cancel(id);
            live.remove(&id);
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            self.shared.metrics.cancelled.inc();
        }
    }

    fn step(&mut self, sched: &mut Scheduler<B>, live: &mut HashMap<u64, Live<'t>>) {
        let names = self.names();
        let routing = self.routing.as_ref();
        let metrics = &self.shared.metrics;
        let result = sched.step(&self.model, &self.eos, |ev| match ev {
            StepEvent::PromptLogits { id, pos, logits } => {
                if let Some(l) = live.get(&id) {
                    if let (Some(n), Some(&next)) = (l.prompt_logprobs, l.prompt.get(pos + 1)) {
                        let lp = token_logprob(logits, next, n);
                        let _ = l.events.send(Event::Prompt {
                            choice: l.choice,
                            lp,
                        });
                    }
                }
                Ok(Control::Continue)
            }
            StepEvent::Token { id, token, logits } => {
                let Some(l) = live.get_mut(&id) else {
                    return Ok(Control::Stop);
                };
                metrics.generation_tokens.inc();
                if std::mem::replace(&mut l.first_token, false) {
                    let t = l.arrived.elapsed().as_secs_f64();
                    metrics.time_to_first_token.observe(t);
                    tracing::debug!(id, ttft_ms = t * 1e3, "first token");
                }
                let lp = l.logprobs.map(|n| token_logprob(logits, token, n));
                let (control, decision) =
                    l.text.push(token, routing.filter(|_| l.reroute), &names)?;
                if let Some(d) = decision {
                    metrics.routed_mixture(&d.mixture);
                    l.decisions.push(d);
                }
                let text = l.text.take_ready(false).to_string();
                let sent = l.events.send(Event::Token {
                    choice: l.choice,
                    lp,
                    text,
                });
                // A client that went away frees its slot this step.
                if sent.is_err() {
                    metrics.cancelled.inc();
                    return Ok(Control::Stop);
                }
                Ok(control)
            }
        });
        match result {
            Ok(report) => {
                // Before any answer goes out: a client that reads /metrics after its answer
                // sees its sequence gone.
                self.gauges(sched);
                metrics.step_seconds.observe(report.secs);
                metrics.step_tokens.observe(report.tokens as f64);
                metrics
                    .prefix_shared_tokens
                    .inc_by(report.shared_tokens as u64);
                for (id, out) in report.finished {
                    let Some(mut l) = live.remove(&id) else {
                        continue;
                    };
                    // The end token is generated too (no Token event carries it), as
                    // `usage.completion_tokens` counts it.
                    if out.stop_token.is_some() {
                        metrics.generation_tokens.inc();
                    }
                    self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                    let who = format!("choice {}", l.choice);
                    if let Some(e) = dlp_engine::generate::failure(&who, &out) {
                        let e = match out.finish {
                            // The request's own masks, and its format at a limit of the grammar
                            // engine (`max is 2000` items of a parser row): its fault, not the
                            // server's.
                            FinishReason::NoAllowedToken => {
                                ApiError::bad(e.to_string()).code("no_allowed_token")
                            }
                            FinishReason::Grammar => {
                                let e = ApiError::bad(e.to_string()).code("grammar_error");
                                match &l.format_param {
                                    Some(p) => e.param(p.clone()),
                                    None => e,
                                }
                            }
                            _ => ApiError::internal(e.to_string()).code("non_finite_logits"),
                        };
                        let _ = l.events.send(Event::Error(e));
                        continue;
                    }
                    if let Err(e) = l.text.push_end(&out) {
                        let _ = l
                            .events
                            .send(Event::Error(ApiError::internal(e.to_string())));
                        continue;
                    }
                    let tail = l.text.take_ready(true).to_string();
                    if !tail.is_empty() {
                        let _ = l.events.send(Event::Text {
                            choice: l.choice,
                            text: tail,
                        });
                    }
                    let segments = out
                        .segments
                        .iter()
                        .map(|(first, mix)| {
                            let d = l.decisions.iter().find(|d| d.first_token == *first);
                            SegmentInfo {
                                first_token: *first,
                                mixture: mix.iter().map(|&(s, w)| (names[s].clone(), w)).collect(),
                                source: d.map_or("request", |d| d.source),
                                text: d.map(|d| d.text.clone()),
                            }
                        })
                        .collect();
                    let _ = l.events.send(Event::Done {
                        choice: l.choice,
                        finish: out.finish,
                        completion_tokens: out.completion_tokens(),
                        stop_reason: l.text.stop_reason(&out),
                        segments,
                    });
                }
            }
            Err(e) => {
                // Should not happen (requests are checked on admission): fail everything
                // running rather than serve from a state nobody can vouch for.
                tracing::error!("engine step failed: {e:#}");
                for (id, l) in live.drain() {
                    sched.cancel(id);
                    let _ = l.events.send(Event::Error(ApiError::internal(format!(
                        "the engine failed: {e}"
                    ))));
                    self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        self.gauges(sched);
    }

    fn gauges(&self, sched: &Scheduler<B>) {
        let m = &self.shared.metrics;
        m.queue_length.set(sched.waiting() as i64);
        m.running.set(sched.running() as i64);
        m.kv_positions_used.set(sched.kv_positions() as i64);
    }
}
