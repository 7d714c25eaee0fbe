//! `dlp-run generate`: stream text from one prompt, or run many prompts as one batch, each
//! with its own adapter mixture.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::generate::{generate, Control, GenRequest, DEFAULT_STEP_TOKENS};
use dlp_engine::tokenizer::{ChatMessage, TextTokenizer};
use dlp_engine::Backend;
use dlp_engine::sampler::{find_stop, stop_holdback};
use dlp_engine::SamplingParams;
use serde_json::{json, Value};

use crate::common::{self, load, parse_mix, Loaded, ModelArgs, WithBackend};
use crate::routing::{named, Decision, RouteArgs, RouteBy, Routing, SentenceTracker};

/// Sampling flags shared by generating commands.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// Most new tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 = greedy (deterministic argmax).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens less likely than MIN_P times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Penalise tokens already in the context (1 = off; 1.1 is a common choice).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this string is generated (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The sampler parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
        }
    }
}

/// Generate text with the base model and a weighted mixture of LoRA adapters.
#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Adapter mixture for every prompt: `NAME=W[,NAME=W]...` (names from `--adapter`).
    /// The adapters' deltas are summed with these weights (each keeps its own alpha/r).
    /// Omit for the base model.
    #[arg(long, value_name = "NAME=W,...")]
    pub mix: Option<String>,
    /// Wrap each prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message for `--chat` (default: the template's own).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// The prompt.
    #[arg(
        long,
        short = 'p',
        value_name = "TEXT",
        conflicts_with = "prompts",
        required_unless_present = "prompts"
    )]
    pub prompt: Option<String>,
    /// Many prompts, run as one batch: a JSONL file of objects with `prompt` (text) or
    /// `messages` (chat), and optionally `mix` (`{"name": weight}` or "name=w,...").
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub routing: RouteArgs,
    /// Print one JSON object (texts, token counts, prefill/decode times, tokens/s, peak RSS)
    /// instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Most tokens per forward pass while prefilling (longer prompts are chunked).
    #[arg(long, default_value_t = DEFAULT_STEP_TOKENS)]
    pub step_tokens: usize,
}

/// One prompt as given.
struct Prompt {
    text: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    mix: Vec<(String, f32)>,
    /// Whether the prompt named its own mixture (a router then leaves it alone).
    explicit_mix: bool,
}

fn read_prompts(args: &GenerateArgs) -> Result<Vec<Prompt>> {
    let default_mix = args
        .mix
        .as_deref()
        .map(parse_mix)
        .transpose()?
        .unwrap_or_default();
    if let Some(p) = &args.prompt {
        return Ok(vec![Prompt {
            text: Some(p.clone()),
            messages: None,
            mix: default_mix,
            explicit_mix: args.mix.is_some(),
        }]);
    }
    let path = args
        .prompts
        .as_ref()
        .context("give --prompt or --prompts")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let explicit_mix = !matches!(v.get("mix"), None | Some(Value::Null));
        let mix = match v.get("mix") {
            None | Some(Value::Null) => default_mix.clone(),
            Some(Value::String(s)) => parse_mix(s).with_context(at)?,
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, w)| {
                    Ok((
                        k.clone(),
                        w.as_f64().with_context(|| {
                            format!("{}: mix weight of `{k}` is not a number", at())
                        })? as f32,
                    ))
                })
                .collect::<Result<_>>()?,
            Some(o) => bail!("{}: `mix` must be an object or a string, found {o}", at()),
        };
        let messages = match v.get("messages") {
            Some(m) => Some(serde_json::from_value(m.clone()).with_context(|| {
                format!("{}: `messages` must be a list of {{role, content}}", at())
            })?),
            None => None,
        };
        let text = v.get("prompt").and_then(|p| p.as_str()).map(String::from);
        if text.is_none() && messages.is_none() {
            bail!("{}: expected a `prompt` string or a `messages` list", at());
        }
        out.push(Prompt {
            text,
            messages,
            mix,
            explicit_mix: explicit_mix || args.mix.is_some(),
        });
    }
    if out.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    Ok(out)
}

