//! What `dlp-run eval` reports: per task and mode accuracy (and BLEU / ROUGE for `qa` tasks),
//! means over tasks, time per example, the top-p sweep, composed prompts — as a table, JSON
//! (keys `per_task[task][mode].accuracy|bleu|rouge1|rougeL`, `mean[mode].accuracy`,
//! `time_per_example_s[mode]`) and a PNG.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::data::Example;
use super::metrics::{self, Kind};
use super::modes::Mode;
use super::EvalArgs;

/// One example under one mode.
pub struct Outcome {
    pub task: String,
    pub completion: String,
    pub extracted: Option<String>,
    pub correct: bool,
    /// Counted in the scores: false for a teacher-forced example without a gold output (a
    /// task like mawps, whose data gives the answer alone).
    pub scored: bool,
    /// Tokens generated (teacher-forced: of the gold answer).
    pub tokens: usize,
    /// Mean adapters per mixture it ran under.
    pub adapters: f32,
    /// Generation ended at a NaN logit, or a row without a finite one (a broken model or
    /// adapter): the completion is cut there and scored as wrong.
    pub non_finite: bool,
}

/// One mode (at one top-p for the swept ones) over every example.
pub struct ModeRun {
    pub mode: Mode,
    /// The router's top-p, for modes that route.
    pub p: Option<f32>,
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
}

/// A routed mode at one top-p: p, mode, accuracy, mean adapters per mixture, seconds per
/// example, answers that ended at a non-finite logit.
pub(super) type SweepPoint = (f32, Mode, f64, f64, f64, usize);

/// One mode over composed prompts.
pub struct ComposeRun {
    pub mode: Mode,
    pub accuracy: f64,
    pub questions: usize,
    pub prompts: usize,
    /// Prompts whose completion was split by its `Question N` headings (the others in order).
    pub numbered: usize,
    pub mean_adapters: f64,
    pub time_per_example_s: f64,
    /// Prompts whose generation ended at a non-finite logit row (scored as wrong).
    pub non_finite: usize,
    /// Each prompt's completion and its questions' answers, for the JSON.
    pub examples: Vec<Value>,
}

/// Scores of one task under one mode.
#[derive(Default, Clone)]
pub(super) struct TaskScore {
    n: usize,
    /// None where no example could be scored (teacher-forced without gold outputs).
    pub(super) accuracy: Option<f64>,
    bleu: Option<f64>,
    rouge1: Option<f64>,
    rouge_l: Option<f64>,
    mean_adapters: f64,
}

/// A mode at the main top-p: scores per task, seconds, examples, tokens generated.
pub(super) struct Row {
    pub(super) mode: Mode,
    pub(super) per: BTreeMap<String, TaskScore>,
    seconds: f64,
    n: usize,
    tokens: usize,
    non_finite: usize,
}

/// Everything measured.
pub struct Report {
    pub(super) tasks: Vec<(String, Kind)>,
    /// Runs at the main top-p (the first of `--route-p`), by mode.
    pub(super) main: Vec<Row>,
    /// Every run, for the sweep.
    pub(super) sweep: Vec<SweepPoint>,
    examples: Vec<(Mode, Vec<Value>)>,
    composed: BTreeMap<usize, Vec<ComposeRun>>,
    backend: String,
    seconds: f64,
    settings: Value,
    /// The top-p of the main table's router-run columns, where any ran with the router.
    main_p: Option<f32>,
}

impl TaskScore {
    /// Mean adapters per mixture, where any example was scored.
    fn adapters(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean_adapters)
    }
}

