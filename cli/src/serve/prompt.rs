//! A request's prompts made ready for the engine: the chat template, tokens, the length
//! checks (the cheap ones before the costly work) and the router's segments.

use dlp_engine::tokenizer::ChatRequest;

use super::api::{PromptInput, Selection};
use super::error::ApiError;
use super::http::AppState;
use super::worker::NamedMix;
use crate::pipeline::{encode_prompt, render_prompt};
use crate::routing::named;

/// A prompt ready for the engine.
pub struct Prepared {
    /// Prompt ids.
    pub ids: Vec<u32>,
    /// The prompt as text (what `echo` returns).
    pub text: String,
    /// Named segments.
    pub segments: Vec<(usize, NamedMix)>,
    /// Routing decisions behind them.
    pub decisions: Vec<crate::routing::Decision>,
}

/// The `(first token, mixture)` runs that `selection` gives a prompt, by name; 404 for a
/// name that is not loaded.
pub fn fixed_mixture(st: &AppState, selection: &Selection) -> Result<Option<NamedMix>, ApiError> {
    let loaded = st.adapters.read().expect("not poisoned");
    let known = |n: &str| loaded.iter().any(|(a, _, _)| a == n);
    let names = || {
        let mut v = vec![st.base_name.clone()];
        v.extend(loaded.iter().map(|(a, _, _)| a.clone()));
        if st.routing.is_some() {
            v.push("auto".into());
        }
        v
    };
    Ok(match selection {
        Selection::Base => Some(vec![]),
        Selection::Adapter(m) if *m == st.base_name => Some(vec![]),
        Selection::Adapter(m) if known(m) => Some(vec![(m.clone(), 1.0)]),
        Selection::Adapter(m) => {
            let names = names();
            let near = crate::mix_args::closest_name(m, &names)
                .map_or(String::new(), |n| format!("did you mean `{n}`? "));
            return Err(ApiError::not_found(format!(
                "the model `{m}` does not exist on this server ({near}models: {})",
                names.join(", ")
            ))
            .param("model")
            .code("model_not_found"));
        }
        Selection::Router(_) if st.routing.is_none() => {
            return Err(ApiError::not_found(
                "the model `auto` needs a router: start the server with --router DIR",
            )
            .param("model")
            .code("model_not_found"))
        }
        Selection::Router(_) => None,
        Selection::Mixture(mix) => {
            // A name given twice was refused with the request (super::mixture).
            for (n, _) in mix {
                if !known(n) {
                    return Err(ApiError::not_found(format!(
                        "`lora_mixture` names adapter `{n}`, which is not loaded (adapters: {})",
                        loaded
                            .iter()
                            .map(|(a, _, _)| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .param(format!("lora_mixture.{n}"))
                    .code("adapter_not_found"));
                }
            }
            Some(mix.clone())
        }
    })
}

/// Renders, tokenizes and routes one prompt (CPU work: run off the async threads); `name` is
/// its field in errors (`prompt`, or `prompt[2]` in a batch). `truncate` (vLLM's
/// `truncate_prompt_tokens`): only the prompt's last tokens are kept, and the segments routed
/// from the whole prompt over them.
pub fn prepare(
    st: &AppState,
    name: &str,
    input: &PromptInput,
    fixed: &Option<NamedMix>,
    selection: &Selection,
    truncate: Option<usize>,
) -> Result<Prepared, ApiError> {
    let tok = &st.tok;
    // A prompt that will be cut may be longer than the context.
    let check_text_len = |st: &AppState, name: &str, text: &str| match truncate {
        Some(_) => check_truncated_len(st, name, text),
        None => check_text_len(st, name, text),
    };
    let kept = |n: usize| truncate.map_or(n, |k| n.min(k));
    // `text`: what the token offsets refer to (and what `echo` returns).
    let (ids, starts, text, span, user) = match input {
        PromptInput::Ids(ids) => {
            check_prompt_len(st, name, kept(ids.len()))?;
            let vocab = st.config.embed_rows();
            if let Some((i, t)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
                return Err(ApiError::bad_param(
                    format!("{name}[{i}]"),
                    format!(
                        "`{name}[{i}]` = {t} is outside the vocabulary ({})",
                        crate::common::vocab_ids(vocab)
                    ),
                ));
            }
            let text = tok
                .decode(ids, false)
                .map_err(|e| ApiError::bad_param(name, e.to_string()))?;
            // Sentences are split where the tokens' bytes spell the decoded text (byte-level
            // BPE: SmolLM2, Llama 3, Qwen2): each token starts where the bytes before it end.
            // Else (a decoder that drops or adds text) the prompt is routed as one piece.
            // Only the router reads them (a decode per token otherwise spent for nothing).
            let routed = fixed.is_none() && matches!(selection, Selection::Router(_));
            let pieces: Vec<Vec<u8>> = match routed {
                true => ids.iter().map(|&t| tok.token_bytes(t)).collect(),
                false => Vec::new(),
            };
            let (starts, span) = if routed && pieces.concat() == text.as_bytes() {
                let starts = (pieces.iter())
                    .scan(0, |at, b| {
                        let start = *at;
                        *at += b.len();
                        Some(start)
                    })
                    .collect();
                // Leading special tokens (a BOS from /tokenize) are not the text: the text
                // path gives them no bytes either.
                let lead: usize = (ids.iter().zip(&pieces))
                    .take_while(|(&t, _)| tok.is_special(t))
                    .map(|(_, b)| b.len())
                    .sum();
                (starts, Some(lead..text.len()))
            } else {
                (Vec::new(), None)
            };
            (ids.clone(), starts, text.clone(), span, text)
        }
        PromptInput::Text(t) => {
            let r = render_prompt(tok, false, None, Some(t), None)
                .map_err(|e| ApiError::bad_param(name, format!("{e:#}")))?;
            check_text_len(st, name, &r.text)?;
            let (ids, starts) =
                encode_prompt(tok, &r).map_err(|e| ApiError::bad_param(name, format!("{e:#}")))?;
            (ids, starts, r.text, r.span, r.user)
        }
        PromptInput::Chat(c) => {
            let r =
                render_prompt(tok, true, None, None, Some(ChatRequest::clone(c))).map_err(|e| {
                    let msg = format!("{e:#}");
                    ApiError::bad_param(super::chat::template_error_param(&msg), msg)
                })?;
            check_text_len(st, name, &r.text)?;
            let (ids, starts) = encode_prompt(tok, &r)
                .map_err(|e| ApiError::bad_param("messages", format!("{e:#}")))?;
            (ids, starts, r.text, r.span, r.user)
        }
    };
    // Before routing: the router reads every sentence of the prompt.
    check_prompt_len(st, name, kept(ids.len()))?;
    let (segments, decisions) = match (fixed, selection, &st.routing) {
        (Some(mix), _, _) => (vec![(0, mix.clone())], Vec::new()),
        (None, Selection::Router(by), Some(routing)) => {
            let routing = routing.with_by(*by);
            let labels = routing.labels();
            let (segs, decisions) = routing.route_prompt(&text, span, &user, &starts, labels);
            let segments = segs
                .iter()
                .map(|(first, mix)| (*first, named(mix, labels)))
                .collect();
            (segments, decisions)
        }
        _ => {
            return Err(ApiError::internal(
                "no mixture and no router for this request",
            ))
        }
    };
    let p = Prepared {
        ids,
        text,
        segments,
        decisions,
    };
    match truncate {
        Some(k) if p.ids.len() > k => {
            let cut = p.ids.len() - k;
            // Decoded, not sliced from the text at the token's offset: a cut inside a character
            // keeps its last bytes, which the echo shows as the token prompt's would.
            let text = (tok.decode(&p.ids[cut..], false))
                .map_err(|e| ApiError::bad_param(name, e.to_string()))?;
            Ok(cut_front(p, cut, text))
        }
        _ => Ok(p),
    }
}

/// `p` without its first `cut` tokens (`text`: the rest's text): the segment that holds the
/// new first token starts it, later ones move back by `cut`, and so do their decisions.
fn cut_front(p: Prepared, cut: usize, text: String) -> Prepared {
    let from = p.segments.iter().rposition(|(f, _)| *f <= cut).unwrap_or(0);
    let first_kept = p.segments.get(from).map_or(0, |(f, _)| *f);
    let segments = (p.segments.into_iter().skip(from))
        .map(|(f, m)| (f.saturating_sub(cut), m))
        .collect();
    let decisions = (p.decisions.into_iter())
        .filter(|d| d.first_token >= first_kept)
        .map(|mut d| {
            d.first_token = d.first_token.saturating_sub(cut);
            d
        })
        .collect();
    Prepared {
        ids: p.ids[cut..].to_vec(),
        text,
        segments,
        decisions,
    }
}

/// Refuses a prompt of `n` tokens that is empty or leaves no room for a new token.
fn check_prompt_len(st: &AppState, field: &str, n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::bad_param(field, "the prompt is empty (0 tokens)"));
    }
    if n >= st.context {
        return Err(ApiError::bad_param(
            field,
            format!("this model's maximum context length is {} tokens; the prompt has {n} tokens (leave room for at least one new token)", st.context),
        )
        .code("context_length_exceeded"));
    }
    Ok(())
}

/// Refuses a prompt text whose length alone proves it past the context, before tokenizing
/// it (about 0.7 s per MiB on one core): see [`dlp_engine::tokenizer::TextTokenizer::min_tokens`].
pub(super) fn check_text_len(st: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    match st.tok.min_tokens(text) {
        Some(m) if m.tokens >= st.context => Err(ApiError::bad_param(
            field,
            format!("this model's maximum context length is {} tokens; the prompt has at least {} tokens ({} {}, and no token of this model's tokenizer covers more than {})", st.context, m.tokens, m.len, m.unit, m.per_token),
        )
        .code("context_length_exceeded")),
        _ => Ok(()),
    }
}

/// A prompt to be cut by `truncate_prompt_tokens` may run past the context, up to this many
/// contexts: its whole text is tokenized (and routed), so a cap keeps one request's CPU work
/// bounded (16 MiB, the default body limit, would take about 11 s).
pub const TRUNCATED_CONTEXTS: usize = 8;

/// [`check_text_len`] for a prompt that will be cut: at most [`TRUNCATED_CONTEXTS`] contexts.
fn check_truncated_len(st: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    let most = st.context.saturating_mul(TRUNCATED_CONTEXTS);
    match st.tok.min_tokens(text) {
        Some(m) if m.tokens > most => Err(ApiError::bad_param(
            field,
            format!("the prompt has at least {} tokens ({} {}, and no token of this model's tokenizer covers more than {}); with `truncate_prompt_tokens` a prompt may have up to {most} ({TRUNCATED_CONTEXTS} times the context), as it is all read before the cut", m.tokens, m.len, m.unit, m.per_token),
        )
        .code("context_length_exceeded")),
        _ => Ok(()),
    }
}
