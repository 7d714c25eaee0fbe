//! Routed generation: the DLP router picks each request's (or each sentence's) adapter
//! mixture, and re-routes after every generated sentence when routing by sentence.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use dlp_engine::generate::Segments;
use dlp_engine::lora::Mixture;
use dlp_router::segment::split_sentences;
use dlp_router::{match_labels, FusionWeights, Router, SelectConfig};
use serde::Serialize;

/// What one routing decision covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteBy {
    /// One mixture per request, chosen from the whole prompt (the DLP-LoRA reference).
    Request,
    /// One mixture per prompt sentence (each its own segment of tokens), and a new one after
    /// every generated sentence, chosen from that sentence.
    Sentence,
}

/// How the kept adapters' probabilities become fusion weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FusionChoice {
    /// Kept probabilities divided by their sum (keeps the router's relative confidence).
    Renorm,
    /// Softmax over the kept probabilities (the reference code's choice; flatter).
    Softmax,
}

/// Router flags of `generate`.
#[derive(Debug, Args, Clone)]
pub struct RouteArgs {
    /// A router directory from `dlp-run train-router`: each request (or sentence, see
    /// `--route-by`) gets the top-p mixture of the adapters the router picks. Its labels must
    /// be exactly the names given to `--adapter`.
    #[arg(long, value_name = "DIR", conflicts_with = "mix")]
    pub router: Option<PathBuf>,
    /// Routing granularity.
    #[arg(
        long,
        value_enum,
        default_value = "request",
        requires = "router",
        conflicts_with = "mix"
    )]
    pub route_by: RouteBy,
    /// Router top-p: keep the smallest set of adapters whose probability reaches P (at least
    /// one adapter is always kept).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.9,
        requires = "router",
        conflicts_with = "mix"
    )]
    pub route_p: f32,
    /// Keep at most this many adapters per mixture (0 = no cap).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "router",
        conflicts_with = "mix"
    )]
    pub max_adapters: usize,
    /// How the kept probabilities become fusion weights.
    #[arg(
        long,
        value_enum,
        default_value = "renorm",
        requires = "router",
        conflicts_with = "mix"
    )]
    pub fusion_weights: FusionChoice,
    /// Print every routing decision to stderr (sentence, tokens, adapters and weights).
    #[arg(long, requires = "router", conflicts_with = "mix")]
    pub show_routing: bool,
}

/// One routing decision, as `--show-routing` prints it and `--json` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// `prompt` or `generated`.
    pub source: &'static str,
    /// The text the router read.
    pub text: String,
    /// Index in the sequence (prompt + generated) of the first token under this mixture.
    pub first_token: usize,
    /// `(adapter, weight)` pairs, most probable first.
    pub mixture: Vec<(String, f32)>,
}

impl Decision {
    /// One line for `--show-routing`.
    pub fn describe(&self, request: usize) -> String {
        let mix: Vec<String> = self
            .mixture
            .iter()
            // Three decimals: weights are often eighths (0.625 + 0.375 read 0.63 + 0.38).
            .map(|(n, w)| format!("{n} {w:.3}"))
            .collect();
        let mut text: String = self.text.trim().chars().take(60).collect();
        if text.len() < self.text.trim().len() {
            text.push('…');
        }
        format!(
            "route [{request}] {} @token {}: \"{}\" -> {}",
            self.source,
            self.first_token,
            quoted(&text),
            mix.join(" + ")
        )
    }
}

/// `text` for a line between double quotes: quotes, backslashes, control characters and
/// [`invisible`] ones escaped (a newline as `\n`), every other character as it is (Rust's
/// `{:?}` also escaped combining accents, `e\u{301}` for é).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || invisible(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Format characters that would reorder or hide the rest of a line (bidirectional overrides,
/// zero-width and line/paragraph separators, the byte-order mark, tag characters): shown
/// escaped.
fn invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// A loaded router, matched to the loaded adapters.
pub struct Routing {
    router: Arc<Router>,
    select: SelectConfig,
    /// Adapter slot of each router label.
    slot_of_label: Vec<usize>,
    /// Granularity.
    pub by: RouteBy,
    /// Whether decisions are printed as they are made.
    pub show: bool,
}

impl RouteArgs {
    /// The selection these flags ask for.
    pub fn select(&self) -> Result<SelectConfig> {
        select_config(self.route_p, self.max_adapters, self.fusion_weights)
    }
}

/// The router's selection from the command line's `--route-p`, `--max-adapters` and
/// `--fusion-weights`.
pub fn select_config(
    route_p: f32,
    max_adapters: usize,
    fusion: FusionChoice,
) -> Result<SelectConfig> {
    // The range eval and eval-router take.
    if !(route_p > 0.0 && route_p <= 1.0) {
        anyhow::bail!("--route-p {route_p}: the top-p threshold must lie in (0, 1]");
    }
    Ok(SelectConfig {
        top_p: Some(route_p),
        top_k: None,
        max_adapters: (max_adapters > 0).then_some(max_adapters),
        weights: match fusion {
            FusionChoice::Renorm => FusionWeights::Renormalize,
            FusionChoice::Softmax => FusionWeights::Softmax,
        },
    })
}

