//! The HTTP side: axum routes, the API key, request bodies into engine submissions, and
//! engine events into OpenAI responses (JSON, or server-sent events when streaming).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dlp_engine::config::ModelConfig;
use dlp_engine::tokenizer::TextTokenizer;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use super::adapters;
use super::api::{self, Endpoint, Job, Selection};
use super::body::bytes;
use super::error::ApiError;
use super::prompt::{fixed_mixture, prepare, Prepared};
use super::response::{Collector, StreamState};
use super::worker::{Cmd, SeqSpec, Shared, Submission};
use crate::pipeline::TextOptions;
use crate::routing::Routing;

/// Everything the handlers share.
pub struct AppState {
    /// Commands to the engine thread.
    pub tx: Sender<Cmd>,
    /// Counters shared with the engine.
    pub shared: Arc<Shared>,
    /// The model's tokenizer.
    pub tok: Arc<TextTokenizer>,
    /// The router, deciding by label name (the engine resolves names to slots).
    pub routing: Option<Routing>,
    /// Where the router came from (`/v1/models`).
    pub router_dir: Option<String>,
    /// The base model's name (`model` field) and where it came from.
    pub base_name: String,
    /// The model's path.
    pub base_path: String,
    /// Loaded adapters as the HTTP side knows them: `(name, directory, Unix time of its
    /// loading)` (`created` of its model object: the server's start for those it started
    /// with).
    pub adapters: RwLock<Vec<(String, String, u64)>>,
    /// The model's configuration (adapters loaded at run time are checked against it).
    pub config: ModelConfig,
    /// Structured output's compiler.
    pub formats: super::format::Formats,
    /// How `tool_choice: "auto"` answers are read (None: such requests are refused).
    pub tool_parser: Option<super::tool_parser::ToolParser>,
    /// Positions per sequence (prompt + completion).
    pub context: usize,
    /// Sequences that may be running or queued at once.
    pub capacity: usize,
    /// The API key, if one is required.
    pub api_key: Option<String>,
    /// Runtime adapter loading: the (canonical) root directory adapters must lie under.
    pub adapter_root: Option<PathBuf>,
    /// Set once a shutdown signal arrived.
    pub shutting_down: AtomicBool,
    /// Unix time of the server's start (`created` of the models).
    pub started: u64,
}

/// The routes, with the API key check, request counting, the body size limit, the body read
/// deadline (`read_timeout`) and, with `--allowed-origins`, CORS (outside the key check: a
/// browser's preflight carries no key, and an error needs the headers for the page to read it).
pub fn router(
    state: Arc<AppState>,
    max_body: usize,
    read_timeout: Duration,
    cors: Option<tower_http::cors::CorsLayer>,
) -> Router {
    let routes = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        // A catch-all: a model's name may hold `/` (`meta-llama/Llama-2-7b-hf`).
        .route("/v1/models/{*id}", get(model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/responses", post(responses))
        .route("/tokenize", post(super::tokenize::tokenize))
        .route("/detokenize", post(super::tokenize::detokenize))
        .route("/v1/load_lora_adapter", post(adapters::load))
        .route("/v1/unload_lora_adapter", post(adapters::unload))
        .fallback(super::middleware::not_found)
        .method_not_allowed_fallback(super::middleware::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            (read_timeout, max_body),
            super::listen::read_body,
        ))
        .layer(middleware::from_fn(super::middleware::identity_only))
        .layer(middleware::from_fn(super::middleware::json_only))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::middleware::auth,
        ));
    // No layer at all without origins: no CORS header, OPTIONS answered as any method.
    let routes = match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::middleware::count,
        ))
        .layer(middleware::from_fn(super::middleware::request_id))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

pub(super) type AppResult = Result<Response, ApiError>;

/// Seconds since the Unix epoch, now (OpenAI's `created`; 0 on a clock set before 1970).
pub(super) fn unix_now() -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH)).map_or(0, |d| d.as_secs())
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

