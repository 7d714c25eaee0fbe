//! Engine events into OpenAI's response bodies: whole (`Collector`) or as stream chunks
//! (`StreamState`), for completions and chat completions, with `usage`, `logprobs` and the
//! `dlp` extension object (the segments and mixtures actually used).

use dlp_engine::generate::FinishReason;
use dlp_engine::tokenizer::token_name;
use serde_json::{json, Map, Value};

use super::api::Endpoint;
use super::error::ApiError;
use super::http::ResponseMeta;
use super::text_offset::TextOffset;
use super::worker::{Event, SegmentInfo, TokenLogprob};

/// OpenAI's `finish_reason`.
fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Context => "length",
        // The worker answers these with an error instead (never a finish).
        FinishReason::NonFinite | FinishReason::Grammar | FinishReason::NoAllowedToken => "error",
    }
}

fn segments_json(segments: &[SegmentInfo]) -> Value {
    segments
        .iter()
        .map(|s| {
            let mixture: Vec<Value> = s
                .mixture
                .iter()
                .map(|(a, w)| json!({"adapter": a, "weight": w}))
                .collect();
            let mut v =
                json!({"first_token": s.first_token, "source": s.source, "mixture": mixture});
            if let Some(t) = &s.text {
                v["text"] = json!(t);
            }
            v
        })
        .collect()
}

/// What one choice accumulated.
#[derive(Default)]
struct Choice {
    text: String,
    prompt_lps: Vec<TokenLogprob>,
    lps: Vec<TokenLogprob>,
    finish: Option<FinishReason>,
    completion_tokens: usize,
    stop_reason: Value,
    /// Generated tokens seen so far (`continuous_usage_stats`).
    tokens: usize,
    segments: Vec<SegmentInfo>,
    /// Stream: the first chunk (role / echo) went out.
    opened: bool,
    /// The text's length so far, for text offsets.
    offset: TextOffset,
    /// Stream with tools: bytes of `text`, and entries of `lps`, already sent (the rest may
    /// be a call, held until the answer ends).
    sent: usize,
    lps_sent: usize,
}

impl ResponseMeta {
    /// A token as logprobs name it: its text, or `token_id:N` when asked.
    fn token_str(&self, id: u32) -> String {
        self.token_str_of(id, &self.tok.token_bytes(id))
    }

    fn token_str_of(&self, id: u32, bytes: &[u8]) -> String {
        match self.token_ids_as_text {
            true => format!("token_id:{id}"),
            false => token_name(bytes),
        }
    }

    /// vLLM's `prompt_logprobs` of a choice: null for the first prompt token, then per token a
    /// map from token id to `{logprob, rank, decoded_token}`, for the token and the best
    /// alternatives.
    fn prompt_logprobs(&self, choice: usize, prompt_lps: &[TokenLogprob]) -> Option<Value> {
        let k = self.prompt_logprobs?;
        let ids = &self.prompt_of(choice).0;
        let mut out = vec![Value::Null];
        for (&id, l) in ids[1..].iter().zip(prompt_lps) {
            let entry = |p: f32, rank: usize, t: u32| json!({"logprob": p, "rank": rank, "decoded_token": token_name(&self.tok.token_bytes(t))});
            let mut m = Map::new();
            m.insert(id.to_string(), entry(l.logprob, l.rank, id));
            for (r, &(t, p)) in l.top.iter().take(k).enumerate() {
                m.entry(t.to_string()).or_insert_with(|| entry(p, r + 1, t));
            }
            out.push(Value::Object(m));
        }
        Some(Value::Array(out))
    }