/// Loads the router in `dir`.
pub fn load_router(dir: &Path) -> Result<Arc<Router>> {
    let config = dir.join(dlp_router::config::CONFIG_FILE);
    if !dir.is_dir() {
        bail!(
            "--router {}: not a directory (a router is the folder `dlp-run train-router --out DIR` writes)",
            dir.display()
        );
    }
    if !config.exists() {
        let what = if dir.join("adapter_config.json").exists() {
            "it is a PEFT LoRA adapter: load it with --adapter NAME=DIR; a router is the folder `dlp-run train-router --out DIR` writes".to_string()
        } else {
            format!(
                "no {} in it, so it is not a router: train one with `dlp-run train-router --data DIR --out DIR`",
                dlp_router::config::CONFIG_FILE
            )
        };
        bail!("--router {}: {what}", dir.display());
    }
    Ok(Arc::new(Router::load(dir).with_context(|| {
        format!("loading router {}", dir.display())
    })?))
}

impl Routing {
    /// Loads `--router` (None without it) and matches its labels to `adapters` by name.
    pub fn new(args: &RouteArgs, adapters: &[String]) -> Result<Option<Self>> {
        let Some(dir) = &args.router else {
            return Ok(None);
        };
        let select = args.select()?;
        let router = load_router(dir)?;
        let mut r = Routing::from_router(router, select, args.route_by, adapters)
            .with_context(|| format!("--router {}", dir.display()))?;
        r.show = args.show_routing;
        Ok(Some(r))
    }

    /// A loaded router matched one to one to `adapters` by name, selecting with `select`.
    pub fn from_router(
        router: Arc<Router>,
        select: SelectConfig,
        by: RouteBy,
        adapters: &[String],
    ) -> Result<Self> {
        let slot_of_label = match_labels(router.labels(), adapters)?;
        Ok(Routing {
            router,
            select,
            slot_of_label,
            by,
            show: false,
        })
    }

    /// A router whose "slots" are its own label indices (decisions named by label), for
    /// routing before the adapters' current slots are known.
    pub fn by_label(router: Arc<Router>, select: SelectConfig, by: RouteBy) -> Self {
        Routing {
            slot_of_label: (0..router.labels().len()).collect(),
            router,
            select,
            by,
            show: false,
        }
    }

    /// Points every label at the adapter of the same name among `adapters`, which may hold
    /// more adapters than the router has labels (a server loads others at run time).
    ///
    /// # Errors
    /// A label with no adapter of its name.
    pub fn rematch(&mut self, adapters: &[String]) -> Result<()> {
        let mut slots = Vec::with_capacity(self.slot_of_label.len());
        for l in self.router.labels() {
            match adapters.iter().position(|a| a == l) {
                Some(s) => slots.push(s),
                None => anyhow::bail!(
                    "router label `{l}` has no loaded adapter (adapters: {}); load each label's adapter under its name, e.g. --adapter {l}=DIR",
                    adapters.join(", ")
                ),
            }
        }
        self.slot_of_label = slots;
        Ok(())
    }

    /// The router's labels.
    pub fn labels(&self) -> &[String] {
        self.router.labels()
    }

    /// The same router and selection with another granularity.
    pub fn with_by(&self, by: RouteBy) -> Self {
        Routing {
            router: self.router.clone(),
            select: self.select,
            slot_of_label: self.slot_of_label.clone(),
            by,
            show: self.show,
        }
    }

    /// The mixture (by adapter slot) for each text, one router batch.
    pub fn route(&self, texts: &[&str]) -> Vec<Mixture> {
        self.route_with(texts, &self.select)
    }

    /// As [`Routing::route`], with another selection (e.g. a fixed top-k).
    pub fn route_with(&self, texts: &[&str], select: &SelectConfig) -> Vec<Mixture> {
        self.router
            .route(texts, select)
            .into_iter()
            .map(|m| {
                // Labels that share an adapter (a label map) add their weights.
                let mut mix: Mixture = Vec::with_capacity(m.len());
                for (label, w) in m {
                    let slot = self.slot_of_label[label];
                    match mix.iter_mut().find(|e| e.0 == slot) {
                        Some(e) => e.1 += w,
                        None => mix.push((slot, w)),
                    }
                }
                mix
            })
            .collect()
    }

    /// A router whose labels point at adapter slots through `slot_of_label` (several labels
    /// may share an adapter: a task without an adapter of its own routed to its family's).
    pub fn with_slots(
        router: Arc<Router>,
        select: SelectConfig,
        by: RouteBy,
        slot_of_label: Vec<usize>,
    ) -> Self {
        Routing {
            router,
            select,
            slot_of_label,
            by,
            show: false,
        }
    }

