//! `POST /tokenize` and `POST /detokenize`, with vLLM's bodies and answers: how many tokens a
//! prompt or conversation takes on this server (the ids the completion endpoints feed the
//! model, through the same chat template and BOS rules), and the text of token ids.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dlp_engine::tokenizer::ChatRequest;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{parse, Selection};
use super::body::bytes;
use super::error::ApiError;
use super::http::{AppResult, AppState};
use super::prompt::{check_text_len, fixed_mixture};
use crate::routing::RouteBy;

/// `/tokenize` as sent: `prompt` (completions) or `messages` (chat), vLLM's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeBody {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<Value>>,
    /// Prompt only: put the BOS in front as `/v1/completions` does (default true).
    add_special_tokens: Option<bool>,
    /// Messages only: end with the assistant's header, as `/v1/chat/completions` does
    /// (default true).
    add_generation_prompt: Option<bool>,
    /// Messages only: the functions the chat template is shown, as `/v1/chat/completions`
    /// shows its `tools`.
    tools: Option<Value>,
    /// Messages only: continue the final message (as `/v1/chat/completions` does).
    continue_final_message: Option<bool>,
    /// Messages only: more template variables (as `/v1/chat/completions` takes them).
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// Messages only: retrieval documents (as `/v1/chat/completions` takes them).
    documents: Option<Value>,
    /// Also answer each token's vocabulary string.
    return_token_strs: Option<bool>,
}

/// `/detokenize` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeBody {
    model: Option<String>,
    /// Read as ids directly (4 bytes each, not a JSON value each); a bad one is named
    /// `tokens[i]` by the parser.
    tokens: Option<Vec<u32>>,
}

/// A `model` field, when given, must name a model this server serves (404 otherwise, as the
/// completion endpoints answer).
fn check_model(st: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    let selection = match model {
        None => return Ok(()),
        Some("") => {
            return Err(ApiError::bad_param(
                "model",
                "`model` is empty: leave it out, or give the base model's name, an adapter's name, or `auto` (see GET /v1/models)",
            ))
        }
        Some("auto") => Selection::Router(RouteBy::Request),
        Some(m) => Selection::Adapter(m.to_string()),
    };
    fixed_mixture(st, &selection).map(|_| ())
}

/// `POST /tokenize`: `{"count", "max_model_len", "tokens", "token_strs"}`. A text whose length
/// alone proves it past the context is refused before it is tokenized (a count the server
/// could not take anyway; vLLM counts it), as the completion endpoints do.
pub async fn tokenize(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> AppResult {
    let b: TokenizeBody = parse(&bytes(b)?)?;
    check_model(&st, b.model.as_deref())?;
    let strs = b.return_token_strs.unwrap_or(false);
    let is_chat = b.messages.is_some();
    let st2 = st.clone();
    let ids = tokio::task::spawn_blocking(move || encode(&st2, b))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))??;
    // As the completion endpoints refuse it, with the count in the message: a list of ids
    // past the context would only make a large answer out of a prompt this server cannot take.
    if ids.len() >= st.context {
        let field = if is_chat { "messages" } else { "prompt" };
        return Err(ApiError::bad_param(
            field,
            format!(
                "this model's maximum context length is {} tokens; the prompt has {} tokens",
                st.context,
                ids.len()
            ),
        )
        .code("context_length_exceeded"));
    }
    let strs = strs.then(|| {
        let hf = st.tok.hf_tokenizer();
        ids.iter()
            .map(|&i| hf.id_to_token(i).unwrap_or_default())
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({"count": ids.len(), "max_model_len": st.context,
                   "tokens": ids, "token_strs": strs}))
    .into_response())
}