    /// The `finish_reason` of an answer that holds calls, as OpenAI's and vLLM's: `tool_calls`
    /// for `"auto"` and `"required"`, but `stop` for a named function, and a `"required"` list
    /// cut short (a partial call dropped) keeps `length` or `stop`.
    fn calls_finish(&self, finish: FinishReason) -> &'static str {
        use super::tools::ToolMode;
        match &self.tool_mode {
            Some(ToolMode::Named(_)) => finish_reason(finish),
            Some(ToolMode::Required) if finish != FinishReason::Eos => finish_reason(finish),
            _ => "tool_calls",
        }
    }

    /// With tools, the answer's `tool_calls` and the text beside them: the calls written whole
    /// (before a cut by `max_tokens` or a stop string too), or none.
    fn tool_calls(&self, finish: FinishReason, text: &str) -> Option<(Option<String>, Vec<Value>)> {
        let mode = self.tool_mode.as_ref()?;
        // A named call cut short is not one (its arguments are not whole); the calls of
        // `"auto"` and `"required"` before a cut are read.
        if finish != FinishReason::Eos && matches!(mode, super::tools::ToolMode::Named(_)) {
            return None;
        }
        super::tools::calls(mode, text, self.call_ids)
    }

    fn n_choices(&self) -> usize {
        self.prompts.len() * self.n
    }

    fn prompt_of(&self, choice: usize) -> &(Vec<u32>, String) {
        &self.prompts[choice / self.n]
    }

    fn dlp(&self, choices: Vec<(usize, &[SegmentInfo])>) -> Value {
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|(i, s)| json!({"index": i, "segments": segments_json(s)}))
            .collect();
        let mut v = json!({"selection": self.selection, "choices": choices});
        if let Some(by) = self.route_by {
            v["route_by"] = json!(by);
        }
        v
    }

    fn usage(&self, completion_tokens: usize) -> Value {
        let prompt: usize = self.prompts.iter().map(|p| p.0.len()).sum();
        json!({"prompt_tokens": prompt, "completion_tokens": completion_tokens,
               "total_tokens": prompt + completion_tokens})
    }

    /// Completions' `logprobs` for `tokens` (`None` entries: the first prompt token, which
    /// has no log-probability), text offsets counted in characters from `offset`; the tokens
    /// from index `generated` on were generated, and a special one adds no text there unless
    /// special tokens are shown (the echoed prompt shows them).
    fn completion_logprobs(
        &self,
        tokens: &[(u32, Option<&TokenLogprob>)],
        generated: usize,
        offset: &mut TextOffset,
    ) -> Value {
        let mut strs = Vec::new();
        let mut lps = Vec::new();
        let mut tops = Vec::new();
        let mut offsets = Vec::new();
        let n = self.logprobs.unwrap_or(0);
        for (k, &(id, lp)) in tokens.iter().enumerate() {
            let bytes = self.tok.token_bytes(id);
            offsets.push(if k < generated {
                offset.push(&bytes)
            } else if self.show_special || !self.tok.is_special(id) {
                // Whether the answer's text, decoded alone, drops this token's leading space.
                let drops = || (self.tok.decode(&[id], false)).is_ok_and(|t| !t.starts_with(' '));
                offset.push_answer(&bytes, drops)
            } else {
                offset.chars
            });
            let name = self.token_str_of(id, &bytes);
            lps.push(lp.map(|l| l.logprob));
            tops.push(lp.map(|l| {
                let mut m = Map::new();
                // Prompt tokens may carry more (`prompt_logprobs`'s).
                for &(t, p) in l.top.iter().take(n) {
                    m.entry(self.token_str(t)).or_insert(json!(p));
                }
                // OpenAI's legacy completions always list the chosen token too (so up to
                // `logprobs` + 1 entries; with `logprobs: 0`, just it), with its own value
                // where another token decodes to the same text (kept in place if listed).
                m.insert(name.clone(), json!(l.logprob));
                Value::Object(m)
            }));
            strs.push(name);
        }
        json!({"tokens": strs, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
    }

    /// Chat's `logprobs.content` entries for `lps`.
    fn chat_logprobs(&self, lps: &[TokenLogprob]) -> Value {
        let entry = |id: u32, p: f32| {
            let bytes = self.tok.token_bytes(id);
            json!({"token": self.token_str_of(id, &bytes), "logprob": p, "bytes": bytes})
        };
        let content: Vec<Value> = lps
            .iter()
            .map(|l| {
                let mut e = entry(l.token, l.logprob);
                e["top_logprobs"] = l.top.iter().map(|&(t, p)| entry(t, p)).collect();
                e
            })
            .collect();
        json!({"content": content})
    }

    /// The prompt part of an echoed choice: its text, and its tokens for `logprobs`.
    fn echo_tokens<'a>(
        &self,
        choice: usize,
        prompt_lps: &'a [TokenLogprob],
    ) -> Vec<(u32, Option<&'a TokenLogprob>)> {
        let ids = &self.prompt_of(choice).0;
        ids.iter()
            .enumerate()
            .map(|(i, &id)| (id, if i == 0 { None } else { prompt_lps.get(i - 1) }))
            .collect()
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completion, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    /// A chat stream chunk carrying `delta` for choice `i`.
    fn chat_delta(&self, i: usize, delta: Value, logprobs: Option<Value>) -> Value {
        let choice =
            json!({"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": null});
        self.envelope(true, vec![choice])
    }

    fn envelope(&self, chunk: bool, choices: Vec<Value>) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created,
               "model": self.model, "choices": choices})
    }
}