fn score(task: &str, kind: Kind, run: &ModeRun, golds: &[Example]) -> TaskScore {
    let mine: Vec<(&Outcome, &Example)> = run
        .outcomes
        .iter()
        .filter(|o| o.task == task)
        .zip(golds)
        .filter(|(o, _)| o.scored)
        .collect();
    let n = mine.len();
    let mut s = TaskScore {
        n,
        accuracy: (n > 0).then(|| mine.iter().filter(|(o, _)| o.correct).count() as f64 / n as f64),
        mean_adapters: mine.iter().map(|(o, _)| f64::from(o.adapters)).sum::<f64>()
            / n.max(1) as f64,
        ..Default::default()
    };
    // BLEU / ROUGE against the gold outputs there are: mawps' data has none (against "" they
    // were 0, pulling the qa means down).
    let with_ref: Vec<&(&Outcome, &Example)> = mine
        .iter()
        .filter(|(_, g)| !g.output.trim().is_empty())
        .collect();
    if kind == Kind::Qa && !with_ref.is_empty() {
        let hyps: Vec<&str> = with_ref
            .iter()
            .map(|(o, _)| o.completion.as_str())
            .collect();
        let refs: Vec<&str> = with_ref.iter().map(|(_, g)| g.output.as_str()).collect();
        s.bleu = Some(metrics::corpus_bleu(&hyps, &refs));
        let avg = |f: fn(&str, &str) -> f64| {
            hyps.iter().zip(&refs).map(|(h, r)| f(r, h)).sum::<f64>() / refs.len() as f64
        };
        s.rouge1 = Some(avg(metrics::rouge1));
        s.rouge_l = Some(avg(metrics::rouge_l));
    }
    s
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl Report {
    /// Scores every run.
    pub fn new(
        tasks: &[(String, Vec<Example>)],
        runs: Vec<ModeRun>,
        composed: BTreeMap<usize, Vec<ComposeRun>>,
        args: &EvalArgs,
        backend: String,
        seconds: f64,
    ) -> Self {
        let main_p = args.route_p[0];
        let kinds: Vec<(String, Kind)> = tasks
            .iter()
            .map(|(t, ex)| (t.clone(), ex[0].kind))
            .collect();
        let mut main = Vec::new();
        let mut sweep = Vec::new();
        let mut examples = Vec::new();
        for run in &runs {
            let per: BTreeMap<String, TaskScore> = tasks
                .iter()
                .map(|(t, ex)| (t.clone(), score(t, ex[0].kind, run, ex)))
                .collect();
            let n = run.outcomes.len();
            let acc = mean(per.values().filter_map(|s| s.accuracy)).unwrap_or(0.0);
            // As the table's row: the mean over tasks of each task's mean (over examples it
            // would weigh large tasks more than the accuracy beside it does).
            let adapters = mean(per.values().filter_map(TaskScore::adapters)).unwrap_or(0.0);
            let non_finite = run.outcomes.iter().filter(|o| o.non_finite).count();
            // top1 and teacher-forced run at the first p only, and top1 reads no p at all.
            if let Some(p) = run.p.filter(|_| run.mode.swept()) {
                let secs = run.seconds / n.max(1) as f64;
                sweep.push((p, run.mode, acc, adapters, secs, non_finite));
            }
            if run.p.is_none_or(|p| p == main_p) {
                let tokens: usize = run.outcomes.iter().map(|o| o.tokens).sum();
                main.push(Row {
                    mode: run.mode,
                    per,
                    seconds: run.seconds,
                    n,
                    tokens,
                    non_finite,
                });
                // Each completion with its example's index in its task and the gold answer, so
                // that the scores can be checked from the JSON alone.
                let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
                let listed = (run.outcomes.iter())
                    .map(|o| {
                        let i = seen.entry(&o.task).or_default();
                        *i += 1;
                        let gold = (tasks.iter().find(|(t, _)| *t == o.task))
                            .and_then(|(_, ex)| ex.get(*i - 1));
                        let mut v = json!({"task": o.task, "index": *i - 1,
                            "answer": gold.map(|g| g.answer.as_str()),
                            "completion": o.completion, "extracted": o.extracted,
                            "correct": o.correct, "non_finite": o.non_finite});
                        if !o.scored {
                            v["scored"] = json!(false);
                        }
                        v
                    })
                    .collect();
                examples.push((run.mode, listed));
            }
        }
        Report {
            // (top1 runs with the router but reads no p.)
            main_p: (runs.iter())
                .any(|r| r.p.is_some() && r.mode != Mode::Top1)
                .then_some(main_p),
            tasks: kinds,
            main,
            sweep,
            examples,
            composed,
            backend,
            seconds,
            settings: json!({
                "split": args.split, "limit": args.limit, "max_tokens": args.max_tokens,
                "route_p": args.route_p, "batch": args.batch, "label_map": args.label_map,
                "compose_n": args.compose_n, "seed": args.seed,
            }),
        }
    }

    /// The JSON report.
    pub fn json(&self) -> Value {
        let mut per_task = serde_json::Map::new();
        for (task, kind) in &self.tasks {
            let mut modes = serde_json::Map::new();
            for Row { mode, per, .. } in &self.main {
                let s = &per[task];
                let mut v =
                    json!({"accuracy": s.accuracy, "n": s.n, "mean_adapters": s.adapters()});
                if *kind == Kind::Qa {
                    v["bleu"] = json!(s.bleu);
                    v["rouge1"] = json!(s.rouge1);
                    v["rougeL"] = json!(s.rouge_l);
                }
                modes.insert(mode.name().into(), v);
            }
            per_task.insert(task.clone(), Value::Object(modes));
        }
        let mut means = serde_json::Map::new();
        let mut time = serde_json::Map::new();
        let mut tps = serde_json::Map::new();
        for Row {
            mode,
            per,
            seconds: secs,
            n,
            tokens,
            non_finite,
        } in &self.main
        {
            let over = |kind: Option<Kind>, f: &dyn Fn(&TaskScore) -> Option<f64>| {
                mean(
                    self.tasks
                        .iter()
                        .filter(|(_, k)| kind.is_none_or(|kk| kk == *k))
                        .filter_map(|(t, _)| f(&per[t])),
                )
            };
            means.insert(
                mode.name().into(),
                json!({
                    "accuracy": over(None, &|s| s.accuracy),
                    "accuracy_mcq": over(Some(Kind::Mcq), &|s| s.accuracy),
                    "accuracy_qa": over(Some(Kind::Qa), &|s| s.accuracy),
                    "bleu": over(Some(Kind::Qa), &|s| s.bleu),
                    "rouge1": over(Some(Kind::Qa), &|s| s.rouge1),
                    "rougeL": over(Some(Kind::Qa), &|s| s.rouge_l),
                    "mean_adapters": over(None, &TaskScore::adapters),
                    "non_finite": non_finite,
                }),
            );
            time.insert(mode.name().into(), json!(secs / (*n).max(1) as f64));
            tps.insert(mode.name().into(), json!(*tokens as f64 / secs.max(1e-9)));
        }
        let sweep: Vec<Value> = self
            .sweep
            .iter()
            .map(|(p, m, a, ad, t, nf)| json!({"p": p, "mode": m.name(), "accuracy": a, "mean_adapters": ad, "time_per_example_s": t, "non_finite": nf}))
            .collect();
        let composed: serde_json::Map<String, Value> = self
            .composed
            .iter()
            .map(|(k, runs)| {
                let v: serde_json::Map<String, Value> = runs
                    .iter()
                    .map(|r| {
                        (
                            r.mode.name().to_string(),
                            json!({"accuracy": r.accuracy, "questions": r.questions,
                            "prompts": r.prompts, "split_by_headings": r.numbered,
                            "mean_adapters": r.mean_adapters,
                            "time_per_example_s": r.time_per_example_s,
                            "non_finite": r.non_finite, "examples": r.examples}),
                        )
                    })
                    .collect();
                (k.to_string(), Value::Object(v))
            })
            .collect();
        let examples: serde_json::Map<String, Value> = self
            .examples
            .iter()
            .map(|(m, v)| (m.name().to_string(), json!(v)))
            .collect();
        json!({
            "backend": self.backend, "wall_seconds": self.seconds, "settings": self.settings,
            "scale": "accuracy 0-1; bleu, rouge1, rougeL 0-100 (sacrebleu corpus BLEU; rouge-score F, no stemmer)",
            "per_task": per_task, "mean": means, "time_per_example_s": time, "tokens_per_s": tps,
            "sweep": sweep, "composed": composed, "examples": examples,
        })
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let modes: Vec<&str> = self.main.iter().map(|m| m.mode.name()).collect();
        // A space before the longest name (`routed-sentence` filled 15 and ran into `routed`).
        let w = modes.iter().map(|m| m.len()).max().unwrap_or(0).max(14) + 1;
        // The first column fits the longest task name (longer ones pushed the columns out).
        let tw = (self.tasks.iter().map(|(t, _)| t.chars().count() + 1))
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = write!(s, "\n{:<tw$}", "accuracy %");
        modes.iter().for_each(|m| {
            let _ = write!(s, "{m:>w$}");
        });
        s.push('\n');
        for (task, _) in &self.tasks {
            let _ = write!(s, "{task:<tw$}");
            for r in &self.main {
                let _ = match r.per[task].accuracy {
                    Some(a) => write!(s, "{:>w$.1}", 100.0 * a),
                    None => write!(s, "{:>w$}", "-"),
                };
            }
            s.push('\n');
        }
        let row = |s: &mut String, name: &str, f: &dyn Fn(&Row) -> Option<f64>, digits: usize| {
            let _ = write!(s, "{name:<tw$}");
            for r in &self.main {
                match f(r) {
                    Some(v) => {
                        let _ = write!(s, "{v:>w$.digits$}");
                    }
                    None => {
                        let _ = write!(s, "{:>w$}", "-");
                    }
                }
            }
            s.push('\n');
        };
        row(
            &mut s,
            "mean",
            &|r| mean(r.per.values().filter_map(|x| x.accuracy).map(|a| 100.0 * a)),
            1,
        );
        let qa = |per: &BTreeMap<String, TaskScore>, f: fn(&TaskScore) -> Option<f64>| {
            mean(
                self.tasks
                    .iter()
                    .filter(|(_, k)| *k == Kind::Qa)
                    .filter_map(|(t, _)| f(&per[t])),
            )
        };
        if self.tasks.iter().any(|(_, k)| *k == Kind::Qa) {
            row(&mut s, "qa BLEU", &|r| qa(&r.per, |x| x.bleu), 1);
            row(&mut s, "qa ROUGE-1", &|r| qa(&r.per, |x| x.rouge1), 1);
            row(&mut s, "qa ROUGE-L", &|r| qa(&r.per, |x| x.rouge_l), 1);
        }
        row(
            &mut s,
            "adapters/mix",
            &|r| mean(r.per.values().filter_map(TaskScore::adapters)),
            2,
        );
        row(
            &mut s,
            "s/example",
            &|r| Some(r.seconds / r.n.max(1) as f64),
            3,
        );
        row(
            &mut s,
            "tokens/s",
            &|r| Some(r.tokens as f64 / r.seconds.max(1e-9)),
            1,
        );
        if self.main.iter().any(|r| r.non_finite > 0) {
            row(&mut s, "non-finite", &|r| Some(r.non_finite as f64), 0);
        }
        if let Some(p) = self.main_p {
            // The columns above do not say it, and a sweep's first value is easily misread.
            let _ = writeln!(
                s,
                "(the router's columns at top-p {p}, the first of --route-p)"
            );
        }
        if self
            .sweep
            .iter()
            .map(|x| x.0.to_bits())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
        {
            let _ = writeln!(
                s,
                "\ntop-p sweep       mode               accuracy %  adapters/mix  s/example"
            );
            for (p, m, a, ad, t, nf) in &self.sweep {
                let _ = write!(
                    s,
                    "p = {p:<13} {:<18} {:>10.1} {:>13.2} {:>10.3}",
                    m.name(),
                    100.0 * a,
                    ad,
                    t
                );
                let _ = match nf {
                    0 => writeln!(s),
                    n => writeln!(s, "  ({n} non-finite)"),
                };
            }
        }
        for (k, runs) in &self.composed {
            let _ = writeln!(
                s,
                "\ncomposed prompts, {k} questions each (scored per question)"
            );
            for r in runs {
                let _ = writeln!(
                    s,
                    "  {:<16} accuracy {:>5.1}%  ({} questions, {} prompts, {} split by their headings)  adapters/mix {:.2}  {:.3} s/prompt",
                    r.mode.name(), 100.0 * r.accuracy, r.questions, r.prompts, r.numbered, r.mean_adapters, r.time_per_example_s
                );
                if r.non_finite > 0 {
                    let _ = writeln!(
                        s,
                        "    {} prompts ended at a non-finite logit",
                        r.non_finite
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "\n{} tasks on {}, {:.0} s in all",
            self.tasks.len(),
            self.backend,
            self.seconds
        );
        s
    }
}
