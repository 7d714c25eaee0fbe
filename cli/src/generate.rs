//! `dlp-run generate`: stream text from one prompt, or run many prompts as one batch, each
//! with its own adapter mixture.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::generate::{
    failure, generate_each, Control, FinishReason, GenRequest, DEFAULT_STEP_TOKENS,
};
use dlp_engine::tokenizer::{text_of_part, ChatMessage, ChatRequest};
use dlp_engine::Backend;
use serde_json::{json, Value};

use crate::common::{load, Loaded, ModelArgs, WithBackend};
use crate::mix_args::{self, parse_mix};
use crate::pipeline::{encode_prompt, peak_rss_mib, render_prompt, TextOptions, TextStream};
use crate::routing::{named, Decision, RouteArgs, RouteBy, Routing};
use crate::sampling_args::SamplingArgs;

/// Generate text with the base model and a weighted mixture of LoRA adapters.
#[derive(Debug, Args, Clone)]
// One of the two inputs is required: clap's message then names both.
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "prompts"])))]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Adapter mixture for every prompt: `NAME=W[,NAME=W]...` (names from `--adapter`).
    /// The adapters' deltas are summed with these weights, each from 0 to 100 (each adapter
    /// keeps its own alpha/r).
    /// Omit for the base model.
    #[arg(long, value_name = "NAME=W,...")]
    pub mix: Option<String>,
    /// Wrap each prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message for `--chat` (default: the template's own). Lines of `--prompts` that
    /// give `messages` carry their own system message.
    #[arg(
        long,
        value_name = "TEXT",
        requires = "chat",
        allow_hyphen_values = true
    )]
    pub system: Option<String>,
    /// The prompt; `-` reads it from standard input (to its end, less one final newline; a
    /// prompt that is just `-` goes in a --prompts file).
    #[arg(
        long,
        short = 'p',
        value_name = "TEXT",
        conflicts_with = "prompts",
        allow_hyphen_values = true
    )]
    pub prompt: Option<String>,
    /// Many prompts, run as one batch: a JSONL file (`-`: standard input) of objects with
    /// `prompt` (text) or `messages` (chat), and optionally `mix` (`{"name": weight}` or
    /// "name=w,...", which wins over `--mix` and `--router` for its line, its answer
    /// included); the sampling and format flags apply to every line (other fields are
    /// refused).
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub format: crate::format_args::FormatArgs,
    #[command(flatten)]
    pub routing: RouteArgs,
    /// Print one JSON object instead of streaming text: a result per prompt (`source`: where
    /// it came from, `FILE:LINE` for --prompts; text, token counts, finish and stop reasons;
    /// `mixture`: the one the prompt starts under; `segments`: every mixture from its first
    /// token on, routed sentences included; `routing`: the router's decisions), and stats
    /// (prefill/decode times, tokens/s, peak RSS).
    #[arg(long)]
    pub json: bool,
    /// Most tokens per forward pass while prefilling (longer prompts are chunked).
    #[arg(long, default_value_t = DEFAULT_STEP_TOKENS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub step_tokens: usize,
}

/// One prompt as given.
pub(crate) struct Prompt {
    text: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    mix: Vec<(String, f32)>,
    /// Whether the prompt named its own mixture (a router then leaves it alone).
    explicit_mix: bool,
    /// Where it came from, for messages: `--prompt` or `FILE:LINE`.
    source: String,
    /// Where its mixture came from: `--mix`, or `FILE:LINE: mix`.
    mix_source: String,
}

