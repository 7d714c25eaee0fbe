//! `dlp-run eval`: the DLP-LoRA paper's experiments in the engine. Task accuracy (and BLEU /
//! ROUGE for free-form answers) of generated answers under each way of choosing adapters,
//! side by side in one run; the router's top-p swept; prompts that mix tasks; time per
//! example. Every split runs as large batches, each example with its own mixture.

mod composed;
pub(crate) mod data;
mod metrics;
mod modes;
mod plot;
mod report;
mod run;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use dlp_engine::Backend;

use crate::common::{ModelArgs, WithBackend};
use crate::routing::FusionChoice;
pub use modes::Mode;

/// Evaluate routed, fused adapters on tasks: accuracy (BLEU / ROUGE for `qa` tasks) and time
/// per example under each mode, side by side.
///
/// Data: jsonl lines {task, instruction, output, answer, kind} (`../shared/data/tasks`).
/// Prompts are the chat template with the instruction as the user message; greedy; at most 16
/// new tokens for `mcq`, 200 for `qa`; answers extracted as `../shared/adapters/README.md`
/// states (the last option/true/false match, or the last number). An answer that ends at a
/// NaN logit (a broken model or adapter) is cut there, scored as wrong, counted in the table's
/// `non-finite` row and marked `non_finite` in --json; the run goes on, and exits 1 once its
/// report is written.
///
/// Example:
///
///   dlp-run eval --data ../shared/data/tasks --adapter boolq=... --router routers/tasks
///     --modes base,oracle,routed --limit 40 --json eval.json --plot eval.png
#[derive(Debug, Args, Clone)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Task data: jsonl files, or directories holding `<task>/<split>.jsonl` (or
    /// `<split>.jsonl`).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub data: Vec<PathBuf>,
    /// Which file of a data directory: dev, test, train.
    #[arg(long, default_value = "dev")]
    pub split: String,
    /// The DLP router (needed by routed, routed-sentence, top1, token-level). Its labels are
    /// matched to adapters by name; labels without an adapter go to --label-map's choice, or
    /// their family's adapter (the math sets to gsm8k).
    #[arg(long, value_name = "DIR")]
    pub router: Option<PathBuf>,
    /// Modes to run, side by side (default: all that the loaded parts allow).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Vec<Mode>,
    /// First N examples of each task.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Most new tokens (default: 16 for mcq, 200 for qa).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Router top-p; several values (0.5,0.6,...,1.0) sweep it: the routed modes run at each,
    /// reporting accuracy, adapters per mixture and time per example; the first is the main
    /// one.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.9",
        value_name = "P,..."
    )]
    pub route_p: Vec<f32>,
    /// Keep at most this many adapters per routed mixture (0 = no cap).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_adapters: usize,
    /// How kept router probabilities become fusion weights.
    #[arg(long, value_enum, default_value = "renorm")]
    pub fusion_weights: FusionChoice,
    /// Adapters for tasks without one of their own, and for router labels without one:
    /// `task=adapter,...` (e.g. addsub=gsm8k).
    #[arg(long, value_name = "TASK=ADAPTER,...")]
    pub label_map: Option<String>,
    /// Mixed-task prompts: K questions of K different tasks in one user message, headed
    /// `Question 1:`, `Question 2:`, ... (a list runs each K), under base, uniform and the
    /// routed modes (those of them `--modes` names, when given). Scored per question: where
    /// the completion heads lines `Question 1` ... `Question K` too, each question's last
    /// answer in its own part; otherwise by sentences from the end (the last question the last
    /// answer of its kind, each one before it the last before that). A heuristic either way:
    /// the JSON keeps each completion and how it was split.
    #[arg(long, value_delimiter = ',', value_name = "K,...")]
    pub compose: Vec<usize>,
    /// Composed prompts per K.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub compose_n: usize,
    /// Seed of the composed prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch: usize,
    /// Write every figure (per task and mode, the sweep, the composed prompts, each example's
    /// completion) as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw accuracy per task and mode, and the top-p sweep, as a PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