/// A prompt as the model reads it: the rendered text (through the chat template when asked)
/// and where the user's own text lies inside it (what a router reads).
pub struct Rendered {
    /// The full text.
    pub text: String,
    /// The user's text, as given.
    pub user: String,
    /// Byte range of `user` in `text`, if the template kept it verbatim.
    pub span: Option<Range<usize>>,
}

/// Renders a prompt, through the chat template when `chat` is set or `messages` are given.
/// The routed text of a conversation is its last user message.
pub fn render_prompt(
    tok: &TextTokenizer,
    chat: bool,
    system: Option<&str>,
    text: Option<&str>,
    messages: Option<Vec<ChatMessage>>,
) -> Result<Rendered> {
    let (rendered, user) = match (messages, text) {
        (Some(m), _) => {
            let user = m
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.clone())
                .unwrap_or_default();
            (tok.render_chat(&m, true)?, user)
        }
        (None, Some(t)) if chat => {
            let mut m = Vec::new();
            if let Some(s) = system {
                m.push(ChatMessage {
                    role: "system".into(),
                    content: s.into(),
                });
            }
            m.push(ChatMessage {
                role: "user".into(),
                content: t.into(),
            });
            (tok.render_chat(&m, true)?, t.to_string())
        }
        (None, Some(t)) => (t.to_string(), t.to_string()),
        (None, None) => bail!("empty prompt"),
    };
    if rendered.is_empty() {
        bail!("the prompt is empty");
    }
    let span = (!user.is_empty())
        .then(|| rendered.rfind(&user).map(|at| at..at + user.len()))
        .flatten();
    Ok(Rendered {
        text: rendered,
        user,
        span,
    })
}

/// Token ids of a rendered prompt (BOS first when the model wants one) and the byte offset
/// where each token starts.
pub fn encode_prompt(tok: &TextTokenizer, rendered: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let (mut ids, mut starts) = tok.encode_with_offsets(rendered)?;
    if let Some(bos) = tok.bos_prefix() {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
            starts.insert(0, 0);
        }
    }
    Ok((ids, starts))
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