fn read_prompts(args: &GenerateArgs) -> Result<Vec<Prompt>> {
    let default_mix = args
        .mix
        .as_deref()
        .map(parse_mix)
        .transpose()?
        .unwrap_or_default();
    if let Some(p) = &args.prompt {
        let text = if p == "-" {
            let (t, _) = crate::input::read_text(std::path::Path::new("-"), "--prompt")?;
            // The newline that `echo` or a here-document ends with is not part of the prompt.
            let t = t.strip_suffix('\n').unwrap_or(&t);
            let t = t.strip_suffix('\r').unwrap_or(t);
            if t.is_empty() {
                bail!(
                    "--prompt -: standard input is empty (pipe the prompt in, or give it as text)"
                );
            }
            t.to_string()
        } else {
            p.clone()
        };
        return Ok(vec![Prompt {
            text: Some(text),
            messages: None,
            mix: default_mix,
            explicit_mix: args.mix.is_some(),
            source: "--prompt".into(),
            mix_source: "--mix".into(),
        }]);
    }
    let path = args
        .prompts
        .as_ref()
        .context("give --prompt or --prompts")?;
    let (text, name) = crate::input::read_text(path, "--prompts")?;
    parse_prompts(&text, &name, &default_mix, args.mix.is_some())
}

/// The prompts of a `--prompts` JSONL text read from `source` (its name in messages): one
/// object per line with `prompt` or `messages`, and optionally `mix`; `default_mix` (from
/// `--mix`, which makes every mixture explicit when `cli_mix`) where a line has none.
pub(crate) fn parse_prompts(
    text: &str,
    source: &str,
    default_mix: &[(String, f32)],
    cli_mix: bool,
) -> Result<Vec<Prompt>> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{source}:{}", i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        if let Some(k) = crate::json_keys::duplicate_key(line.as_bytes()) {
            bail!("{}: key `{k}` is given twice", at());
        }
        let Some(obj) = v.as_object() else {
            bail!("{}: expected a JSON object, found {v}", at());
        };
        // Sampling settings come from the flags for the whole batch: a per-line
        // `max_tokens` or `temperature` would otherwise be silently ignored.
        if let Some(k) = obj
            .keys()
            .find(|k| !["prompt", "messages", "mix"].contains(&k.as_str()))
        {
            bail!(
                "{}: unknown field `{k}`: a line has `prompt` or `messages`, and optionally `mix` \
                 (sampling settings such as --max-tokens apply to the whole batch)",
                at()
            );
        }
        let explicit_mix = !matches!(v.get("mix"), None | Some(Value::Null));
        let mix = match v.get("mix") {
            None | Some(Value::Null) => default_mix.to_vec(),
            Some(Value::String(s)) => mix_args::parse_mix_as(s, "mix").with_context(at)?,
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, w)| {
                    let w = w.as_f64().with_context(|| {
                        format!("{}: mix weight of `{k}` is not a number", at())
                    })?;
                    Ok((
                        k.clone(),
                        mix_args::mix_weight(w, || format!("{}: mix `{k}`", at()))?,
                    ))
                })
                .collect::<Result<_>>()?,
            Some(o) => bail!("{}: `mix` must be an object or a string, found {o}", at()),
        };
        let messages: Option<Vec<ChatMessage>> = match v.get("messages") {
            Some(m) => Some(serde_json::from_value(m.clone()).with_context(|| {
                format!("{}: `messages` must be a list of {{role, content}}", at())
            })?),
            None => None,
        };
        if let Some(ms) = &messages {
            if ms.is_empty() {
                bail!("{}: `messages` is empty", at());
            }
            for (j, m) in ms.iter().enumerate() {
                let has_content = match m.fields().get("content") {
                    Some(Value::String(_)) => true,
                    Some(Value::Array(parts)) => parts.iter().all(|p| text_of_part(p).is_some()),
                    _ => false,
                };
                if !has_content && !m.fields().contains_key("tool_calls") {
                    bail!(
                        "{}: `messages[{j}].content` must be a string or a list of text parts",
                        at()
                    );
                }
            }
        }
        let text = match v.get("prompt") {
            None => None,
            Some(Value::String(p)) if p.is_empty() => bail!("{}: `prompt` is empty", at()),
            Some(Value::String(p)) => Some(p.clone()),
            Some(o) => bail!("{}: `prompt` must be a string, found {o}", at()),
        };
        match (&text, &messages) {
            (None, None) => bail!("{}: expected a `prompt` string or a `messages` list", at()),
            (Some(_), Some(_)) => bail!("{}: give `prompt` or `messages`, not both", at()),
            _ => {}
        }
        out.push(Prompt {
            text,
            messages,
            mix,
            explicit_mix: explicit_mix || cli_mix,
            source: at(),
            mix_source: match explicit_mix {
                true => format!("{}: mix", at()),
                false => "--mix".into(),
            },
        });
    }
    if out.is_empty() {
        bail!("{source}: no prompts");
    }
    Ok(out)
}

