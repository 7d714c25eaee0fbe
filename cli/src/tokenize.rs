//! `dlp-run tokenize`: ids of a text, or the rendered chat prompt of a messages file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::{token_name, ChatMessage, ChatRequest, TextTokenizer};
use serde_json::Value;

use crate::output::{out, outln};

/// Print token ids (no special tokens added) as a JSON array, or render a chat.
#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "chat_json"])))]
pub struct TokenizeArgs {
    /// The model (HF directory, .gguf, or a tokenizer.json). Default as for `generate`.
    #[arg(long, short = 'm', value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Text to tokenize. Special tokens written in it (e.g. `<|im_start|>`) become their ids.
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    /// A JSON file (`-`: standard input) of what `apply_chat_template` takes: a list of
    /// messages, or an object `{"messages", "tools"?, "documents"?, "add_generation_prompt"?
    /// (default true, false with "continue_final_message"), "continue_final_message"?,
    /// "chat_template_kwargs"?}`; prints the prompt the chat template renders.
    #[arg(long, value_name = "FILE")]
    pub chat_json: Option<PathBuf>,
    /// Print the ids fed to the model for the prompt instead: the text's (or the rendered
    /// chat's) ids with the BOS the tokenizer adds there (transformers' rules for an HF
    /// tokenizer, llama.cpp's for a GGUF).
    #[arg(long)]
    pub prompt_ids: bool,
    /// With --text: print each token's id and text (`{"id": 7042, "text": " Paris"}`), as
    /// `--logit-bias` and the server's `logit_bias` need them (a leading space is part of a
    /// token: " Paris" and "Paris" are different ids); a token holding part of a character is
    /// named by its bytes (`bytes:\xf0\x9f`), as OpenAI's logprobs name it.
    #[arg(long, requires = "text")]
    pub show_tokens: bool,
    /// Use this chat template (a Jinja file) instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

/// Loads only the tokenizer of a model path (no weights).
pub fn load_tokenizer(path: &std::path::Path) -> Result<TextTokenizer> {
    if path.is_dir() {
        return TextTokenizer::from_hf_dir(path)?
            .with_context(|| format!("{}: no tokenizer.json in this directory", path.display()));
    }
    if path.extension().is_some_and(|e| e == "json") {
        return Ok(TextTokenizer::from_file(path)?);
    }
    let g = GgufFile::open(path)?;
    let beside = path.with_file_name("tokenizer.json");
    let mut t = if beside.exists() {
        TextTokenizer::from_file(&beside)?
    } else {
        TextTokenizer::from_gguf(&g)?
    };
    t.adopt_gguf(&g);
    Ok(t)
}

/// Runs `tokenize`.
pub fn run(args: &TokenizeArgs) -> Result<()> {
    let margs = crate::common::ModelArgs {
        model: args.model.clone(),
        adapters: vec![],
        llama_cpp_lora: vec![],
        llama_cpp_lora_scaled: vec![],
        backend: crate::common::BackendChoice::Cpu,
        threads: None,
        max_context: 0,
        f32_weights: false,
        wgpu_f16_weights: false,
        lora_f16: false,
        cpu_amx: false,
        cpu_int8: false,
        cuda_bf16_weights: false,
        cuda_bf16_compute: false,
        cuda_lora_bf16: false,
        cuda_kv_bf16: false,
        cuda_experimental: vec![],
        chat_template: args.chat_template.clone(),
    };
    // clap's `requires` lets this flag through beside --chat-json (its group with --text).
    if args.show_tokens && args.text.is_none() {
        anyhow::bail!("--show-tokens prints the tokens of --text; give --text (not --chat-json)");
    }
    let path = margs.model_path()?;
    let mut tok = load_tokenizer(&path)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    margs.apply_chat_template(&mut tok)?;
    if let Some(text) = &args.text {
        let ids = if args.prompt_ids {
            tok.encode_prompt(text, false)?.0
        } else {
            tok.encode(text)?
        };
        if args.show_tokens {
            let tokens = ids
                .iter()
                .map(|&id| serde_json::json!({"id": id, "text": token_name(&tok.token_bytes(id))}))
                .collect::<Vec<_>>();
            outln!("{}", serde_json::to_string(&tokens)?);
        } else {
            outln!("{}", serde_json::to_string(&ids)?);
        }
    }
    if let Some(f) = &args.chat_json {
        let req = read_chat_request(f)?;
        let text = tok.render_chat_request(&req)?;
        if args.prompt_ids {
            outln!(
                "{}",
                serde_json::to_string(&tok.encode_prompt(&text, true)?.0)?
            );
        } else {
            out!("{text}");
        }
    }
    Ok(())
}

/// A chat-template request from a JSON file: a messages list, or an object with `messages`,
/// `tools`, `documents`, `add_generation_prompt` (default true), `continue_final_message` and
/// `chat_template_kwargs` (more template variables).
pub fn read_chat_request(f: &std::path::Path) -> Result<ChatRequest> {
    let (s, name) = crate::input::read_text(f, "--chat-json")?;
    let v: Value = serde_json::from_str(&s).with_context(|| format!("{name}: not valid JSON"))?;
    if let Some(k) = crate::json_keys::duplicate_key(s.as_bytes()) {
        anyhow::bail!("{name}: key `{k}` is given twice");
    }
    const KEYS: [&str; 6] = [
        "messages",
        "tools",
        "documents",
        "add_generation_prompt",
        "continue_final_message",
        "chat_template_kwargs",
    ];
    let mut o = match v {
        Value::Array(_) => serde_json::Map::from_iter([("messages".to_string(), v)]),
        Value::Object(o) => o,
        other => anyhow::bail!(
            "{}: expected a list of messages or an object with `messages`, found {other}",
            name
        ),
    };
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        anyhow::bail!("{}: unknown key `{k}` (expected {})", name, KEYS.join(", "));
    }
    let mut flag = |k: &str, default: bool| match o.remove(k) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(b),
        Some(x) => Err(anyhow::anyhow!(
            "{}: `{k}` must be true or false, found {x}",
            name
        )),
    };
    let continue_final_message = flag("continue_final_message", false)?;
    let add_generation_prompt = flag("add_generation_prompt", !continue_final_message)?;
    let template_kwargs = match o.remove("chat_template_kwargs") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(k)) => k,
        Some(x) => anyhow::bail!(
            "{}: `chat_template_kwargs` must be an object, found {x}",
            name
        ),
    };
    let m = o
        .remove("messages")
        .with_context(|| format!("{name}: no `messages`"))?;
    let messages: Vec<ChatMessage> = serde_json::from_value(m).with_context(|| {
        format!(
            "{}: `messages` must be a list of objects with a string `role` (and `content`)",
            name
        )
    })?;
    Ok(ChatRequest {
        messages,
        tools: o.remove("tools").filter(|t| !t.is_null()),
        documents: o.remove("documents").filter(|d| !d.is_null()),
        add_generation_prompt,
        continue_final_message,
        template_kwargs,
    })
}