impl WithBackend for &GenerateArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        let args = self;
        let prompts = read_prompts(args)?;
        let loaded: Loaded<B> = load(backend, &args.model)?;
        let tok = loaded.tokenizer()?;
        let params = args.sampling.params();
        let names = loaded.model.adapter_names().to_vec();
        let routing = Routing::new(&args.routing, &names)?;
        let mut requests = Vec::new();
        let mut decisions: Vec<Vec<Decision>> = Vec::new();
        for p in &prompts {
            let r = render_prompt(
                tok,
                args.chat,
                args.system.as_deref(),
                p.text.as_deref(),
                p.messages.clone(),
            )?;
            let (ids, starts) = encode_prompt(tok, &r.text)?;
            let (segments, routed) = match &routing {
                Some(routing) if !p.explicit_mix => {
                    routing.route_prompt(&r.text, r.span, &r.user, &starts, &names)
                }
                _ => (
                    vec![(0, common::mixture(&loaded.model, &p.mix)?)],
                    Vec::new(),
                ),
            };
            if routing.as_ref().is_some_and(|r| r.show) {
                for d in &routed {
                    eprintln!("{}", d.describe(requests.len()));
                }
            }
            decisions.push(routed);
            requests.push(GenRequest {
                prompt: ids,
                segments,
                params: params.clone(),
            });
        }
        // Routing by sentence re-routes after every generated sentence.
        let rerouter = routing.as_ref().filter(|r| r.by == RouteBy::Sentence);
        let mut trackers: Vec<SentenceTracker> = requests
            .iter()
            .map(|_| SentenceTracker::default())
            .collect();
        let mut produced: Vec<usize> = vec![0; requests.len()];
        let stream = !args.json && requests.len() == 1;
        let mut texts: Vec<String> = vec![String::new(); requests.len()];
        let mut printed = 0usize;
        let mut decoders: Vec<_> = (0..requests.len()).map(|_| tok.stream_decoder()).collect();
        let stops = &params.stop;
        let mut stdout = std::io::stdout().lock();
        let (outs, stats) = generate(
            &loaded.model,
            &requests,
            &loaded.eos_ids(),
            args.step_tokens,
            |i, id| {
                produced[i] += 1;
                let mut control = Control::Continue;
                if let Some(piece) = decoders[i].push(id)? {
                    texts[i].push_str(&piece);
                    if let Some(routing) = rerouter {
                        if let Some(sentence) = trackers[i].push(&piece) {
                            // The token just sampled opens the next sentence; it and all
                            // after it run under the mixture routed from the finished one.
                            let mix = routing.route(&[sentence.as_str()]).remove(0);
                            let d = Decision {
                                source: "generated",
                                text: sentence,
                                first_token: requests[i].prompt.len() + produced[i] - 1,
                                mixture: named(&mix, &names),
                            };
                            if routing.show {
                                eprintln!("{}", d.describe(i));
                            }
                            decisions[i].push(d);
                            control = Control::Remix(mix);
                        }
                    }
                }
                if let Some(at) = find_stop(&texts[i], stops) {
                    texts[i].truncate(at);
                    control = Control::Stop;
                }
                if stream {
                    let hold = if control == Control::Stop {
                        0
                    } else {
                        stop_holdback(&texts[i], stops)
                    };
                    let upto = texts[i].len() - hold;
                    if upto > printed {
                        let _ = stdout.write_all(&texts[i].as_bytes()[printed..upto]);
                        let _ = stdout.flush();
                        printed = upto;
                    }
                }
                Ok(control)
            },
        )?;
        if stream {
            let _ = writeln!(stdout, "{}", &texts[0][printed.min(texts[0].len())..]);
        }
        let decode_tps = if stats.decode_secs > 0.0 {
            stats.decode_tokens as f64 / stats.decode_secs
        } else {
            0.0
        };
        let prefill_tps = if stats.prefill_secs > 0.0 {
            stats.prefill_tokens as f64 / stats.prefill_secs
        } else {
            0.0
        };
        if args.json {
            let results: Vec<Value> = outs
                .iter()
                .zip(&texts)
                .zip(&decisions)
                .map(|((o, t), routed)| {
                    let segments: Vec<Value> = o
                        .segments
                        .iter()
                        .map(|(first, m)| json!({"first_token": first, "mixture": named(m, &names)}))
                        .collect();
                    let mut v = json!({
                        "text": t, "prompt_tokens": o.prompt_tokens, "completion_tokens": o.tokens.len(),
                        "finish_reason": o.finish, "mixture": named(&o.segments[0].1, &names),
                        "segments": segments,
                    });
                    if routing.is_some() {
                        v["routing"] = json!(routed);
                    }
                    v
                })
                .collect();
            let v = json!({
                "results": results,
                "stats": {
                    "backend": loaded.model.backend.name(), "batch": requests.len(),
                    "prefill_tokens": stats.prefill_tokens, "prefill_secs": stats.prefill_secs, "prefill_tokens_per_s": prefill_tps,
                    "decode_tokens": stats.decode_tokens, "decode_secs": stats.decode_secs, "decode_tokens_per_s": decode_tps,
                    "steps": stats.steps, "peak_rss_mib": peak_rss_mib(),
                }
            });
            writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?;
        } else if !stream {
            for (i, t) in texts.iter().enumerate() {
                writeln!(stdout, "=== [{i}] ===\n{t}")?;
            }
        }
        tracing::info!(decode_tps, prefill_tps, "done");
        Ok(())
    }
}