/// The ids of a prompt or a conversation, as the completion endpoints make them (each switch
/// of `f` applies to one kind of input).
fn encode(st: &AppState, f: TokenizeBody) -> Result<Vec<u32>, ApiError> {
    let tok = &st.tok;
    let tools = f.tools.filter(|t| !t.is_null());
    match (f.prompt, f.messages) {
        (Some(_), Some(_)) => Err(ApiError::bad_param(
            "messages",
            "give `prompt` or `messages`, not both",
        )),
        (None, None) => Err(ApiError::bad_param(
            "prompt",
            "`prompt` (a string) or `messages` (a list of {role, content}) is required",
        )),
        (Some(p), None) => {
            for (given, field) in [
                (f.add_generation_prompt.is_some(), "add_generation_prompt"),
                (tools.is_some(), "tools"),
                (f.continue_final_message.is_some(), "continue_final_message"),
                (f.chat_template_kwargs.is_some(), "chat_template_kwargs"),
                (
                    f.documents.as_ref().is_some_and(|d| !d.is_null()),
                    "documents",
                ),
            ] {
                if given {
                    return Err(ApiError::bad_param(
                        field,
                        format!("`{field}` applies to `messages`, not to `prompt`"),
                    ));
                }
            }
            check_text_len(st, "prompt", &p)?;
            match f.add_special_tokens.unwrap_or(true) {
                true => tok.encode_prompt(&p, false).map(|(ids, _)| ids),
                false => tok.encode(&p),
            }
            .map_err(|e| ApiError::bad_param("prompt", e.to_string()))
        }
        (None, Some(m)) => {
            // A rendered chat gets what its template writes (and a GGUF's BOS), as in
            // /v1/chat/completions: there is no other BOS to add.
            match (f.add_special_tokens, tok.bos_prefix(true)) {
                (Some(true), _) => {
                    return Err(ApiError::bad_param(
                        "add_special_tokens",
                        "`add_special_tokens: true` applies to `prompt`; a conversation gets the tokens its chat template writes, as /v1/chat/completions feeds it",
                    ))
                }
                (Some(false), Some(bos)) => {
                    return Err(ApiError::bad_param(
                        "add_special_tokens",
                        format!("this model's conversations start with BOS id {bos} (a GGUF's add_bos, as llama.cpp feeds them and /v1/chat/completions does); `add_special_tokens: false` cannot remove it"),
                    ))
                }
                _ => {}
            }
            if m.is_empty() {
                return Err(ApiError::bad_param("messages", "`messages` is empty"));
            }
            let mut m = m
                .into_iter()
                .enumerate()
                .map(|(i, m)| super::chat::chat_message(i, m))
                .collect::<Result<Vec<_>, _>>()?;
            // As /v1/chat/completions writes calls sent back (none forced here).
            super::tools::calls_as_text(tok, tools.is_some(), &mut m, None, st.tool_parser);
            super::tools::functions(tools.clone())?;
            let mut conversation = ChatRequest {
                messages: m,
                tools,
                ..Default::default()
            };
            super::chat::template_options(
                &mut conversation,
                f.add_generation_prompt,
                f.continue_final_message,
                f.chat_template_kwargs,
                f.documents,
            )?;
            let text = tok.render_chat_request(&conversation).map_err(|e| {
                let msg = format!("{e:#}");
                ApiError::bad_param(super::chat::template_error_param(&msg), msg)
            })?;
            check_text_len(st, "messages", &text)?;
            let (ids, _) = tok
                .encode_prompt(&text, true)
                .map_err(|e| ApiError::bad_param("messages", format!("{e:#}")))?;
            Ok(ids)
        }
    }
}

/// `POST /detokenize`: `{"prompt"}`, the text of `tokens` (special tokens kept).
pub async fn detokenize(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: DetokenizeBody = parse(&bytes(b)?)?;
    check_model(&st, b.model.as_deref())?;
    let tokens = b.tokens.ok_or_else(|| {
        ApiError::bad_param("tokens", "`tokens` (a list of token ids) is required")
    })?;
    // Past the context no sequence of this server holds them; and each id may stand for 81
    // bytes of text (a small body asking for a huge answer).
    if tokens.len() > st.context {
        return Err(ApiError::bad_param(
            "tokens",
            format!(
                "`tokens` holds {} ids; at most {} (this model's maximum context length) are detokenized at once",
                tokens.len(),
                st.context
            ),
        ));
    }
    // Ids past the tokenizer's vocabulary (a model may have more rows) have no text: the
    // tokenizer would drop them silently.
    let vocab = st.config.embed_rows().min(st.tok.vocab_size());
    if let Some((i, t)) = tokens
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= vocab)
    {
        return Err(ApiError::bad_param(
            format!("tokens[{i}]"),
            format!(
                "`tokens[{i}]` = {t} has no text in this model's tokenizer ({})",
                crate::common::vocab_ids(vocab)
            ),
        ));
    }
    let ids = tokens;
    let st2 = st.clone();
    let text = tokio::task::spawn_blocking(move || st2.tok.decode(&ids, false))
        .await
        .map_err(|e| ApiError::internal(format!("detokenizing failed: {e}")))?
        .map_err(|e| ApiError::bad_param("tokens", e.to_string()))?;
    Ok(Json(json!({"prompt": text})).into_response())
}