/// Gathers a whole response.
pub struct Collector {
    meta: ResponseMeta,
    choices: Vec<Choice>,
}

impl Collector {
    /// An empty response for `meta`'s choices.
    pub fn new(meta: ResponseMeta) -> Self {
        let choices = (0..meta.n_choices()).map(|_| Choice::default()).collect();
        Collector { meta, choices }
    }

    /// Adds one event; an engine error ends the request with that error.
    pub fn push(&mut self, ev: Event) -> Result<(), ApiError> {
        match ev {
            Event::Prompt { choice, lp, .. } => self.choices[choice].prompt_lps.push(lp),
            Event::Token { choice, lp, text } => {
                let c = &mut self.choices[choice];
                c.text.push_str(&text);
                c.lps.extend(lp);
            }
            Event::Text { choice, text } => self.choices[choice].text.push_str(&text),
            Event::Done {
                choice,
                finish,
                completion_tokens,
                stop_reason,
                segments,
            } => {
                let c = &mut self.choices[choice];
                c.finish = Some(finish);
                c.completion_tokens = completion_tokens;
                c.stop_reason = stop_reason;
                c.segments = segments;
            }
            Event::Error(e) => return Err(e),
        }
        Ok(())
    }

    /// The response body.
    pub fn finish(self) -> Value {
        let m = &self.meta;
        if let Some(i) = self.choices.iter().position(|c| c.finish.is_none()) {
            // The engine ended without finishing a choice: report it rather than a cut text.
            return ApiError::internal(format!("choice {i} did not finish")).body();
        }
        let completion: usize = self.choices.iter().map(|c| c.completion_tokens).sum();
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let finish = c.finish.map(finish_reason);
                match m.endpoint {
                    Endpoint::Completion => {
                        let mut text = String::new();
                        let mut tokens = Vec::new();
                        if m.echo {
                            text.push_str(&m.prompt_of(i).1);
                            tokens = m.echo_tokens(i, &c.prompt_lps);
                        }
                        text.push_str(&c.text);
                        let logprobs = m.logprobs.map(|_| {
                            let generated = tokens.len();
                            tokens.extend(c.lps.iter().map(|l| (l.token, Some(l))));
                            m.completion_logprobs(&tokens, generated, &mut TextOffset::default())
                        });
                        let mut v = json!({"index": i, "text": text, "logprobs": logprobs,
                                           "finish_reason": finish, "stop_reason": c.stop_reason});
                        if let Some(p) = m.prompt_logprobs(i, &c.prompt_lps) {
                            v["prompt_logprobs"] = p;
                        }
                        v
                    }
                    Endpoint::Chat => {
                        let logprobs = m.logprobs.map(|_| m.chat_logprobs(&c.lps));
                        if let Some((f, (content, calls))) =
                            c.finish.and_then(|f| Some((f, m.tool_calls(f, &c.text)?)))
                        {
                            return json!({"index": i, "message": {"role": "assistant",
                                          "content": content, "tool_calls": calls},
                                          "logprobs": logprobs, "finish_reason": m.calls_finish(f),
                                          "stop_reason": c.stop_reason});
                        }
                        json!({"index": i, "message": {"role": "assistant", "content": c.text},
                               "logprobs": logprobs, "finish_reason": finish,
                               "stop_reason": c.stop_reason})
                    }
                }
            })
            .collect();
        let mut v = m.envelope(false, choices);
        if m.endpoint == Endpoint::Chat {
            // One prompt, the same for every choice: once, as vLLM does.
            if let Some(p) = m.prompt_logprobs(0, &self.choices[0].prompt_lps) {
                v["prompt_logprobs"] = p;
            }
        }
        v["usage"] = m.usage(completion);
        v["dlp"] = m.dlp(
            self.choices
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.segments.as_slice()))
                .collect(),
        );
        v
    }
}

