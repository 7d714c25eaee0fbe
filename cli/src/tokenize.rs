//! `dlp-run tokenize`: ids of a text, or the rendered chat prompt of a messages file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::tokenizer::{ChatMessage, TextTokenizer};
use serde_json::Value;

/// Print token ids (no special tokens added) as a JSON array, or render a chat.
#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "chat_json"])))]
pub struct TokenizeArgs {
    /// The model (HF directory, .gguf, or a tokenizer.json). Default as for `generate`.
    #[arg(long, short = 'm', value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Text to tokenize. Special tokens written in it (e.g. `<|im_start|>`) become their ids.
    #[arg(long)]
    pub text: Option<String>,
    /// A JSON file of chat messages (`[{"role": ..., "content": ...}]`, or an object with
    /// `messages`): prints the prompt the chat template renders (with the generation prompt).
    #[arg(long, value_name = "FILE")]
    pub chat_json: Option<PathBuf>,
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
    if t.chat_template().is_none() {
        t.set_chat_template(g.chat_template());
    }
    Ok(t)
}

/// Runs `tokenize`.
pub fn run(args: &TokenizeArgs) -> Result<()> {
    let margs = crate::common::ModelArgs {
        model: args.model.clone(),
        adapters: vec![],
        backend: crate::common::BackendChoice::Cpu,
        threads: None,
        max_context: 0,
        f32_weights: false,
        wgpu_f16_weights: false,
        lora_f16: false,
        cpu_amx: false,
        cuda_bf16_weights: false,
    };
    let path = margs.model_path()?;
    let tok = load_tokenizer(&path)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    if let Some(text) = &args.text {
        println!("{}", serde_json::to_string(&tok.encode(text)?)?);
    }
    if let Some(f) = &args.chat_json {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let v: Value =
            serde_json::from_str(&s).with_context(|| format!("{}: not valid JSON", f.display()))?;
        let m = v.get("messages").cloned().unwrap_or(v);
        let messages: Vec<ChatMessage> = serde_json::from_value(m).with_context(|| {
            format!(
                "{}: expected a list of {{\"role\": ..., \"content\": ...}} messages",
                f.display()
            )
        })?;
        print!("{}", tok.render_chat(&messages, true)?);
    }
    Ok(())
}
