//! The text side of a request, shared by `generate`, `serve` and `eval` so that all three
//! turn prompts into tokens and tokens into text the same way: the chat template, BOS, the
//! router's segments, incremental detokenizing, stop strings and re-routing after every
//! generated sentence.

use std::ops::Range;

use anyhow::{bail, Result};
use dlp_engine::generate::Control;
use dlp_engine::sampler::{find_stop, stop_holdback};
use dlp_engine::tokenizer::{ChatMessage, ChatRequest, StreamDecoder, TextTokenizer};

use crate::routing::{named, Decision, Routing, SentenceTracker};

/// A prompt as the model reads it: the rendered text (through the chat template when asked)
/// and where the user's own text lies inside it (what a router reads).
pub struct Rendered {
    /// The full text.
    pub text: String,
    /// The user's text, as given.
    pub user: String,
    /// Byte range of `user` in `text`, if the template kept it verbatim.
    pub span: Option<Range<usize>>,
    /// Rendered through the chat template (BOS rules differ: see
    /// [`TextTokenizer::bos_prefix`]).
    pub chat: bool,
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
    let (rendered, user) = match (conversation, text) {
        (Some(c), _) => {
            let user = c
                .messages
                .iter()
                .rev()
                .find(|m| m.role() == "user")
                .map(ChatMessage::text)
                .unwrap_or_default();
            (tok.render_chat_request(&c)?, user)
        }
        (None, Some(t)) if chat => {
            let mut m = Vec::new();
            if let Some(s) = system {
                m.push(ChatMessage::new("system", s));
            }
            m.push(ChatMessage::new("user", t));
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
        chat: is_chat,
    })
}

/// Where the first stop string that ends after byte `end` of `text` starts (the earliest such
/// start over all `stops`), as [`find_stop`] with the text before `end` taking no stop alone.
fn stop_ending_after(text: &str, stops: &[String], end: usize) -> Option<usize> {
    if end == 0 {
        return find_stop(text, stops);
    }
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            // A match ending past `end` starts at `end + 1 - len` or later (on a character).
            let mut from = (end + 1).saturating_sub(s.len());
            while !text.is_char_boundary(from) {
                from += 1;
            }
            text.get(from..)?.find(s.as_str()).map(|at| from + at)
        })
        .min()
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

/// One sequence's generated text as tokens arrive: decoded incrementally, cut at the first
/// stop string, and (when routing by sentence) re-routed after every finished sentence.
pub struct TextStream<'t> {
    decoder: StreamDecoder<'t>,
    /// Generated text so far (cut at a stop string once one is seen).
    pub text: String,
    stops: Vec<String>,
    tracker: Option<SentenceTracker>,
    /// Tokens of the prompt, then one per generated token (where the next mixture starts).
    position: usize,
    /// Bytes of `text` already handed out by [`TextStream::take_ready`].
    emitted: usize,
    stopped: bool,
    /// `min_tokens`: tokens to push before stop strings count, and how many were pushed.
    min_tokens: usize,
    generated: usize,
    /// The length of the text once `min_tokens` were pushed: a stop string counts only if it
    /// ends past it (one ending inside those tokens' text does not, as in vLLM).
    stops_from: Option<usize>,
}

impl<'t> TextStream<'t> {
    /// A stream for a sequence whose prompt has `prompt_len` tokens, cut at the first of
    /// `stops` after `min_tokens` tokens; `reroute` when the router re-routes after every
    /// generated sentence.
    pub fn new(
        tok: &'t TextTokenizer,
        prompt_len: usize,
        stops: &[String],
        min_tokens: usize,
        reroute: bool,
    ) -> Self {
        TextStream {
            decoder: tok.stream_decoder(),
            text: String::new(),
            stops: stops.to_vec(),
            tracker: reroute.then(SentenceTracker::default),
            position: prompt_len,
            emitted: 0,
            stopped: false,
            min_tokens,
            generated: 0,
            stops_from: (min_tokens == 0).then_some(0),
        }
    }

    /// Adds generated token `id`: extends the text, and says whether generation stops here (a
    /// stop string appeared) or goes on under a new mixture (a sentence ended; `routing`
    /// picks the next mixture from it, reported as a [`Decision`]).
    pub fn push(
        &mut self,
        id: u32,
        routing: Option<&Routing>,
        names: &[String],
    ) -> dlp_engine::Result<(Control, Option<Decision>)> {
        self.position += 1;
        let mut control = Control::Continue;
        let mut decision = None;
        if let Some(piece) = self.decoder.push(id)? {
            self.text.push_str(&piece);
            if let (Some(tracker), Some(routing)) = (&mut self.tracker, routing) {
                if let Some(sentence) = tracker.push(&piece) {
                    // The token just sampled opens the next sentence; it and all after it run
                    // under the mixture routed from the finished one.
                    let mix = routing.route(&[sentence.as_str()]).remove(0);
                    decision = Some(Decision {
                        source: "generated",
                        text: sentence,
                        first_token: self.position - 1,
                        mixture: named(&mix, names),
                    });
                    control = Control::Remix(mix);
                }
            }
        }
        self.generated += 1;
        if self.generated == self.min_tokens {
            // Stops count from the next token on: those ending past this text.
            self.stops_from = Some(self.text.len());
        }
        let found = match self.stops_from {
            Some(end) if self.generated > self.min_tokens => {
                stop_ending_after(&self.text, &self.stops, end)
            }
            _ => None,
        };
        if let Some(at) = found {
            self.text.truncate(at);
            self.stopped = true;
            control = Control::Stop;
        }
        Ok((control, decision))
    }

    /// Text not handed out yet that can no longer change: everything but a tail that might be
    /// the start of a stop string (all of it once `finished` or stopped).
    pub fn take_ready(&mut self, finished: bool) -> &str {
        let hold = if finished || self.stopped {
            0
        } else {
            stop_holdback(&self.text, &self.stops)
        };
        let from = self.emitted.min(self.text.len());
        let upto = (self.text.len() - hold).max(from);
        self.emitted = upto;
        &self.text[from..upto]
    }
}

#[cfg(test)]
mod tests {
    use super::stop_ending_after;

    /// Only stops ending past `end` count, whatever their lengths; a stop may begin before
    /// `end`, inside a character's bytes too.
    #[test]
    fn stops_count_when_they_end_past_the_first_tokens() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let text = " Bananas\n2. Apples\n3.";
        let end = " Bananas\n2".len();
        assert_eq!(stop_ending_after(text, &v(&["\n", "zzzzz"]), end), Some(18));
        assert_eq!(stop_ending_after(text, &v(&["\n"]), end), Some(18));
        // One that begins before `end` and ends after it counts.
        assert_eq!(stop_ending_after(text, &v(&["2. A"]), end), Some(9));
        assert_eq!(stop_ending_after(text, &v(&["\n"]), 0), Some(8));
        let fr = " bébé";
        let end = " bé".len();
        assert_eq!(stop_ending_after(fr, &v(&["é"]), end), Some(" béb".len()));
        assert_eq!(stop_ending_after(fr, &v(&["x"]), end), None);
    }
}
