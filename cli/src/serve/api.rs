//! The OpenAI request bodies this server takes (`/v1/completions`, `/v1/chat/completions`),
//! checked field by field into a [`Job`]. Unknown fields are refused (a parameter that would
//! silently do nothing is worse than an error); fields OpenAI has but this server does not
//! support are refused when set to anything but their neutral value.

use serde::Deserialize;
use serde_json::{Map, Value};

use dlp_engine::tokenizer::ChatRequest;
use dlp_engine::SamplingParams;

pub(super) use super::body::parse;
pub use super::chat::chat;
use super::error::ApiError;
use super::prompt_field::PromptField;
use super::token_fields;
use crate::routing::RouteBy;

/// Most choices per request (`n`).
pub const MAX_N: u64 = 16;
/// Most log-probabilities per token (`logprobs`, `top_logprobs`).
pub const MAX_LOGPROBS: u64 = 20;

/// Which endpoint a job came from (the response formats differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`
    Completion,
    /// `/v1/chat/completions`
    Chat,
}

/// Which adapters serve a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// The base model alone (`model` = the base model's name).
    Base,
    /// One adapter (`model` = its name).
    Adapter(String),
    /// The DLP router (`model` = `auto`), per request or per sentence.
    Router(RouteBy),
    /// An explicit weighted mixture (`lora_mixture`).
    Mixture(Vec<(String, f32)>),
}

/// One prompt as given.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Raw text (completions).
    Text(String),
    /// Token ids (completions).
    Ids(Vec<u32>),
    /// A conversation (chat), with the tools its template is shown.
    Chat(Box<ChatRequest>),
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// The `model` field as given (echoed in responses).
    pub model: String,
    /// One prompt per sequence group (completions may batch several).
    pub prompts: Vec<PromptInput>,
    /// The prompt came as a list of prompts (errors then name `prompt[k]`, even for one).
    pub prompt_list: bool,
    /// Choices per prompt.
    pub n: usize,
    /// Sampling; `max_tokens` is filled in once the prompt length is known.
    pub params: SamplingParams,
    /// `max_tokens` as given (None: the endpoint's default).
    pub max_tokens: Option<u64>,
    /// The field `max_tokens` came from (chat also takes `max_completion_tokens`).
    pub max_tokens_param: &'static str,
    /// Server-sent events.
    pub stream: bool,
    /// A final chunk with `usage` (`stream_options.include_usage`).
    pub include_usage: bool,
    /// `usage` in every chunk too (`stream_options.continuous_usage_stats`, vLLM's).
    pub continuous_usage: bool,
    /// Log-probabilities of generated tokens, with this many alternatives each.
    pub logprobs: Option<usize>,
    /// Completions: the prompt is part of the returned text (and of its logprobs).
    pub echo: bool,
    /// Which adapters serve it.
    pub selection: Selection,
    /// Generate through end-of-sequence tokens (vLLM's extension, for load tests).
    pub ignore_eos: bool,
    /// Structured output: the format the answer must have, and its field.
    pub format: Option<super::format::Format>,
    /// A forced tool call: the answer is returned as `tool_calls`.
    pub tool_mode: Option<super::tools::ToolMode>,
    /// The server's tool-call parser, whose call ids forced calls take too (Mistral's are 9
    /// letters and digits); set with the tool mode's parser.
    pub call_ids: Option<super::tool_parser::ToolParser>,
    /// vLLM's `bad_words`, tokenized into the sampler's `bad_words_ids` once the request
    /// reaches the server's tokenizer.
    pub bad_words: Vec<String>,
    /// vLLM's `include_stop_str_in_output`: the text keeps the stop string that ended it.
    pub include_stop: bool,
    /// vLLM's `skip_special_tokens: false`: special tokens are part of the text.
    pub show_special: bool,
    /// vLLM's `prompt_logprobs`: the log-probability of every prompt token after the first,
    /// with this many alternatives.
    pub prompt_logprobs: Option<usize>,
    /// vLLM's `return_tokens_as_token_ids`: log-probability tokens are `token_id:N`.
    pub token_ids_as_text: bool,
    /// vLLM's `truncate_prompt_tokens`: keep only the prompt's last tokens, this many
    /// ([`TRUNCATE_TO_CONTEXT`]: as many as leave room for `max_tokens`).
    pub truncate: Option<usize>,
}

/// `truncate_prompt_tokens: -1`: as many tokens as leave room for `max_tokens` (16 without
/// it, OpenAI's completions default).
pub const TRUNCATE_TO_CONTEXT: usize = usize::MAX;