/// `/metrics`: OpenMetrics to a scraper that asks for it (Prometheus does), else the
/// Prometheus text format 0.0.4, as vLLM's server answers.
async fn metrics(State(st): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = (headers.get_all(header::ACCEPT).iter())
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let m = &st.shared.metrics;
    let (kind, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.render(),
        )
    } else {
        ("text/plain; version=0.0.4; charset=utf-8", m.render_text())
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The model objects: the base model, each adapter, and `auto` with a router.
fn model_list(st: &AppState) -> Vec<Value> {
    let model = |id: &str, root: &str, parent: Option<&str>, created: u64| {
        json!({"id": id, "object": "model", "created": created, "owned_by": "dlp-run",
               "root": root, "parent": parent, "max_model_len": st.context})
    };
    let mut data = vec![model(&st.base_name, &st.base_path, None, st.started)];
    for (name, dir, created) in st.adapters.read().expect("not poisoned").iter() {
        data.push(model(name, dir, Some(&st.base_name), *created));
    }
    if let Some(dir) = &st.router_dir {
        data.push(model("auto", dir, Some(&st.base_name), st.started));
    }
    data
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    Json(json!({"object": "list", "data": model_list(&st)})).into_response()
}

/// `GET /v1/models/{id}`: one model object (the OpenAI SDK's `models.retrieve`).
async fn model(
    State(st): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> AppResult {
    let Path(id) = id.map_err(|r| ApiError::status(r.status(), r.body_text()))?;
    let data = model_list(&st);
    match data.iter().find(|m| m["id"] == id.as_str()) {
        Some(m) => Ok(Json(m.clone()).into_response()),
        None => Err(ApiError::not_found(format!(
            "the model `{id}` does not exist on this server (models: {})",
            (data.iter().filter_map(|m| m["id"].as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .param("model")
        .code("model_not_found")),
    }
}

async fn completions(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> AppResult {
    let job = api::completion(&bytes(b)?)?;
    serve_job(st, job).await
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> AppResult {
    let job = api::chat(&bytes(b)?)?;
    serve_job(st, job).await
}

/// OpenAI's Responses API, answered through the chat pipeline.
async fn responses(State(st): State<Arc<AppState>>, b: Result<Bytes, BytesRejection>) -> AppResult {
    let (job, info) = super::responses::request(&bytes(b)?)?;
    let streamed = job.stream;
    let (meta, rx) = submit(st, job).await.map_err(|e| info.rename(e))?;
    if streamed {
        let mut s = super::responses::ResponsesStream::new(info, StreamState::new(meta));
        Ok(sse(rx, move |ev| s.events(ev), true))
    } else {
        let chat = collect(meta, rx).await.map_err(|e| info.rename(e))?;
        if let Some(m) = chat["error"]["message"].as_str() {
            return Err(ApiError::internal(m));
        }
        let mut v = info.response(&chat);
        crate::output::tidy_floats(&mut v);
        Ok(Json(v).into_response())
    }
}

/// Checks the lengths, reserves room in the queue, submits, and answers.
async fn serve_job(st: Arc<AppState>, job: Job) -> AppResult {
    let streamed = job.stream;
    let (meta, rx) = submit(st, job).await?;
    if streamed {
        let mut state = StreamState::new(meta);
        Ok(sse(rx, move |ev| state.chunks(ev), false))
    } else {
        Ok(Json(collect(meta, rx).await?).into_response())
    }
}

/// The events of a submitted request, in order.
pub(super) type Events = tokio::sync::mpsc::UnboundedReceiver<super::worker::Event>;

/// Checks a request against the server (lengths, vocabulary, room), tokenizes and routes its
/// prompts, and hands it to the engine: what its responses repeat, and its events.
pub(super) async fn submit(
    st: Arc<AppState>,
    mut job: Job,
) -> Result<(ResponseMeta, Events), ApiError> {
    let arrived = Instant::now();
    super::tools::prepare(&mut job, &st.tok, st.tool_parser)?;
    if st.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let fixed = fixed_mixture(&st, &job.selection)?;
    let vocab = st.config.vocab_size;
    if let Some(&(t, _)) = job
        .params
        .logit_bias
        .iter()
        .find(|&&(t, _)| t as usize >= vocab)
    {
        return Err(ApiError::bad_param(
            format!("logit_bias.{t}"),
            format!(
                "`logit_bias` names token {t}, outside the vocabulary ({})",
                crate::common::vocab_ids(vocab)
            ),
        ));
    }
    for (field, ids) in [
        ("stop_token_ids", &job.params.stop_token_ids),
        ("allowed_token_ids", &job.params.allowed_token_ids),
    ] {
        if let Some((i, t)) = ids.iter().enumerate().find(|&(_, &t)| t as usize >= vocab) {
            return Err(ApiError::bad_param(
                format!("{field}[{i}]"),
                format!(
                    "`{field}[{i}]` is {t}, outside the vocabulary ({})",
                    crate::common::vocab_ids(vocab)
                ),
            ));
        }
    }
    match job.truncate {
        // Room for `max_tokens`, or for OpenAI's completions default (16) without it.
        Some(api::TRUNCATE_TO_CONTEXT) => {
            let room = job.max_tokens.unwrap_or(16).clamp(1, st.context as u64 - 1);
            job.truncate = Some(st.context - room as usize);
        }
        Some(k) if k >= st.context => {
            return Err(ApiError::bad_param(
                "truncate_prompt_tokens",
                format!("`truncate_prompt_tokens` is {k}; it must be below this model's maximum context length ({} tokens), or -1", st.context),
            ))
        }
        _ => {}
    }
    job.params.allowed_token_ids.sort_unstable();
    job.params.allowed_token_ids.dedup();
    job.params.bad_words_ids = (st.tok.bad_words_ids(&job.bad_words))
        .map_err(|e| ApiError::bad_param("bad_words", e.to_string()))?;
    let st2 = st.clone();
    let job2 = job.clone();
    let field = match job.endpoint {
        Endpoint::Chat => "messages",
        Endpoint::Completion => "prompt",
    };
    let batch = job.prompt_list;
    let name = move |k: usize| match batch {
        true => format!("{field}[{k}]"),
        false => field.to_string(),
    };
    // Refused before any tokenizing when no wait could make room for it.
    let seqs = job.prompts.len().saturating_mul(job.n);
    let param = if job.n > 1 { "n" } else { "prompt" };
    if seqs > st.capacity {
        return Err(past_capacity(&st, seqs, param));
    }
    let gone = super::format::ClientGone::default();
    let _gone_when_dropped = gone.guard();
    let (prepared, constraint) = tokio::task::spawn_blocking(move || {
        // The format first: a schema that does not compile is refused before the prompt's work.
        let constraint = job2
            .format
            .as_ref()
            .map(|f| st2.formats.compile(f, &gone))
            .transpose()?;
        let prepared = job2
            .prompts
            .iter()
            .enumerate()
            .map(|(k, p)| prepare(&st2, &name(k), p, &fixed, &job2.selection, job2.truncate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, ApiError>((prepared, constraint))
    })
    .await
    .map_err(|e| ApiError::internal(format!("preparing the prompt failed: {e}")))??;
    let mut max_tokens = Vec::with_capacity(prepared.len());
    for p in &prepared {
        // 0 < n < context: checked in `prepare`.
        let n = p.ids.len();
        let room = (st.context - n) as u64;
        let m = match (job.max_tokens, job.endpoint) {
            (Some(m), _) if m > room => {
                return Err(ApiError::bad_param(
                    job.max_tokens_param,
                    format!("this model's maximum context length is {} tokens; you requested {} tokens ({n} in the prompt, {m} for the completion)", st.context, n as u128 + u128::from(m)),
                )
                .code("context_length_exceeded"))
            }
            (Some(m), _) => m,
            // OpenAI's default for completions; a chat answer may run to the context's end.
            (None, Endpoint::Completion) => 16.min(room),
            (None, Endpoint::Chat) => room,
        };
        let min = job.params.min_tokens;
        if min as u64 > m {
            let why = match job.max_tokens {
                Some(_) => format!("`{}` ({m})", job.max_tokens_param),
                None => format!("the default `{}` ({m})", job.max_tokens_param),
            };
            return Err(ApiError::bad_param(
                "min_tokens",
                format!("`min_tokens` ({min}) must be at most {why}"),
            ));
        }
        max_tokens.push(m as usize);
    }
    reserve(&st, seqs, param)?;
    let (tx, rx) = unbounded_channel();
    let mut specs = Vec::with_capacity(seqs);
    for (pi, (p, &m)) in prepared.iter().zip(&max_tokens).enumerate() {
        for j in 0..job.n {
            let mut params = job.params.clone();
            params.max_tokens = m;
            params.seed = super::protocol::choice_seed(params.seed, j);
            // Of this sequence's params: `max_tokens` is set there (the job's holds the
            // default, which had cut sentence routing off after 128 tokens).
            let text = TextOptions {
                include_stop: job.include_stop,
                show_special: job.show_special,
                reroute: matches!(
                    job.selection,
                    Selection::Router(crate::routing::RouteBy::Sentence)
                ),
                ..TextOptions::of(&params)
            };
            specs.push(SeqSpec {
                choice: pi * job.n + j,
                prompt: p.ids.clone(),
                segments: p.segments.clone(),
                params,
                // Echo's and `prompt_logprobs`' alternatives: each response part cuts its own.
                prompt_logprobs: job.logprobs.filter(|_| job.echo).max(job.prompt_logprobs),
                logprobs: job.logprobs,
                text,
                ignore_eos: job.ignore_eos,
                constraint: constraint.clone(),
                format_param: job.format.as_ref().map(|f| f.1.clone()),
                decisions: p.decisions.clone(),
            });
        }
    }
    let submission = Submission {
        seqs: specs,
        events: tx,
        arrived,
    };
    if st.tx.send(Cmd::Submit(submission)).is_err() {
        st.shared.outstanding.fetch_sub(seqs, Ordering::SeqCst);
        return Err(ApiError::unavailable("the engine has stopped"));
    }
    Ok((ResponseMeta::new(&st, &job, &prepared), rx))
}

/// A whole (not streamed) chat or completions body from a request's events.
pub(super) async fn collect(meta: ResponseMeta, mut rx: Events) -> Result<Value, ApiError> {
    let mut c = Collector::new(meta);
    while let Some(ev) = rx.recv().await {
        c.push(ev)?;
    }
    let mut v = c.finish();
    crate::output::tidy_floats(&mut v);
    Ok(v)
}

/// Reserves room for `n` sequences, or answers 429; 400 when `n` is past the whole room, which
/// no wait would make (a 429 there would have clients retry forever).
fn reserve(st: &AppState, n: usize, param: &str) -> Result<(), ApiError> {
    if n > st.capacity {
        return Err(past_capacity(st, n, param));
    }
    let out = &st.shared.outstanding;
    let mut cur = out.load(Ordering::SeqCst);
    loop {
        if cur + n > st.capacity {
            return Err(ApiError::busy(
                format!("the server is busy: {cur} sequences are running or queued and this request adds {n} (room for {} in all: --max-concurrent plus --max-queue); retry later", st.capacity),
                1,
            ));
        }
        match out.compare_exchange(cur, cur + n, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(()),
            Err(now) => cur = now,
        }
    }
}

/// The 400 for a request of `n` sequences (prompts x n) past the server's whole room;
/// `param` is the field to shrink (`n` when it multiplies, else the prompts of a batch).
fn past_capacity(st: &AppState, n: usize, param: &str) -> ApiError {
    ApiError::bad_param(
        param,
        format!("this request needs {n} sequences (prompts x n) and the server has room for {} in all (--max-concurrent plus --max-queue): send fewer prompts or a smaller n", st.capacity),
    )
}

/// What every response of a request repeats.
pub struct ResponseMeta {
    /// `cmpl-...` / `chatcmpl-...`
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The `model` field as given.
    pub model: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Choices per prompt.
    pub n: usize,
    /// Per prompt: its ids and text (echo).
    pub prompts: Vec<(Vec<u32>, String)>,
    /// Echo the prompt.
    pub echo: bool,
    /// Logprobs asked for (alternatives per token).
    pub logprobs: Option<usize>,
    /// vLLM's `prompt_logprobs` (alternatives per prompt token).
    pub prompt_logprobs: Option<usize>,
    /// vLLM's `return_tokens_as_token_ids`: logprob tokens are written `token_id:N`.
    pub token_ids_as_text: bool,
    /// Special tokens are part of the generated text (`skip_special_tokens: false`).
    pub show_special: bool,
    /// A usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Usage in every chunk of a stream.
    pub continuous_usage: bool,
    /// A forced tool call: answers become `tool_calls`.
    pub tool_mode: Option<super::tools::ToolMode>,
    /// The style of the call ids of forced calls ([`super::api::Job::call_ids`]).
    pub call_ids: Option<super::tool_parser::ToolParser>,
    /// How adapters were chosen (`base`, `adapter`, `mixture`, `router`).
    pub selection: &'static str,
    /// `request` / `sentence` when routed.
    pub route_by: Option<&'static str>,
    /// The tokenizer, for token strings.
    pub tok: Arc<TextTokenizer>,
}

impl ResponseMeta {
    fn new(st: &AppState, job: &Job, prepared: &[Prepared]) -> Self {
        let created = unix_now();
        let prefix = match job.endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        let (selection, route_by) = match &job.selection {
            Selection::Base => ("base", None),
            Selection::Adapter(m) if *m == st.base_name => ("base", None),
            Selection::Adapter(_) => ("adapter", None),
            Selection::Mixture(_) => ("mixture", None),
            Selection::Router(crate::routing::RouteBy::Request) => ("router", Some("request")),
            Selection::Router(crate::routing::RouteBy::Sentence) => ("router", Some("sentence")),
        };
        ResponseMeta {
            id: format!(
                "{prefix}-{:016x}{:08x}",
                rand::random::<u64>(),
                created as u32
            ),
            created,
            model: job.model.clone(),
            endpoint: job.endpoint,
            n: job.n,
            prompts: prepared
                .iter()
                .map(|p| (p.ids.clone(), p.text.clone()))
                .collect(),
            echo: job.echo,
            logprobs: job.logprobs,
            prompt_logprobs: job.prompt_logprobs,
            token_ids_as_text: job.token_ids_as_text,
            show_special: job.show_special,
            include_usage: job.include_usage,
            continuous_usage: job.continuous_usage,
            tool_mode: job.tool_mode.clone(),
            call_ids: job.call_ids,
            selection,
            route_by,
            tok: st.tok.clone(),
        }
    }
}

/// Server-sent events: the chunks `chunks` makes of each event. Chat and completions end with
/// `data: [DONE]`; `named` streams (the Responses API) name each event by its `type` instead.
pub(super) fn sse(
    rx: Events,
    chunks: impl FnMut(super::worker::Event) -> Vec<Value> + Send + 'static,
    named: bool,
) -> Response {
    // A request fails once: the first error ends the stream (as vLLM's do), and dropping `rx`
    // cancels its other choices, which would each have sent the same error (a shutdown) or
    // gone on streaming after it (a choice whose format allows no token).
    let ends = move |v: &Value| match named {
        true => v["type"] == "response.failed",
        false => v.get("error").is_some(),
    };
    let events = stream::unfold(
        (rx, chunks, false),
        move |(mut rx, mut chunks, ended)| async move {
            if ended {
                return None;
            }
            let out = chunks(rx.recv().await?);
            let ended = out.iter().any(ends);
            Some((stream::iter(out), (rx, chunks, ended)))
        },
    );
    let done = (!named).then(|| Value::String("[DONE]".into()));
    let chunks = events.flatten().chain(stream::iter(done)).map(move |v| {
        Ok::<_, Infallible>(match v {
            Value::String(s) => SseEvent::default().data(s),
            mut v => {
                crate::output::tidy_floats(&mut v);
                let e = SseEvent::default();
                let e = match v.get("type").and_then(Value::as_str) {
                    Some(t) if named => e.event(t),
                    _ => e,
                };
                e.data(v.to_string())
            }
        })
    });
    // A comment line every second while nothing else is sent: a request waiting in the queue
    // then notices within a second that its client has gone (the write fails).
    Sse::new(chunks)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(1)))
        .into_response()
}