/// Turns events into stream chunks as they come.
pub struct StreamState {
    meta: ResponseMeta,
    choices: Vec<Choice>,
    done: usize,
    completion_tokens: usize,
}

impl StreamState {
    /// A stream for `meta`'s choices.
    pub fn new(meta: ResponseMeta) -> Self {
        let choices = (0..meta.n_choices()).map(|_| Choice::default()).collect();
        StreamState {
            meta,
            choices,
            done: 0,
            completion_tokens: 0,
        }
    }

    /// The opening chunk of a choice, before its first text: chat's role; completions' echoed
    /// prompt (with its log-probabilities).
    /// With `continuous_usage_stats` it counts the tokens before this event's: vLLM's role
    /// chunk counts none, and so does completions' echo here (vLLM sends the echo with the
    /// first token's text, counting it).
    fn open(&mut self, i: usize, out: &mut Vec<Value>) {
        let m = &self.meta;
        let c = &mut self.choices[i];
        if std::mem::replace(&mut c.opened, true) {
            return;
        }
        let first = out.len();
        match m.endpoint {
            Endpoint::Chat => {
                out.push(m.chat_delta(i, json!({"role": "assistant", "content": ""}), None))
            }
            Endpoint::Completion if m.echo => {
                let tokens = m.echo_tokens(i, &c.prompt_lps);
                let logprobs = m
                    .logprobs
                    .map(|_| m.completion_logprobs(&tokens, tokens.len(), &mut c.offset));
                out.push(m.envelope(
                    true,
                    vec![
                        json!({"index": i, "text": m.prompt_of(i).1, "logprobs": logprobs,
                                "finish_reason": null}),
                    ],
                ));
            }
            Endpoint::Completion => {}
        }
        if m.continuous_usage {
            for chunk in &mut out[first..] {
                chunk["usage"] = Self::choice_usage(m, i, c.tokens);
            }
        }
    }

