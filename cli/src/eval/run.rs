//! Running the evaluation: prompts prepared once, then every mode (and every top-p of the
//! sweep) over all examples in batches, scored as they finish.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use dlp_engine::generate::{
    generate_each, score_batch, FinishReason, GenRequest, ScoreInput, ScoreMode,
};
use dlp_engine::model::Model;
use dlp_engine::tokenizer::TextTokenizer;
use dlp_engine::{Backend, Sampler, SamplingParams};

use super::composed;
use super::data::{self, Example};
use super::metrics::{self, Kind};
use super::modes::{Chooser, Mode, TokenRouter};
use super::report::{ModeRun, Outcome, Report};
use super::EvalArgs;
use crate::common::{load, Loaded};
use crate::pipeline::{encode_prompt, render_prompt, Rendered, TextOptions, TextStream};
use crate::progress::Progress;
use crate::routing::{load_router, select_config, RouteBy, Routing};

/// A prompt ready to run.
pub struct Item {
    pub rendered: Rendered,
    pub ids: Vec<u32>,
    pub starts: Vec<usize>,
    pub max_tokens: usize,
    /// The task's adapter slot (None: a composed prompt).
    pub oracle: Option<usize>,
}

/// A completion: its text, the tokens generated, the mean adapters per mixture it ran under,
/// and whether it ended at a non-finite logit row (its text cut there).
pub struct Generated {
    pub text: String,
    pub tokens: usize,
    pub adapters: f32,
    pub non_finite: bool,
}

/// What every generation of a run shares.
pub struct Ctx<'a, B: Backend> {
    pub model: &'a Model<B>,
    pub tok: &'a TextTokenizer,
    pub eos: &'a [u32],
    pub batch: usize,
}

/// The default answer length of a kind (the adapters' accuracy was measured with these).
pub(super) fn default_max_tokens(kind: Kind) -> usize {
    match kind {
        Kind::Mcq => 16,
        Kind::Qa => 200,
    }
}

pub(super) fn prepare(
    tok: &TextTokenizer,
    instruction: &str,
    max_tokens: usize,
    oracle: Option<usize>,
) -> Result<Item> {
    let rendered = render_prompt(tok, true, None, Some(instruction), None)?;
    let (ids, starts) = encode_prompt(tok, &rendered)?;
    Ok(Item {
        rendered,
        ids,
        starts,
        max_tokens,
        oracle,
    })
}

/// The router with its labels pointed at adapters: by name, else `--label-map` / the family's
/// adapter (several labels may share one).
fn routing(args: &EvalArgs, names: &[String], p: f32) -> Result<Option<Routing>> {
    let Some(dir) = &args.router else {
        return Ok(None);
    };
    let router = load_router(dir)?;
    let map = data::parse_label_map(args.label_map.as_deref())?;
    let slots = router
        .labels()
        .iter()
        .map(|l| {
            let a = data::adapter_for(l, names, &map)
                .with_context(|| format!("--router {}: label `{l}`", dir.display()))?;
            Ok(names
                .iter()
                .position(|n| *n == a)
                .expect("adapter_for checks"))
        })
        .collect::<Result<Vec<_>>>()?;
    let select = select_config(p, args.max_adapters, args.fusion_weights)?;
    Ok(Some(Routing::with_slots(
        router,
        select,
        RouteBy::Request,
        slots,
    )))
}

pub(super) fn bar(n: usize, what: String) -> Progress {
    Progress::new(
        n,
        "{msg:<28} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        what,
    )
}

