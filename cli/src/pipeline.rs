//! The text side of a request, shared by `generate`, `serve` and `eval` so that all three
//! turn prompts into tokens and tokens into text the same way: the chat template, BOS, the
//! router's segments, incremental detokenizing, stop strings and re-routing after every
//! generated sentence.

use std::ops::Range;

use anyhow::{bail, Result};
use dlp_engine::generate::{Control, GenOutput};
use dlp_engine::sampler::{find_stop, stop_holdback};
use dlp_engine::tokenizer::{ChatMessage, ChatRequest, StreamDecoder, TextTokenizer};
use dlp_engine::SamplingParams;

use crate::routing::{named, Decision, Routing, SentenceTracker};

/// A prompt as the model reads it: the rendered text (through the chat template when asked)
/// and where the user's own text lies inside it (what a router reads).
pub struct Rendered {
    /// The full text.
    pub text: String,
    /// The user's text, as given.
    pub user: String,
    /// Byte range of `user` in `text` (or of `user` less its outer whitespace, for templates
    /// that trim), if the template kept it; its last occurrence.
    pub span: Option<Range<usize>>,
    /// Rendered through the chat template (BOS rules differ: see
    /// [`TextTokenizer::bos_prefix`]).
    pub chat: bool,
}

/// Where the turn of message `last_user` of `c` ends in `rendered` (`c` rendered whole): the
/// length of the conversation up to that message rendered alone, when that is how the whole
/// one begins (chat templates render turn by turn); None when it is the last message or the
/// template renders otherwise.
fn user_turn_end(
    tok: &TextTokenizer,
    c: &ChatRequest,
    last_user: Option<usize>,
    rendered: &str,
) -> Option<usize> {
    let i = last_user.filter(|&i| i + 1 < c.messages.len())?;
    let head = ChatRequest {
        messages: c.messages[..=i].to_vec(),
        add_generation_prompt: false,
        continue_final_message: false,
        ..c.clone()
    };
    let head = tok.render_chat_request(&head).ok()?;
    rendered.starts_with(&head).then_some(head.len())
}

/// Renders a prompt, through the chat template when `chat` is set or a `conversation` (the
/// messages, and the tools the template is shown) is given. The routed text of a
/// conversation is its last user message. `system` goes in front of a text prompt; a
/// conversation carries its own (generate refuses `--system` beside one).
pub fn render_prompt(
    tok: &TextTokenizer,
    chat: bool,
    system: Option<&str>,
    text: Option<&str>,
    conversation: Option<ChatRequest>,
) -> Result<Rendered> {
    let is_chat = conversation.is_some() || chat;
    // `turn_end`: where the last user message's turn ends in the rendered text, where known.
    let (rendered, user, turn_end) = match (conversation, text) {
        (Some(c), _) => {
            let last = c.messages.iter().rposition(|m| m.role() == "user");
            let user = last.map(|i| c.messages[i].text()).unwrap_or_default();
            let rendered = tok.render_chat_request(&c)?;
            // Only where the text occurs twice is there a later copy to tell apart (an
            // extra template render otherwise spent on every chat request).
            let twice =
                !user.trim().is_empty() && rendered.match_indices(user.trim()).nth(1).is_some();
            let end = twice
                .then(|| user_turn_end(tok, &c, last, &rendered))
                .flatten();
            (rendered, user, end)
        }
        (None, Some(t)) if chat => {
            let mut m = Vec::new();
            if let Some(s) = system {
                m.push(ChatMessage::new("system", s));
            }
            m.push(ChatMessage::new("user", t));
            (tok.render_chat(&m, true)?, t.to_string(), None)
        }
        (None, Some(t)) => (t.to_string(), t.to_string(), None),
        (None, None) => bail!("empty prompt"),
    };
    if rendered.is_empty() {
        match is_chat {
            true => bail!("the chat template rendered an empty prompt (an empty template file?)"),
            false => bail!("the prompt is empty"),
        }
    }
    // Templates that trim the content (Llama 3's, Mistral's) hold the text less its outer
    // whitespace: found that way too, so routing by sentence still sees the sentences.
    // Searched up to the end of the user's turn: a later message repeating the text (an
    // assistant's answer quoting the question) is not the user's.
    let before = &rendered[..turn_end.unwrap_or(rendered.len())];
    let span = [user.as_str(), user.trim()]
        .into_iter()
        .filter(|u| !u.is_empty())
        .find_map(|u| before.rfind(u).map(|at| at..at + u.len()));
    Ok(Rendered {
        text: rendered,
        user,
        span,
        chat: is_chat,
    })
}