    /// Routes a prompt whose tokens start at byte offsets `token_starts` of `rendered`, where
    /// `span` is the user's text inside it (None: the template changed the text, so the whole
    /// request is routed from `user_text` as one piece). Returns the segments and decisions.
    pub fn route_prompt(
        &self,
        rendered: &str,
        span: Option<Range<usize>>,
        user_text: &str,
        token_starts: &[usize],
        names: &[String],
    ) -> (Segments, Vec<Decision>) {
        let pieces: Vec<Range<usize>> = match (&span, self.by) {
            (Some(s), RouteBy::Sentence) => split_sentences(&rendered[s.clone()])
                .into_iter()
                .map(|r| s.start + r.start..s.start + r.end)
                .collect(),
            (Some(s), RouteBy::Request) => vec![s.clone()],
            (None, _) => Vec::new(),
        };
        let (texts, firsts): (Vec<&str>, Vec<usize>) = if pieces.is_empty() {
            (vec![user_text], vec![0])
        } else {
            let firsts = first_tokens(
                &pieces.iter().map(|r| r.start).collect::<Vec<_>>(),
                token_starts,
            );
            (
                pieces.iter().map(|r| &rendered[r.clone()]).collect(),
                firsts,
            )
        };
        let mixes = self.route(&texts);
        let mut segments: Segments = Vec::new();
        let mut decisions = Vec::new();
        for ((text, first), mix) in texts.iter().zip(&firsts).zip(mixes) {
            // A sentence whose tokens all fall inside the previous sentence's last token
            // (rare: a token spanning the boundary) has nothing of its own to route.
            if segments.last().is_some_and(|(s, _)| s >= first) {
                continue;
            }
            decisions.push(Decision {
                source: "prompt",
                text: text.to_string(),
                first_token: *first,
                mixture: named(&mix, names),
            });
            segments.push((*first, mix));
        }
        (segments, decisions)
    }
}

/// `(adapter name, weight)` pairs of a slot mixture.
pub fn named(mix: &Mixture, names: &[String]) -> Vec<(String, f32)> {
    mix.iter().map(|&(s, w)| (names[s].clone(), w)).collect()
}

/// The first token of each piece of text: piece `k` starts at byte `piece_starts[k]` and owns
/// every token whose first byte is at or after that, up to the next piece. The first piece
/// also owns the tokens before it (BOS, the chat template's prefix), so it starts at 0; later
/// pieces that own no token get the index of the next token that exists.
pub fn first_tokens(piece_starts: &[usize], token_starts: &[usize]) -> Vec<usize> {
    piece_starts
        .iter()
        .enumerate()
        .map(|(k, &b)| {
            if k == 0 {
                0
            } else {
                token_starts.partition_point(|&t| t < b)
            }
        })
        .collect()
}

/// Watches generated text and reports each sentence as it completes (a sentence is complete
/// once the text of the next one has begun).
#[derive(Debug, Default)]
pub struct SentenceTracker {
    pending: String,
}

impl SentenceTracker {
    /// Adds generated text; returns the last sentence completed by it, if any.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.pending.push_str(piece);
        let ranges = split_sentences(&self.pending);
        if ranges.len() < 2 {
            return None;
        }
        let last = ranges.last().expect("two or more").start;
        let done = self.pending[ranges[ranges.len() - 2].clone()].to_string();
        self.pending.drain(..last);
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A routing line's text: quotes, backslashes and control characters escaped, a combining
    /// accent (and every other character) as written.
    #[test]
    fn routed_text_is_quoted_for_one_line() {
        assert_eq!(quoted("e\u{301} \"x\"\n\\"), "e\u{301} \\\"x\\\"\\n\\\\");
        assert_eq!(quoted("a\u{202E}b"), "a\\u{202e}b");
    }

    /// A routing line names each adapter with its weight to three decimals.
    #[test]
    fn routing_line_shows_weights_to_three_decimals() {
        let d = Decision {
            source: "prompt",
            text: " Is it? ".into(),
            first_token: 3,
            mixture: vec![("boolq".into(), 0.625), ("piqa".into(), 0.375)],
        };
        assert_eq!(
            d.describe(1),
            "route [1] prompt @token 3: \"Is it?\" -> boolq 0.625 + piqa 0.375"
        );
    }

    #[test]
    fn pieces_map_to_the_tokens_that_start_in_them() {
        // "<s>" "Is" " it" "?" " Yes" "." ; pieces at bytes 0 and 6 (" Yes.").
        let starts = [0, 0, 2, 5, 6, 10];
        assert_eq!(first_tokens(&[0, 6], &starts), vec![0, 4]);
        // A prefix before the first piece belongs to it.
        assert_eq!(first_tokens(&[3, 6], &starts), vec![0, 4]);
        // A piece past the last token starts at the end.
        assert_eq!(first_tokens(&[0, 11], &starts), vec![0, 6]);
    }

    #[test]
    fn tracker_reports_a_sentence_once_the_next_begins() {
        let mut t = SentenceTracker::default();
        assert_eq!(t.push("The sky"), None);
        assert_eq!(t.push(" is blue."), None);
        assert_eq!(t.push(" Water"), Some("The sky is blue.".to_string()));
        assert_eq!(t.push(" is wet. It"), Some(" Water is wet.".to_string()));
        assert_eq!(t.push(" rains! Yes. No"), Some(" Yes.".to_string()));
    }
}