/// The fields both endpoints share, written once: `common_fields!(m ...)` calls `m!` with its
/// own arguments, `;`, and the list. (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so each body repeats them through this.)
macro_rules! common_fields {
    ($m:ident $($args:tt)*) => {
        $m! { $($args)* ;
            model: Value,
            temperature: f64,
            top_p: f64,
            n: u64,
            stream: bool,
            stream_options: StreamOptions,
            stop: Value,
            seed: i64,
            presence_penalty: f64,
            frequency_penalty: f64,
            logit_bias: Map<String, Value>,
            // Accepted and ignored: they do not change what is generated.
            user: String,
            metadata: Value,
            store: bool,
            service_tier: Value,
            // Extensions (vLLM's names).
            top_k: i64,
            min_p: f64,
            repetition_penalty: f64,
            ignore_eos: bool,
            min_tokens: u64,
            stop_token_ids: Value,
            allowed_token_ids: Value,
            bad_words: Value,
            include_stop_str_in_output: bool,
            skip_special_tokens: bool,
            spaces_between_special_tokens: bool,
            prompt_logprobs: i64,
            return_tokens_as_token_ids: bool,
            truncate_prompt_tokens: i64,
            // Structured output: OpenAI's, then vLLM's extensions.
            response_format: Value,
            guided_json: Value,
            guided_regex: String,
            guided_choice: Value,
            guided_grammar: String,
            structured_outputs: Value,
            // dlp-run's extensions.
            lora_mixture: Value,
            dlp_route_by: String,
        }
    };
}

/// `Common`: the shared fields, as sent.
macro_rules! common_struct {
    (; $($cf:ident : $ct:ty),* $(,)?) => {
        /// Fields both endpoints share, as sent.
        #[derive(Debug, Default)]
        #[allow(dead_code)] // some are accepted and ignored
        pub(super) struct Common { $($cf: Option<$ct>),* }
    };
}

/// A body struct: the shared fields plus its own, and `take_common` to move the shared ones
/// out.
macro_rules! body_struct {
    ($(#[$doc:meta])* $name:ident { $($f:ident : $t:ty),* $(,)? } ; $($cf:ident : $ct:ty),* $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // some are accepted and ignored
        pub(super) struct $name { $($cf: Option<$ct>,)* $(pub(super) $f: Option<$t>),* }
        impl $name {
            pub(super) fn take_common(&mut self) -> Common {
                Common { $($cf: self.$cf.take()),* }
            }
        }
    };
}

common_fields!(common_struct);
common_fields!(body_struct
    /// `/v1/completions` as sent.
    CompletionBody {
        prompt: super::prompt_field::PromptField,
        max_tokens: u64,
        logprobs: u64,
        echo: bool,
        best_of: u64,
        suffix: String,
    }
);
common_fields!(body_struct
    /// `/v1/chat/completions` as sent.
    ChatBody {
        messages: Vec<Value>,
        max_tokens: u64,
        max_completion_tokens: u64,
        logprobs: bool,
        top_logprobs: u64,
        tools: Value,
        tool_choice: Value,
        functions: Value,
        parallel_tool_calls: bool,
        add_generation_prompt: bool,
        continue_final_message: bool,
        chat_template_kwargs: Map<String, Value>,
        documents: Value,
        // OpenAI's, accepted and ignored: they do not change what is generated.
        safety_identifier: String,
        prompt_cache_key: String,
        prompt_cache_retention: String,
        // OpenAI's, for features this server lacks: accepted when they ask for none
        // (chat_options.rs).
        modalities: Value,
        reasoning_effort: Value,
        verbosity: Value,
        audio: Value,
        prediction: Value,
        web_search_options: Value,
        function_call: Value,
    }
);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
    continuous_usage_stats: Option<bool>,
    /// OpenAI's padding of stream events against length side channels (its default: on),
    /// accepted and ignored: the events carry no padding field.
    #[allow(dead_code)]
    include_obfuscation: Option<bool>,
}

/// A range check of a number: `ok` or a 400 naming `field` and the accepted range.
pub(super) fn check(field: &str, value: f64, ok: bool, expected: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_param(
            field,
            format!("`{field}` is {value}; it must be {expected}"),
        ))
    }
}