/// Token ids of a rendered prompt (with the BOS the model's tokenizer puts in front of such a
/// prompt: [`TextTokenizer::bos_prefix`]) and the byte offset where each token starts.
pub fn encode_prompt(tok: &TextTokenizer, r: &Rendered) -> Result<(Vec<u32>, Vec<usize>)> {
    Ok(tok.encode_prompt(&r.text, r.chat)?)
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

/// How a [`TextStream`] cuts and shows a sequence's text.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    /// Stop strings: the text ends before the first one (generation stops there).
    pub stops: Vec<String>,
    /// vLLM's `stop_token_ids` (the scheduler stops on them; here for [`TextStream::stop_reason`]).
    pub stop_token_ids: Vec<u32>,
    /// vLLM's `min_tokens`: a stop string counts only if it ends past these tokens' text.
    pub min_tokens: usize,
    /// vLLM's `include_stop_str_in_output`: the text ends after the stop string instead.
    pub include_stop: bool,
    /// Special tokens (`<|im_end|>`, ...) are text too (vLLM's `skip_special_tokens: false`).
    pub show_special: bool,
    /// Re-route after every generated sentence.
    pub reroute: bool,
    /// The token limit (`max_tokens`): its last token is never fed back, so a sentence it
    /// opens is not routed (0: none known).
    pub max_tokens: usize,
}

impl TextOptions {
    /// Without the `eos` ids among its `stop_token_ids`: vLLM checks end-of-sequence first,
    /// so such a token ends the text as EOS does, with no `stop_reason` (pass no ids when
    /// EOS is ignored).
    pub fn eos_first(mut self, eos: &[u32]) -> Self {
        self.stop_token_ids.retain(|t| !eos.contains(t));
        self
    }

    /// With the limit at most `room` tokens: the context (`room` = its length less the
    /// prompt's) may end the answer before `max_tokens` does.
    pub fn within(mut self, room: usize) -> Self {
        self.max_tokens = self.max_tokens.min(room);
        self
    }

    /// The stops, `min_tokens` and `max_tokens` of `p`, with the other switches off.
    pub fn of(p: &SamplingParams) -> Self {
        TextOptions {
            stops: p.stop.clone(),
            stop_token_ids: p.stop_token_ids.clone(),
            min_tokens: p.min_tokens,
            max_tokens: p.max_tokens,
            ..TextOptions::default()
        }
    }
}

/// One sequence's generated text as tokens arrive: decoded incrementally, cut at the first
/// stop string, and (when routing by sentence) re-routed after every finished sentence.
pub struct TextStream<'t> {
    decoder: StreamDecoder<'t>,
    /// Generated text so far (cut at a stop string once one is seen).
    pub text: String,
    opts: TextOptions,
    tracker: Option<SentenceTracker>,
    /// Tokens of the prompt, then one per generated token (where the next mixture starts).
    position: usize,
    /// Bytes of `text` already handed out by [`TextStream::take_ready`].
    emitted: usize,
    /// The stop string that ended the text (an index into the stops), once one did.
    stopped: Option<usize>,
    /// Tokens pushed so far.
    generated: usize,
    /// Stop strings count only if they end past this length of the text: that of the first
    /// `min_tokens` tokens' text (one ending inside it does not, as in vLLM), and then the
    /// text searched already.
    stops_from: Option<usize>,
}

impl<'t> TextStream<'t> {
    /// A stream for a sequence whose prompt has `prompt_len` tokens.
    pub fn new(tok: &'t TextTokenizer, prompt_len: usize, opts: TextOptions) -> Self {
        TextStream {
            decoder: tok.stream_decoder(!opts.show_special),
            text: String::new(),
            tracker: opts.reroute.then(SentenceTracker::default),
            position: prompt_len,
            emitted: 0,
            stopped: None,
            generated: 0,
            stops_from: (opts.min_tokens == 0).then_some(0),
            opts,
        }
    }