impl EvalArgs {
    /// The modes to run: as given (each checked against what is loaded; a repeat runs once),
    /// or every one the loaded parts allow, with a note naming those left out and why.
    /// `adapter_gap`: why some task of the data has no adapter (the oracle's mixture, and
    /// teacher-forced's without a router, need one per task); `have_adapters`: any loaded.
    fn modes(
        &self,
        have_router: bool,
        adapter_gap: Option<&str>,
        have_adapters: bool,
    ) -> Result<Vec<Mode>> {
        if self.modes.is_empty() {
            let all = [
                Mode::Base,
                Mode::Oracle,
                Mode::Routed,
                Mode::RoutedSentence,
                Mode::Top1,
                Mode::Uniform,
                Mode::TokenLevel,
                Mode::TeacherForced,
            ];
            let why_not = |m: Mode| -> Option<String> {
                let oracle = m == Mode::Oracle || (m == Mode::TeacherForced && !have_router);
                if m.needs_router() && !have_router {
                    Some("needs --router DIR".into())
                } else if let (true, Some(gap)) = (oracle, adapter_gap) {
                    Some(format!("needs every task's adapter: {gap}"))
                } else if m == Mode::Uniform && !have_adapters {
                    Some("needs --adapter NAME=DIR".into())
                } else {
                    None
                }
            };
            let (run, left): (Vec<Mode>, Vec<Mode>) =
                all.into_iter().partition(|&m| why_not(m).is_none());
            // The router's modes are left out without a word when no router is given (as
            // before); a mode the data or the adapters rule out is said.
            let said: Vec<String> = (left.iter())
                .filter(|m| have_router || !m.needs_router())
                .map(|&m| format!("{} ({})", m.name(), why_not(m).unwrap_or_default()))
                .collect();
            if !said.is_empty() {
                eprintln!("note: default --modes leave out {}", said.join("; "));
            }
            return Ok(run);
        }
        if let Some(m) = self.modes.iter().find(|m| m.needs_router() && !have_router) {
            bail!("--modes {}: needs --router DIR", m.name());
        }
        let mut m: Vec<Mode> = Vec::new();
        for &mode in &self.modes {
            if !m.contains(&mode) {
                m.push(mode);
            }
        }
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        if let Some(p) = self
            .route_p
            .iter()
            .find(|p| !(0.0..=1.0).contains(*p) || **p == 0.0)
        {
            bail!("--route-p {p}: each value must lie in (0, 1]");
        }
        if self.route_p.is_empty() {
            bail!("--route-p needs at least one value");
        }
        // A repeated value ran its modes twice, as two columns of one name.
        if let Some((_, p)) =
            (self.route_p.iter().enumerate()).find(|(i, p)| self.route_p[..*i].contains(p))
        {
            bail!("--route-p {p} is given more than once; give each value once");
        }
        if self.max_tokens == Some(0) {
            bail!("--max-tokens must be at least 1");
        }
        let composable = [
            Mode::Base,
            Mode::Uniform,
            Mode::Routed,
            Mode::RoutedSentence,
            Mode::TokenLevel,
        ];
        if !self.compose.is_empty()
            && !self.modes.is_empty()
            && !self.modes.iter().any(|m| composable.contains(m))
        {
            bail!("--compose runs under base, uniform, routed, routed-sentence and token-level; --modes names none of them");
        }
        if !self.compose.is_empty() && self.compose_n == 0 {
            bail!("--compose-n 0: no composed prompts to run; give at least 1 (default 40)");
        }
        let outputs = [
            (
                "--json",
                self.json.as_deref(),
                crate::output::OutFormat::Text,
            ),
            (
                "--plot",
                self.plot.as_deref(),
                crate::output::OutFormat::Png,
            ),
        ];
        let mut inputs = self.model.inputs()?;
        inputs.router(self.router.as_deref());
        for d in &self.data {
            match d.is_dir() {
                true => inputs.dir(d, &["*.jsonl"]),
                false => inputs.file(d),
            }
        }
        crate::output::check_outputs(&outputs, &inputs)?;
        Ok(())
    }
}

impl WithBackend for &EvalArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        self.check()?;
        run::run(self, backend)
    }
}
