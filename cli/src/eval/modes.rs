//! How each evaluation mode chooses adapters for a prompt, and how generation goes on under
//! it (the router per request or per sentence, one adapter, all of them, or re-routing at
//! every token).

use anyhow::{bail, Result};
use clap::ValueEnum;
use dlp_engine::generate::{Control, Segments};
use dlp_engine::lora::Mixture;
use dlp_router::SelectConfig;

use crate::pipeline::Rendered;
use crate::routing::{RouteBy, Routing};

/// An evaluation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The base model, no adapter.
    Base,
    /// The task's own adapter (its family's, for tasks without one).
    Oracle,
    /// The DLP router, once per request: the top-p mixture, renormalised weights.
    Routed,
    /// The DLP router per prompt sentence, re-routed after every generated sentence.
    RoutedSentence,
    /// The router's first choice alone (no fusion).
    Top1,
    /// Every loaded adapter, equal weights.
    Uniform,
    /// Re-routed at every token from the sentence so far (MeteoRA-style granularity).
    TokenLevel,
    /// The gold answer scored teacher-forced (argmax at its positions), the reference code's
    /// protocol; under the router's per-request mixture (the oracle's without a router).
    TeacherForced,
}

impl Mode {
    /// Its name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Base => "base",
            Mode::Oracle => "oracle",
            Mode::Routed => "routed",
            Mode::RoutedSentence => "routed-sentence",
            Mode::Top1 => "top1",
            Mode::Uniform => "uniform",
            Mode::TokenLevel => "token-level",
            Mode::TeacherForced => "teacher-forced",
        }
    }

    /// Whether it needs `--router`.
    pub fn needs_router(self) -> bool {
        matches!(
            self,
            Mode::Routed | Mode::RoutedSentence | Mode::Top1 | Mode::TokenLevel
        )
    }

    /// Whether the top-p sweep (`--route-p` with several values) repeats it per p.
    pub fn swept(self) -> bool {
        matches!(self, Mode::Routed | Mode::RoutedSentence | Mode::TokenLevel)
    }
}

/// The selection for `Top1`: the single most probable label.
fn top1() -> SelectConfig {
    SelectConfig {
        top_p: None,
        top_k: Some(1),
        max_adapters: None,
        weights: dlp_router::FusionWeights::Renormalize,
    }
}

/// What a mode needs to route: the router (already at the sweep's p) and the oracle's slot.
pub struct Chooser<'a> {
    /// The router, if loaded.
    pub routing: Option<&'a Routing>,
    /// Every loaded adapter's slot count.
    pub n_adapters: usize,
}

impl Chooser<'_> {
    fn routing(&self, mode: Mode) -> Result<&Routing> {
        match self.routing {
            Some(r) => Ok(r),
            None => bail!("mode `{}` needs --router", mode.name()),
        }
    }

    /// The segments of a prompt under `mode`; `oracle` is the task's adapter slot (None for
    /// composed prompts, which have no single task).
    pub fn segments(
        &self,
        mode: Mode,
        r: &Rendered,
        token_starts: &[usize],
        oracle: Option<usize>,
    ) -> Result<Segments> {
        let one = |m: Mixture| vec![(0, m)];
        Ok(match mode {
            Mode::Base => one(vec![]),
            Mode::Oracle => match oracle {
                Some(s) => one(vec![(s, 1.0)]),
                None => bail!("mode `oracle` has no meaning for composed prompts"),
            },
            Mode::Uniform => {
                let w = 1.0 / self.n_adapters.max(1) as f32;
                one((0..self.n_adapters).map(|s| (s, w)).collect())
            }
            Mode::Routed | Mode::RoutedSentence => {
                let by = if mode == Mode::Routed {
                    RouteBy::Request
                } else {
                    RouteBy::Sentence
                };
                let routing = self.routing(mode)?.with_by(by);
                let names: Vec<String> = (0..self.n_adapters).map(|i| i.to_string()).collect();
                routing
                    .route_prompt(&r.text, r.span.clone(), &r.user, token_starts, &names)
                    .0
            }
            Mode::Top1 => one(self
                .routing(mode)?
                .route_with(&[r.user.as_str()], &top1())
                .remove(0)),
            Mode::TokenLevel => {
                let routing = self.routing(mode)?;
                // Every prompt token routed from its sentence so far.
                (0..token_starts.len())
                    .map(|i| {
                        let end = token_starts.get(i + 1).copied().unwrap_or(r.text.len());
                        (
                            i,
                            routing.route(&[sentence_so_far(&r.text[..end])]).remove(0),
                        )
                    })
                    .collect()
            }
            Mode::TeacherForced => match self.routing {
                Some(routing) => one(routing.route(&[r.user.as_str()]).remove(0)),
                None => match oracle {
                    Some(s) => one(vec![(s, 1.0)]),
                    None => bail!("mode `teacher-forced` needs --router for composed prompts"),
                },
            },
        })
    }
}

/// The text of the sentence being written at the end of `text` (after the last `.`, `?`,
/// `!` or line break).
pub fn sentence_so_far(text: &str) -> &str {
    let from = text.rfind(['.', '?', '!', '\n']).map_or(0, |p| p + 1);
    &text[from..]
}

/// Token-level re-routing during generation: the next token runs under the mixture routed
/// from the sentence so far (the generated text since the last sentence end).
pub struct TokenRouter {
    sentence: String,
}

impl TokenRouter {
    /// A router state for one sequence.
    pub fn new() -> Self {
        TokenRouter {
            sentence: String::new(),
        }
    }

    /// After `piece` of text was generated: the remix for the next token.
    pub fn next(&mut self, piece: &str, routing: &Routing) -> Control {
        self.sentence.push_str(piece);
        if self.sentence.ends_with(['.', '?', '!', '\n']) {
            self.sentence.clear();
        }
        Control::Remix(routing.route(&[sentence_so_far(&self.sentence)]).remove(0))
    }
}