/// Sampling parameters and the routing choice of the shared fields.
pub(super) fn common(c: Common, job: &mut Job) -> Result<(), ApiError> {
    job.model = match c.model {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) | None => {
            return Err(ApiError::bad_param(
                "model",
                "`model` is required: the base model's name, an adapter's name, or `auto` (see GET /v1/models)",
            ))
        }
        Some(v) => {
            return Err(ApiError::bad_param(
                "model",
                format!("`model` must be a string, found {v}"),
            ))
        }
    };
    super::responses_options::check_metadata(c.metadata.as_ref())?;
    super::responses_options::check_service_tier(c.service_tier.as_ref())?;
    let p = &mut job.params;
    // Checked as the sampler holds them, in f32: 1e40 is finite in f64 but not in f32, and
    // 1e-50 is > 0 in f64 but 0 in f32.
    if let Some(t) = c.temperature {
        let t32 = t as f32;
        check(
            "temperature",
            t,
            t32.is_finite() && t32 >= 0.0,
            "a number >= 0 and at most 3.4e38 (f32)",
        )?;
        p.temperature = t32;
    }
    if let Some(t) = c.top_p {
        let t32 = t as f32;
        check(
            "top_p",
            t,
            t32 > 0.0 && t32 <= 1.0,
            "in (0, 1], above 1e-45",
        )?;
        p.top_p = t32;
    }
    if let Some(k) = c.top_k {
        check(
            "top_k",
            k as f64,
            k >= -1,
            "-1 or 0 (off) or a positive count",
        )?;
        p.top_k = k.max(0) as usize;
    }
    if let Some(m) = c.min_p {
        check(
            "min_p",
            m,
            (0.0f32..=1.0).contains(&(m as f32)),
            "in [0, 1]",
        )?;
        p.min_p = m as f32;
    }
    if let Some(r) = c.repetition_penalty {
        let r32 = r as f32;
        check(
            "repetition_penalty",
            r,
            r32.is_finite() && r32 > 0.0,
            "a number > 0 within f32, 1e-45 to 3.4e38 (1 = off)",
        )?;
        p.repetition_penalty = r32;
    }
    for (field, v, slot) in [
        (
            "presence_penalty",
            c.presence_penalty,
            &mut p.presence_penalty,
        ),
        (
            "frequency_penalty",
            c.frequency_penalty,
            &mut p.frequency_penalty,
        ),
    ] {
        if let Some(v) = v {
            check(field, v, (-2.0..=2.0).contains(&v), "from -2 to 2")?;
            *slot = v as f32;
        }
    }
    p.logit_bias = token_fields::logit_bias(c.logit_bias)?;
    if let Some(n) = c.n {
        check("n", n as f64, (1..=MAX_N).contains(&n), "from 1 to 16")?;
        job.n = n as usize;
    }
    job.stream = c.stream.unwrap_or(false);
    job.ignore_eos = c.ignore_eos.unwrap_or(false);
    job.format = super::format::output_format(super::format::FormatFields {
        response_format: c.response_format,
        structured_outputs: c.structured_outputs,
        guided_json: c.guided_json,
        guided_regex: c.guided_regex,
        guided_choice: c.guided_choice,
        guided_grammar: c.guided_grammar,
    })?;
    if let (Some((_, param)), true) = (&job.format, job.ignore_eos) {
        return Err(ApiError::bad_param(
            "ignore_eos",
            format!("`ignore_eos` cannot go with `{param}`: the answer ends where its format does"),
        ));
    }
    if let Some(o) = c.stream_options {
        if !job.stream {
            return Err(ApiError::bad_param(
                "stream_options",
                "`stream_options` is only allowed with `stream: true`",
            ));
        }
        job.include_usage = o.include_usage.unwrap_or(false);
        job.continuous_usage = o.continuous_usage_stats.unwrap_or(false);
        if job.continuous_usage && !job.include_usage {
            return Err(ApiError::bad_param(
                "stream_options.continuous_usage_stats",
                "`continuous_usage_stats` needs `include_usage: true`",
            ));
        }
    }
    p.stop = token_fields::stops(c.stop)?;
    p.stop_token_ids = token_fields::token_ids(
        c.stop_token_ids,
        "stop_token_ids",
        token_fields::MAX_STOP_TOKEN_IDS,
    )?;
    if c.allowed_token_ids
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        return Err(ApiError::bad_param(
            "allowed_token_ids",
            "`allowed_token_ids` is empty: no token could be sampled (leave it out to allow all)",
        ));
    }
    // Sorted for the sampler once checked against the vocabulary (errors name the index).
    p.allowed_token_ids =
        token_fields::token_ids(c.allowed_token_ids, "allowed_token_ids", usize::MAX)?;
    job.bad_words = token_fields::bad_words(c.bad_words)?;
    if let Some(m) = c.min_tokens {
        p.min_tokens = usize::try_from(m).unwrap_or(usize::MAX);
    }
    job.include_stop = c.include_stop_str_in_output.unwrap_or(false);
    job.show_special = !c.skip_special_tokens.unwrap_or(true);
    // Only slow (SentencePiece-in-Python) tokenizers put spaces between special tokens; this
    // server's (tokenizer.json, GGUF) are fast ones, for which transformers and vLLM ignore it.
    let _ = c.spaces_between_special_tokens;
    if let Some(k) = c.prompt_logprobs {
        check(
            "prompt_logprobs",
            k as f64,
            (0..=MAX_LOGPROBS as i64).contains(&k),
            "from 0 to 20",
        )?;
        if job.stream {
            return Err(ApiError::bad_param(
                "prompt_logprobs",
                "`prompt_logprobs` is not available with `stream: true` (ask without streaming, or use `echo` with `logprobs` on /v1/completions)",
            ));
        }
        job.prompt_logprobs = Some(k as usize);
    }
    job.token_ids_as_text = c.return_tokens_as_token_ids.unwrap_or(false);
    if let Some(k) = c.truncate_prompt_tokens {
        check(
            "truncate_prompt_tokens",
            k as f64,
            k == -1 || k >= 1,
            "-1 (keep what fits the context) or a count of tokens >= 1",
        )?;
        job.truncate = Some(usize::try_from(k).unwrap_or(TRUNCATE_TO_CONTEXT));
    }
    p.seed = match c.seed {
        Some(s) => s as u64,
        None => rand::random(),
    };
    job.selection = selection(&job.model, c.lora_mixture, c.dlp_route_by)?;
    Ok(())
}