    /// vLLM's `stop_reason` for `out`, this stream's sequence: the stop string that ended the
    /// text, or the `stop_token_ids` token that ended generation; null for an end-of-sequence
    /// token and every other end.
    pub fn stop_reason(&self, out: &GenOutput) -> serde_json::Value {
        match (self.stopped, out.stop_token) {
            (Some(k), _) => self.opts.stops[k].as_str().into(),
            (None, Some(t)) if self.opts.stop_token_ids.contains(&t) => t.into(),
            _ => serde_json::Value::Null,
        }
    }

    /// Adds generated token `id`: extends the text, and says whether generation stops here (a
    /// stop string appeared) or goes on under a new mixture (a sentence ended; `routing`
    /// picks the next mixture from it, reported as a [`Decision`]; none where a stop ends
    /// the text at the same token).
    pub fn push(
        &mut self,
        id: u32,
        routing: Option<&Routing>,
        names: &[String],
    ) -> dlp_engine::Result<(Control, Option<Decision>)> {
        self.position += 1;
        let piece = self.decoder.push(id)?;
        if let Some(piece) = &piece {
            self.text.push_str(piece);
        }
        self.generated += 1;
        if self.generated == self.opts.min_tokens {
            // Stops count from the next token on: those ending past this text.
            self.stops_from = Some(self.text.len());
        }
        let found = match self.stops_from {
            Some(end) if self.generated > self.opts.min_tokens => {
                find_stop(&self.text, &self.opts.stops, end)
            }
            _ => None,
        };
        if self.generated > self.opts.min_tokens {
            // A later stop ends past this text (one ending inside it would have been found).
            self.stops_from = Some(self.text.len());
        }
        if let Some((at, k)) = found {
            let end = match self.opts.include_stop {
                true => at + self.opts.stops[k].len(),
                false => at,
            };
            self.text.truncate(end);
            self.stopped = Some(k);
            // Before any routing: a sentence this token ended would be routed for tokens that
            // will not come (counted and reported, never applied).
            return Ok((Control::Stop, None));
        }
        let (Some(piece), Some(tracker), Some(routing)) = (piece, &mut self.tracker, routing)
        else {
            return Ok((Control::Continue, None));
        };
        let Some(sentence) = tracker.push(&piece) else {
            return Ok((Control::Continue, None));
        };
        // The limit's last token: nothing runs under a mixture routed now (it would be
        // counted and reported, never applied), as after a stop string.
        if self.opts.max_tokens > 0 && self.generated >= self.opts.max_tokens {
            return Ok((Control::Continue, None));
        }
        // The token just sampled opens the next sentence; it and all after it run under the
        // mixture routed from the finished one.
        let mix = routing.route(&[sentence.as_str()]).remove(0);
        let decision = Decision {
            source: "generated",
            text: sentence,
            first_token: self.position - 1,
            mixture: named(&mix, names),
        };
        Ok((Control::Remix(mix), Some(decision)))
    }

    /// Ends the text of `out`, this stream's sequence: with `include_stop`, the end token that
    /// stopped it (EOS, `stop_token_ids`) is text too, as in vLLM (nothing when it is a special
    /// token and those are skipped); then any bytes the decoder still holds, as U+FFFD.
    pub fn push_end(&mut self, out: &GenOutput) -> dlp_engine::Result<()> {
        if let (true, Some(t), None) = (self.opts.include_stop, out.stop_token, self.stopped) {
            if let Some(piece) = self.decoder.push(t)? {
                self.text.push_str(&piece);
            }
        }
        // Bytes of an incomplete character at the end (a length cut inside an emoji, a lone
        // byte token) are text too, as U+FFFD; not after a stop string, which ended the text.
        if self.stopped.is_none() {
            if let Some(piece) = self.decoder.finish()? {
                self.text.push_str(&piece);
            }
        }
        Ok(())
    }

    /// Text not handed out yet that can no longer change: everything but a tail that might be
    /// the start of a stop string (all of it once `finished` or stopped).
    pub fn take_ready(&mut self, finished: bool) -> &str {
        let hold = if finished || self.stopped.is_some() {
            0
        } else {
            stop_holdback(&self.text, &self.opts.stops)
        };
        let from = self.emitted.min(self.text.len());
        let upto = (self.text.len() - hold).max(from);
        self.emitted = upto;
        &self.text[from..upto]
    }
}