    fn text_chunk(&mut self, i: usize, text: String, lp: Option<TokenLogprob>) -> Value {
        let m = &self.meta;
        let c = &mut self.choices[i];
        match m.endpoint {
            Endpoint::Completion => {
                let logprobs = lp
                    .as_ref()
                    .map(|l| m.completion_logprobs(&[(l.token, Some(l))], 0, &mut c.offset));
                m.envelope(
                    true,
                    vec![json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": null})],
                )
            }
            Endpoint::Chat => {
                let logprobs = lp
                    .as_ref()
                    .map(|l| m.chat_logprobs(std::slice::from_ref(l)));
                m.chat_delta(i, json!({"content": text}), logprobs)
            }
        }
    }

    /// The chunks one event produces.
    pub fn chunks(&mut self, ev: Event) -> Vec<Value> {
        let mut out = Vec::new();
        let mut usage = None;
        match ev {
            Event::Prompt { choice, lp, .. } => self.choices[choice].prompt_lps.push(lp),
            Event::Token { text, choice, lp } if self.meta.tool_mode.is_some() => {
                self.open(choice, &mut out);
                self.choices[choice].tokens += 1;
                self.hold(choice, &text, lp, &mut out);
            }
            Event::Text { choice, text } if self.meta.tool_mode.is_some() => {
                self.hold(choice, &text, None, &mut out);
            }
            Event::Token { choice, lp, text } => {
                self.open(choice, &mut out);
                self.choices[choice].tokens += 1;
                if !text.is_empty() || lp.is_some() {
                    out.push(self.text_chunk(choice, text, lp));
                }
            }
            Event::Text { choice, text } => {
                self.open(choice, &mut out);
                out.push(self.text_chunk(choice, text, None));
            }
            Event::Done {
                choice,
                finish,
                completion_tokens,
                stop_reason,
                segments,
            } => {
                self.open(choice, &mut out);
                self.done += 1;
                self.completion_tokens += completion_tokens;
                // The end token (not an event of its own) counts from here on.
                self.choices[choice].tokens = completion_tokens;
                let m = &self.meta;
                let mut reason = finish_reason(finish);
                if m.tool_mode.is_some() {
                    // The calls go out whole, before the finish, with the held text.
                    let c = &self.choices[choice];
                    let sent = &c.text[..c.sent];
                    let mut delta = Map::new();
                    let rest = match m.tool_calls(finish, &c.text) {
                        Some((content, calls)) => {
                            reason = m.calls_finish(finish);
                            let calls: Vec<Value> = (calls.into_iter().enumerate())
                                .map(|(k, mut call)| {
                                    call["index"] = json!(k);
                                    call
                                })
                                .collect();
                            delta.insert("tool_calls".into(), json!(calls));
                            // What was sent is the start of the content (text before a call).
                            content.and_then(|t| t.strip_prefix(sent).map(str::to_string))
                        }
                        None => Some(c.text[c.sent..].to_string()),
                    };
                    if let Some(rest) = rest.filter(|r| !r.is_empty() || c.sent == 0) {
                        delta.insert("content".into(), json!(rest));
                    }
                    if !delta.is_empty() {
                        let lps = &c.lps[c.lps_sent..];
                        let logprobs = m.logprobs.map(|_| m.chat_logprobs(lps));
                        out.push(m.chat_delta(choice, Value::Object(delta), logprobs));
                    }
                }
                let last = match m.endpoint {
                    Endpoint::Completion => json!({"index": choice, "text": "", "logprobs": null,
                                                  "finish_reason": reason, "stop_reason": stop_reason}),
                    Endpoint::Chat => json!({"index": choice, "delta": {}, "logprobs": null,
                                            "finish_reason": reason, "stop_reason": stop_reason}),
                };
                let mut chunk = m.envelope(true, vec![last]);
                chunk["dlp"] = m.dlp(vec![(choice, segments.as_slice())]);
                out.push(chunk);
                if self.done == self.choices.len() && m.include_usage {
                    let mut u = m.envelope(true, vec![]);
                    u["usage"] = m.usage(self.completion_tokens);
                    usage = Some(u);
                }
            }
            Event::Error(e) => return vec![e.body()],
        }
        if self.meta.continuous_usage {
            self.add_usage(&mut out);
        }
        // The stream's own usage chunk, after the running figures.
        out.extend(usage);
        out
    }

    /// With tools: adds a piece of choice `i`'s answer, and sends what is surely content (with
    /// `"auto"`, text before anything the parser may read as a call; a forced call sends
    /// nothing before its end).
    fn hold(&mut self, i: usize, text: &str, lp: Option<TokenLogprob>, out: &mut Vec<Value>) {
        let m = &self.meta;
        let c = &mut self.choices[i];
        c.text.push_str(text);
        c.lps.extend(lp);
        let Some(super::tools::ToolMode::Auto {
            parser: Some(parser),
            ..
        }) = &m.tool_mode
        else {
            return;
        };
        let end = parser.content_end(&c.text, c.sent);
        if end > c.sent {
            let lps = &c.lps[c.lps_sent..];
            let logprobs = m.logprobs.map(|_| m.chat_logprobs(lps));
            out.push(m.chat_delta(i, json!({"content": &c.text[c.sent..end]}), logprobs));
            (c.sent, c.lps_sent) = (end, c.lps.len());
        }
    }

    /// vLLM's `continuous_usage_stats`: the usage so far in each chunk.
    /// A chunk about one choice counts that choice's tokens and its prompt's, as vLLM's do; the
    /// others (an error, the closing usage) count the whole request's.
    /// Opening chunks (see [`Self::open`]) already hold theirs.
    fn add_usage(&self, out: &mut [Value]) {
        let m = &self.meta;
        for chunk in out.iter_mut().filter(|c| c.get("usage").is_none()) {
            let one = chunk["choices"][0]["index"].as_u64().map(|i| i as usize);
            chunk["usage"] = match one.filter(|&i| i < self.choices.len()) {
                Some(i) => Self::choice_usage(m, i, self.choices[i].tokens),
                None => m.usage(self.choices.iter().map(|c| c.tokens).sum()),
            };
        }
    }

    /// The usage of choice `i` after `tokens` generated tokens: its prompt's and those.
    fn choice_usage(m: &ResponseMeta, i: usize, tokens: usize) -> Value {
        let p = m.prompt_of(i).0.len();
        json!({"prompt_tokens": p, "completion_tokens": tokens, "total_tokens": p + tokens})
    }
}