/// The adapters that serve the request: `lora_mixture` wins; otherwise `model` names the base
/// model, an adapter, or `auto`. Names are checked against what is loaded later.
pub(super) fn selection(
    model: &str,
    mixture: Option<Value>,
    route_by: Option<String>,
) -> Result<Selection, ApiError> {
    if let Some(by) = &route_by {
        if model != "auto" || mixture.is_some() {
            return Err(ApiError::bad_param(
                "dlp_route_by",
                "`dlp_route_by` applies only to `model: \"auto\"` without `lora_mixture`",
            ));
        }
        return match by.as_str() {
            "request" => Ok(Selection::Router(RouteBy::Request)),
            "sentence" => Ok(Selection::Router(RouteBy::Sentence)),
            other => Err(ApiError::bad_param(
                "dlp_route_by",
                format!("`dlp_route_by` is `{other}`; expected `request` or `sentence`"),
            )),
        };
    }
    if let Some(raw) = mixture {
        return Ok(Selection::Mixture(super::mixture::mixture(raw)?));
    }
    Ok(if model == "auto" {
        Selection::Router(RouteBy::Request)
    } else {
        // Base or adapter: told apart against the server's names.
        Selection::Adapter(model.to_string())
    })
}

pub(super) fn new_job(endpoint: Endpoint) -> Job {
    Job {
        endpoint,
        model: String::new(),
        prompts: Vec::new(),
        n: 1,
        params: SamplingParams {
            // OpenAI's default temperature.
            temperature: 1.0,
            ..SamplingParams::default()
        },
        prompt_list: false,
        max_tokens: None,
        max_tokens_param: "max_tokens",
        stream: false,
        include_usage: false,
        continuous_usage: false,
        logprobs: None,
        echo: false,
        selection: Selection::Base,
        ignore_eos: false,
        format: None,
        tool_mode: None,
        call_ids: None,
        bad_words: Vec::new(),
        include_stop: false,
        show_special: false,
        prompt_logprobs: None,
        token_ids_as_text: false,
        truncate: None,
    }
}

/// A `/v1/completions` body, checked.
pub fn completion(body: &[u8]) -> Result<Job, ApiError> {
    let mut b: CompletionBody = parse(body)?;
    let mut job = new_job(Endpoint::Completion);
    common(b.take_common(), &mut job)?;
    job.prompt_list = b.prompt.as_ref().is_some_and(PromptField::is_list);
    job.prompts = PromptField::into_inputs(b.prompt)?;
    job.max_tokens = b.max_tokens;
    if let Some(l) = b.logprobs {
        check("logprobs", l as f64, l <= MAX_LOGPROBS, "from 0 to 20")?;
        job.logprobs = Some(l as usize);
    }
    job.echo = b.echo.unwrap_or(false);
    if job.echo && job.stream && job.prompts.len() > 1 {
        return Err(ApiError::bad_param(
            "echo",
            "`echo` with `stream` takes one prompt per request",
        ));
    }
    if let Some(best) = b.best_of.filter(|&b| b != job.n as u64) {
        return Err(ApiError::bad_param(
            "best_of",
            format!("`best_of` = {best} is not supported (only `best_of` equal to `n`)"),
        ));
    }
    if b.suffix.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param(
            "suffix",
            "`suffix` (insertion) is not supported by this server",
        ));
    }
    Ok(job)
}