impl WithBackend for &GenerateArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        let args = self;
        // Before the model loads; the vocabulary is checked once it is known. The output
        // format's schema file is read here.
        args.sampling.check()?;
        let format = args.format.format()?;
        let prompts = read_prompts(args)?;
        if let Some(p) = prompts
            .iter()
            .find(|p| p.messages.is_some() && args.system.is_some())
        {
            bail!(
                "--system: {} gives its own `messages`; put the system message among them",
                p.source
            );
        }
        if args.model.chat_template.is_some()
            && !args.chat
            && prompts.iter().all(|p| p.messages.is_none())
        {
            bail!("--chat-template is used by --chat (or by --prompts lines with `messages`); without either the prompts are sent as plain text");
        }
        let loaded: Loaded<B> = load(backend, &args.model)?;
        let tok = loaded.tokenizer()?;
        args.sampling
            .check_token_ids_vocab(loaded.model.config.vocab_size)?;
        let mut params = args.sampling.params();
        params.bad_words_ids = tok.bad_words_ids(&args.sampling.bad_words)?;
        let constraint = format
            .map(|f| {
                crate::format_args::compile(
                    &f,
                    tok,
                    loaded.model.config.vocab_size,
                    &loaded.eos_ids(),
                )
            })
            .transpose()?;
        let names = loaded.model.adapter_names().to_vec();
        let routing = Routing::new(&args.routing, &names)?;
        if routing.is_none() && !names.is_empty() {
            let plain: Vec<&str> = (prompts.iter())
                .filter(|p| !p.explicit_mix)
                .map(|p| p.source.as_str())
                .collect();
            if let Some(first) = plain.first() {
                // Loading an adapter does not apply it: say so rather than answer silently
                // with the base model; every such prompt counted, not only the first.
                let which = match plain.len() {
                    1 => first.to_string(),
                    n => format!("{first} and {} more prompt(s) without a mix", n - 1),
                };
                eprintln!(
                    "note: {which}: no --mix and no --router, so the base model answers; the loaded adapters ({}) apply with e.g. --mix {}=1",
                    names.join(", "),
                    names[0]
                );
            }
        }
        let mut requests = Vec::new();
        let mut decisions: Vec<Vec<Decision>> = Vec::new();
        for p in &prompts {
            let r = render_prompt(
                tok,
                args.chat,
                args.system.as_deref(),
                p.text.as_deref(),
                p.messages.clone().map(ChatRequest::new),
            )
            .with_context(|| p.source.clone())?;
            let (ids, starts) = encode_prompt(tok, &r)?;
            // Said here, where the prompt's source is known (the engine names "request N").
            let ctx = loaded.model.max_context;
            if ids.len() >= ctx {
                bail!(
                    "{}: the prompt has {} tokens, the context holds {ctx} (--max-context or the \
                     model's limit; leave room for at least one new token)",
                    p.source,
                    ids.len(),
                );
            }
            let (segments, routed) = match &routing {
                Some(routing) if !p.explicit_mix => {
                    if r.span.is_none() && routing.by == RouteBy::Sentence && !r.user.is_empty() {
                        eprintln!(
                            "note: {}: the chat template changed the user's text (not found in \
                             the rendered prompt), so it is routed as one piece, not per sentence",
                            p.source
                        );
                    }
                    routing.route_prompt(&r.text, r.span, &r.user, &starts, &names)
                }
                _ => (
                    vec![(
                        0,
                        mix_args::mixture(&loaded.model, &p.mix)
                            .with_context(|| p.mix_source.clone())?,
                    )],
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
                constraint: constraint.clone(),
                params: params.clone(),
            });
        }
        let rerouter = routing.as_ref().filter(|r| r.by == RouteBy::Sentence);
        let stream = !args.json && requests.len() == 1;
        let mut texts: Vec<TextStream> = (requests.iter().zip(&prompts))
            .map(|(r, p)| {
                let room = loaded.model.max_context.saturating_sub(r.prompt.len());
                let opts = TextOptions {
                    include_stop: args.sampling.include_stop_str,
                    show_special: args.sampling.show_special_tokens,
                    // A line's own mixture holds for its whole answer, as for its prompt.
                    reroute: rerouter.is_some() && !p.explicit_mix,
                    ..TextOptions::of(&params)
                }
                .eos_first(&loaded.eos_ids())
                .within(room);
                TextStream::new(tok, r.prompt.len(), opts)
            })
            .collect();
        let one_output = crate::stderr::same_as_stdout();
        // Whether the answer streamed so far ends a line (a decision printed then needs none).
        let mut line_ended = true;
        let mut stdout = std::io::stdout().lock();
        // A streamed answer that cannot be written (a full disk) ends the run with the error,
        // not an exit 0 with the text lost.
        let mut write_failed: Option<std::io::Error> = None;
        if stream && args.prompts.is_some() {
            // A --prompts file's answers are headed however many lines it has, so that a
            // script reading them need not tell one line from several.
            writeln!(stdout, "=== [0] {} ===", prompts[0].source)
                .context("writing the answers to standard output")?;
        }
        // Every answer is printed, a broken one (NaN logits) too, before the error that names
        // its prompt: one bad mixture does not lose the batch.
        let (outs, stats) = generate_each(
            &loaded.model,
            &requests,
            &loaded.eos_ids(),
            args.step_tokens,
            |i, id| {
                let (control, decision) = texts[i].push(id, rerouter, &names)?;
                if let Some(d) = decision {
                    if rerouter.is_some_and(|r| r.show) {
                        // Where stdout and stderr meet (a terminal, `2>&1`), the answer
                        // streamed so far may end mid-line.
                        let nl = if stream && one_output && !line_ended {
                            "\n"
                        } else {
                            ""
                        };
                        eprintln!("{nl}{}", d.describe(i));
                    }
                    decisions[i].push(d);
                }
                if stream {
                    let ready = texts[i].take_ready(false).as_bytes();
                    if let Some(&last) = ready.last() {
                        line_ended = last == b'\n';
                    }
                    if let Err(e) = stdout.write_all(ready).and_then(|()| stdout.flush()) {
                        write_failed.get_or_insert(e);
                        return Ok(Control::Stop);
                    }
                }
                Ok(control)
            },
        )?;
        for (t, o) in texts.iter_mut().zip(&outs) {
            t.push_end(o)?;
        }
        if stream && write_failed.is_none() {
            if let Err(e) = writeln!(stdout, "{}", texts[0].take_ready(true)) {
                write_failed = Some(e);
            }
        }
        if let Some(e) = write_failed {
            bail!("writing the answer to standard output: {e}");
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
                .zip(&prompts)
                .map(|(((o, t), routed), p)| {
                    let segments: Vec<Value> = o
                        .segments
                        .iter()
                        .map(
                            |(first, m)| json!({"first_token": first, "mixture": named(m, &names)}),
                        )
                        .collect();
                    let mut v = json!({
                        "source": p.source,
                        "text": t.text, "prompt_tokens": o.prompt_tokens,
                        "completion_tokens": o.completion_tokens(), "finish_reason": o.finish,
                        "stop_reason": t.stop_reason(o), "mixture": named(&o.segments[0].1, &names),
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
                    "decode_pick_secs": stats.decode_pick_secs,
                    "steps": stats.steps, "peak_rss_mib": peak_rss_mib(),
                }
            });
            let mut v = v;
            crate::output::tidy_floats(&mut v);
            writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)
                .context("writing the results to standard output")?;
        } else if !stream {
            // Each answer under its index and where its prompt came from (`FILE:LINE`, as the
            // errors and notes name it).
            for (i, (t, p)) in texts.iter().zip(&prompts).enumerate() {
                writeln!(stdout, "=== [{i}] {} ===\n{}", p.source, t.text)
                    .context("writing the answers to standard output")?;
            }
        }
        tracing::info!(decode_tps, prefill_tps, "done");
        // An instruct model given a raw prompt often ends at once: say why the answer is empty
        // (not where an output format may have forced the end).
        if !args.chat && tok.chat_template().is_some() && constraint.is_none() {
            for (o, p) in outs.iter().zip(&prompts) {
                if p.messages.is_none() && o.tokens.is_empty() && o.finish == FinishReason::Eos {
                    eprintln!("note: {}: the model ended its answer at once; this model has a chat template, and an instruct model usually answers only with --chat", p.source);
                }
            }
        }
        // An output format the length limit cut is not the format: say so (exit 0 still, as
        // vLLM answers such a request; --json reports finish_reason "length").
        if constraint.is_some() {
            for (o, p) in outs.iter().zip(&prompts) {
                if o.finish == FinishReason::Length {
                    eprintln!("note: {}: the token limit (--max-tokens) ended the answer before its output format was complete; give more tokens", p.source);
                }
            }
        }
        // The context, not --max-tokens, ended these: say so, or a cut answer looks finished
        // (--json reports finish_reason "context").
        for (o, p) in outs.iter().zip(&prompts) {
            if o.finish == FinishReason::Context {
                eprintln!(
                    "note: {}: the context ({} tokens, prompt included: --max-context or the model's limit) filled before the answer ended; it is cut there",
                    p.source,
                    loaded.model.max_context,
                );
            }
        }
        let broken: Vec<String> = (outs.iter().zip(&prompts))
            .filter_map(|(o, p)| failure(&p.source, o).map(|e| e.to_string()))
            .collect();
        match broken.len() {
            0 => Ok(()),
            1 => bail!("{}", broken[0]),
            n if n == prompts.len() => bail!("all {n} prompts failed:\n  {}", broken.join("\n  ")),
            n => bail!(
                "{n} of {} prompts failed (the others' answers are above):\n  {}",
                prompts.len(),
                broken.join("\n  ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_prompts;

    fn error_of(line: &str) -> String {
        let text = format!("{{\"prompt\": \"ok\"}}\n{line}\n");
        match parse_prompts(&text, "p.jsonl", &[], false) {
            Ok(_) => panic!("{line} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn bad_lines_are_named_with_their_line_number() {
        for (line, want) in [
            (
                r#"{"prompt": "hi", "max_tokens": 1}"#,
                "unknown field `max_tokens`",
            ),
            (
                r#"{"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}"#,
                "not both",
            ),
            (r#"{"messages": []}"#, "`messages` is empty"),
            (
                r#"{"messages": [{"role": "user", "content": [1]}]}"#,
                "list of text parts",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "`messages[0].content` must be",
            ),
            (r#"{"prompt": ""}"#, "`prompt` is empty"),
            (
                r#"{"messages": [{"role": "user", "content": "a", "content": "b"}]}"#,
                "key `messages[0].content` is given twice",
            ),
            (r#"{"prompt": 3}"#, "`prompt` must be a string, found 3"),
            (
                r#"{"mix": {"a": 1}}"#,
                "expected a `prompt` string or a `messages` list",
            ),
        ] {
            let e = error_of(line);
            assert!(
                e.starts_with("p.jsonl:2: ") && e.contains(want),
                "{line}: {e}"
            );
        }
        let ok = "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}]}], \"mix\": \"x=1\"}";
        let p = parse_prompts(ok, "p.jsonl", &[], false).unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].explicit_mix);
    }
}