/// Generates for every item under `mode` in batches of `batch`; returns each completion, its
/// generated token count and the mean number of adapters per mixture it ran under.
pub(super) fn generate_items<B: Backend>(
    cx: &Ctx<B>,
    items: &[&Item],
    mode: Mode,
    chooser: &Chooser,
    bar: &Progress,
) -> Result<Vec<Generated>> {
    let (model, tok, eos, batch) = (cx.model, cx.tok, cx.eos, cx.batch);
    let routing = chooser.routing;
    let sentence = routing.map(|r| r.with_by(RouteBy::Sentence));
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch) {
        let requests = chunk
            .iter()
            .map(|it| {
                Ok(GenRequest {
                    prompt: it.ids.clone(),
                    segments: chooser.segments(mode, &it.rendered, &it.starts, it.oracle)?,
                    params: SamplingParams {
                        max_tokens: it.max_tokens,
                        ..SamplingParams::default()
                    },
                    ..GenRequest::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rerouter = sentence.as_ref().filter(|_| mode == Mode::RoutedSentence);
        let mut streams: Vec<TextStream> = requests
            .iter()
            .map(|r| {
                TextStream::new(
                    tok,
                    r.prompt.len(),
                    TextOptions {
                        reroute: rerouter.is_some(),
                        ..TextOptions::of(&r.params)
                    }
                    .within(cx.model.max_context.saturating_sub(r.prompt.len())),
                )
            })
            .collect();
        let mut token_routers: Vec<TokenRouter> =
            requests.iter().map(|_| TokenRouter::new()).collect();
        let names: Vec<String> = (0..chooser.n_adapters).map(|i| i.to_string()).collect();
        // A broken answer (NaN logits) is one among the others: the batch keeps every good
        // one, and `run` reports it after the report is written.
        let (outs, _) = generate_each(
            model,
            &requests,
            eos,
            dlp_engine::generate::DEFAULT_STEP_TOKENS,
            |i, id| {
                let before = streams[i].text.len();
                let (control, _) = streams[i].push(id, rerouter, &names)?;
                if mode == Mode::TokenLevel {
                    if let Some(r) = routing {
                        let piece = streams[i].text[before..].to_string();
                        return Ok(token_routers[i].next(&piece, r));
                    }
                }
                Ok(control)
            },
        )?;
        for (o, s) in outs.iter().zip(streams) {
            let sizes: Vec<usize> = o.segments.iter().map(|(_, m)| m.len()).collect();
            let mean = sizes.iter().sum::<usize>() as f32 / sizes.len().max(1) as f32;
            out.push(Generated {
                text: s.text,
                tokens: o.tokens.len(),
                adapters: mean,
                non_finite: o.finish == FinishReason::NonFinite,
            });
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// Teacher-forced: the argmax at every position of the gold answer, decoded.
fn teacher_forced<B: Backend>(
    cx: &Ctx<B>,
    items: &[&Item],
    golds: &[&Example],
    chooser: &Chooser,
    bar: &Progress,
) -> Result<Vec<Generated>> {
    let (model, tok, batch) = (cx.model, cx.tok, cx.batch);
    let mut out = Vec::with_capacity(items.len());
    let vocab = model.config.vocab_size;
    for (chunk, gold) in items.chunks(batch).zip(golds.chunks(batch)) {
        let mut inputs = Vec::with_capacity(chunk.len());
        let mut sizes = Vec::with_capacity(chunk.len());
        for (it, g) in chunk.iter().zip(gold) {
            let answer = tok.encode(&g.output)?;
            let mut ids = it.ids.clone();
            ids.extend(&answer);
            let segments =
                chooser.segments(Mode::TeacherForced, &it.rendered, &it.starts, it.oracle)?;
            sizes.push(segments[0].1.len() as f32);
            inputs.push((ScoreInput { ids, segments }, it.ids.len(), answer.len()));
        }
        let logits = score_batch(
            model,
            &inputs.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
            ScoreMode::Prefill,
            dlp_engine::generate::DEFAULT_STEP_TOKENS,
        )?;
        for ((inp, size), l) in inputs.iter().zip(&sizes).zip(&logits) {
            let (_, p, n) = *inp;
            // The greedy sampler's argmax (ties to the lowest id), which also refuses a broken
            // row (a NaN, or no usable logit) whose argmax would be a silent token 0.
            let mut greedy = Sampler::new(SamplingParams::default());
            let picks: Vec<Option<u32>> = (p - 1..p - 1 + n)
                .map(|pos| greedy.try_sample(&l[pos * vocab..(pos + 1) * vocab], &[]))
                .collect();
            let non_finite = picks.contains(&None);
            let predicted: Vec<u32> = picks.into_iter().map(|t| t.unwrap_or(0)).collect();
            out.push(Generated {
                text: tok.decode(&predicted, true)?,
                tokens: n,
                adapters: *size,
                non_finite,
            });
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// One mode over `items` (scored later against `golds`), with a progress bar; the
/// completions and the seconds it took.
fn run_mode<B: Backend>(
    cx: &Ctx<B>,
    items: &[&Item],
    golds: &[&Example],
    mode: Mode,
    chooser: &Chooser,
    label: String,
) -> Result<(Vec<Generated>, f64)> {
    let b = bar(items.len(), label);
    let t0 = Instant::now();
    let outs = if mode == Mode::TeacherForced {
        teacher_forced(cx, items, golds, chooser, &b)?
    } else {
        generate_items(cx, items, mode, chooser, &b)?
    };
    b.finish_and_clear();
    Ok((outs, t0.elapsed().as_secs_f64()))
}

/// The whole evaluation.
pub fn run<B: Backend>(args: &EvalArgs, backend: B) -> Result<()> {
    let files = data::data_files(&args.data, &args.split)?;
    let tasks = data::load(&files, args.limit)?;
    let loaded: Loaded<B> = load(backend, &args.model)?;
    let tok = loaded.tokenizer()?;
    let eos = loaded.eos_ids();
    let model = &loaded.model;
    let names = model.adapter_names().to_vec();
    let map = data::parse_label_map(args.label_map.as_deref())?;
    // Checked whether or not a mode reads it: a typo is not waved through by `--modes base`.
    for task in map.keys() {
        data::adapter_for(task, &names, &map)?;
    }
    let have_router = args.router.is_some();
    let adapter_gap = (tasks.iter())
        .find_map(|(t, _)| data::adapter_for(t, &names, &map).err())
        .map(|e| e.to_string());
    let modes = args.modes(have_router, adapter_gap.as_deref(), !names.is_empty())?;
    let oracle_mixture = modes
        .iter()
        .any(|m| *m == Mode::Oracle || (*m == Mode::TeacherForced && !have_router));
    if oracle_mixture {
        // Every task needs an adapter for the oracle (and teacher-forced without a router).
        for (t, _) in &tasks {
            data::adapter_for(t, &names, &map)?;
        }
    }
    if modes.contains(&Mode::Uniform) && names.is_empty() {
        anyhow::bail!("--modes uniform: no adapters loaded (give --adapter NAME=DIR)");
    }
    let routers: Vec<(f32, Option<Routing>)> = args
        .route_p
        .iter()
        .map(|&p| Ok((p, routing(args, &names, p)?)))
        .collect::<Result<_>>()?;
    // A --label-map key that names neither a task of the data nor a router label maps
    // nothing: a typo, refused rather than waved through.
    let labels = (routers.iter().find_map(|(_, r)| r.as_ref())).map_or(&[][..], Routing::labels);
    if let Some(k) = map
        .keys()
        .find(|k| !tasks.iter().any(|(t, _)| t == *k) && !labels.contains(k))
    {
        let tasks: Vec<&str> = tasks.iter().map(|(t, _)| t.as_str()).collect();
        anyhow::bail!(
            "--label-map {k}=...: `{k}` is neither a task of the data ({}) nor a router label{}",
            tasks.join(", "),
            if labels.is_empty() {
                String::new()
            } else {
                format!(" ({})", labels.join(", "))
            }
        );
    }
    // The router's flags do nothing without a mode that routes: said, not waved through.
    let routes = |m: &Mode| m.needs_router() || (*m == Mode::TeacherForced && have_router);
    if !modes.iter().any(routes) {
        let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
        crate::sampling_args::note_idle(
            &[
                (args.route_p != [0.9], "--route-p"),
                (args.max_adapters != 0, "--max-adapters"),
                (
                    args.fusion_weights != crate::routing::FusionChoice::Renorm,
                    "--fusion-weights",
                ),
            ],
            &format!(": no mode of this run routes ({})", names.join(",")),
        );
    }

    let mut items = Vec::new();
    let mut golds = Vec::new();
    for (task, ex) in &tasks {
        let slot = data::adapter_for(task, &names, &map)
            .ok()
            .and_then(|a| names.iter().position(|n| *n == a));
        for e in ex {
            let max = args.max_tokens.unwrap_or(default_max_tokens(e.kind));
            let item = prepare(tok, &e.instruction, max, slot)?;
            fits(
                &item,
                model.max_context,
                || format!("task `{task}`"),
                &e.instruction,
            )?;
            items.push(item);
            golds.push(e);
        }
    }
    let item_refs: Vec<&Item> = items.iter().collect();
    // Composed prompts are made (and --compose checked against the tasks loaded) before any
    // mode runs: a bad value failed only after the whole evaluation.
    let composed_prompts = (args.compose.iter())
        .map(|&k| Ok((k, data::compose(&tasks, k, args.compose_n, args.seed)?)))
        .collect::<Result<Vec<_>>>()?;
    // Checked only where a mode will run them.
    let routed = routers.first().is_some_and(|(_, r)| r.is_some());
    let none_run = composed::compose_modes(args, names.len(), routed).is_empty();
    for (k, prompts) in composed_prompts.iter().filter(|_| !none_run) {
        for c in prompts {
            let item = prepare(tok, &c.instruction, 1, None)?;
            let tasks: Vec<&str> = c.parts.iter().map(|p| p.task.as_str()).collect();
            let what = || format!("--compose {k}, the prompt of {}", tasks.join(" + "));
            fits(&item, model.max_context, what, &c.instruction)?;
        }
    }
    let cx = Ctx {
        model,
        tok,
        eos: &eos,
        batch: args.batch,
    };
    let started = Instant::now();
    eprintln!(
        "eval: {} tasks, {} examples, modes {}, top-p {:?}, batch {}, backend {}",
        tasks.len(),
        items.len(),
        modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        args.route_p,
        args.batch,
        model.backend.name()
    );
    let mut runs = Vec::new();
    for &mode in &modes {
        let points: Vec<&(f32, Option<Routing>)> = if mode.swept() {
            routers.iter().collect()
        } else {
            routers.iter().take(1).collect()
        };
        for (p, routing) in points {
            let chooser = Chooser {
                routing: routing.as_ref(),
                n_adapters: names.len(),
            };
            let label = match (
                mode.needs_router() || mode == Mode::TeacherForced && have_router,
                mode.swept() && routers.len() > 1,
            ) {
                (_, true) => format!("{} p={p}", mode.name()),
                _ => mode.name().to_string(),
            };
            let (outs, secs) = run_mode(&cx, &item_refs, &golds, mode, &chooser, label)?;
            let outcomes: Vec<Outcome> = outs
                .into_iter()
                .zip(&golds)
                .map(|(g, gold)| Outcome {
                    // Teacher-forced decodes the gold output's positions: none to decode.
                    scored: mode != Mode::TeacherForced || !gold.output.trim().is_empty(),
                    task: gold.task.clone(),
                    correct: !g.non_finite && metrics::correct(gold.kind, &g.text, &gold.answer),
                    extracted: metrics::extract(gold.kind, &g.text),
                    completion: g.text,
                    tokens: g.tokens,
                    adapters: g.adapters,
                    non_finite: g.non_finite,
                })
                .collect();
            runs.push(ModeRun {
                mode,
                p: (mode.needs_router() || (mode == Mode::TeacherForced && have_router))
                    .then_some(*p),
                outcomes,
                seconds: secs,
            });
        }
    }
    if let Some(tf) = runs.iter().find(|r| r.mode == Mode::TeacherForced) {
        let mut unscored: BTreeMap<&str, usize> = BTreeMap::new();
        for o in tf.outcomes.iter().filter(|o| !o.scored) {
            *unscored.entry(&o.task).or_default() += 1;
        }
        if !unscored.is_empty() {
            let list: Vec<String> = unscored.iter().map(|(t, n)| format!("{t} {n}")).collect();
            eprintln!(
                "note: teacher-forced: examples without a gold output to force are left out of its scores ({}; a task with none shows -)",
                list.join(", ")
            );
        }
    }
    let mut composed = BTreeMap::new();
    for (k, prompts) in &composed_prompts {
        composed.insert(
            *k,
            composed::compose_runs(args, &cx, prompts, &routers, names.len())?,
        );
    }
    let runs_summary: Vec<(String, Vec<String>)> = runs
        .iter()
        .map(|r| {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            let ids = (r.outcomes.iter())
                .filter_map(|o| {
                    let i = seen.entry(&o.task).or_default();
                    *i += 1;
                    o.non_finite.then(|| format!("{} #{}", o.task, *i - 1))
                })
                .collect();
            // As --json names them: the main runs by mode, the sweep's by mode and p.
            let label = match r.p {
                Some(p) if p != args.route_p[0] => format!("{} at top-p {p}", r.mode.name()),
                _ => r.mode.name().to_string(),
            };
            (label, ids)
        })
        .collect();
    let composed_summary: Vec<(String, usize)> = (composed.iter())
        .flat_map(|(k, rs)| {
            rs.iter()
                .map(move |r| (format!("compose {k} {}", r.mode.name()), r.non_finite))
        })
        .collect();
    let rep = Report::new(
        &tasks,
        runs,
        composed,
        args,
        model.backend.name(),
        started.elapsed().as_secs_f64(),
    );
    // The files are written even where the table could not be (a full disk under stdout).
    let printed = crate::output::print_out(format_args!("{}", rep.table()));
    if let Some(p) = &args.json {
        crate::output::write_json(p, rep.json())?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.plot {
        crate::output::write_atomic_with(p, |tmp| super::plot::plot(&rep, tmp))?;
        eprintln!("wrote {}", p.display());
    }
    printed?;
    non_finite_error(&runs_summary, &composed_summary)
}

/// The error for answers that ended at a non-finite logit row, after the report is out: each
/// mode's count and its first examples (`boolq #3`: the task's 0-based example), so the figures
/// of a broken model or adapter never pass for a clean run.
fn non_finite_error(runs: &[(String, Vec<String>)], composed: &[(String, usize)]) -> Result<()> {
    let mut parts: Vec<String> = runs
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(mode, ids)| {
            let first: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
            let more = if ids.len() > 3 { ", ..." } else { "" };
            format!("{mode}: {} ({}{more})", ids.len(), first.join(", "))
        })
        .collect();
    parts.extend(
        composed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what}: {n} prompts")),
    );
    if parts.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "answers ended at a NaN logit, or a row without a finite logit, and were scored as \
         wrong (marked `non_finite` in --json): {}; the forward pass overflowed: check the \
         adapters' weights and the model's",
        parts.join("; ")
    )
}

/// Refuses, before any mode runs, a prompt (`what`, starting with `text`) that leaves no room
/// for an answer in the context (it had failed mid-run as "request 1", an index within one
/// batch).
fn fits(item: &Item, context: usize, what: impl FnOnce() -> String, text: &str) -> Result<()> {
    if item.ids.len() < context {
        return Ok(());
    }
    let start: String = text.chars().take(60).collect();
    anyhow::bail!(
        "{}, the example starting {start:?}: its prompt has {} tokens, the context holds \
         {context} (raise --max-context, up to the model's limit, or leave the example out)",
        what(),
        item.ids.len()
    )
}
