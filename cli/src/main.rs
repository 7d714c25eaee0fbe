//! `dlp-run`: serve many task LoRAs from one base model. See `dlp-run --help`.

mod adapter_args;
mod bench;
mod bench_memory;
mod bench_peers;
mod bench_report;
mod bench_run;
mod bench_targets;
mod common;
mod eval;
mod format_args;
#[cfg(feature = "fuzz")]
mod fuzz;
mod generate;
mod input;
mod inspect;
mod json_keys;
mod mix_args;
mod output;
mod pipeline;
mod progress;
#[cfg(feature = "train")]
mod router_checks;
#[cfg(feature = "train")]
mod router_cmd;
mod router_eval;
#[cfg(feature = "train")]
mod router_extend;
mod routing;
mod sampling_args;
mod score;
mod select_backend;
mod serve;
mod stderr;
mod tokenize;

use clap::{Parser, Subcommand};

/// dlp-run — DLP-LoRA inference: one base LLM, many task LoRAs, a small router that picks a
/// weighted mixture of adapters per sentence, and one fused computation that applies it.
///
/// Quick start (after scripts/fetch-smollm2.sh):
///
///   dlp-run generate --chat --prompt "What is the capital of France?"
///
///   dlp-run generate --adapter a=DIR_A --adapter b=DIR_B --mix a=0.7,b=0.3 --prompt "..."
///
///   dlp-run score --ids 504,3575,282 --out logits.safetensors --mode decode
///
/// Models: an HF directory (config.json + safetensors; Llama 2/3, Mistral, Qwen2, Qwen3,
/// SmolLM2, SmolLM3, Phi-3, Phi-4, Gemma, Gemma 2, Gemma 3 text, VaultGemma, Granite, OLMo,
/// OLMo 2, OLMo 3, EXAONE 3, EXAONE 4, Seed-OSS, GLM-4-9B-chat-hf, GLM-4-0414, ERNIE 4.5 dense, Ministral,
/// InternLM3, Helium, Command R, Command R+, Command R7B, StableLM 2 (12B too), StarCoder2,
/// Phi-1.5/2, GPT-NeoX/Pythia, Falcon, GPT-J, Arcee AFM, Nemotron/Minitron, Apertus, Jais 2,
/// Ministral 3, Mistral Small 3.1/3.2 text, HunYuan dense, EXAONE 4.5 text, Apertus 1.5 text) or
/// a GGUF file (llama, qwen2, qwen3, phi3, gemma, gemma2, gemma3, granite, smollm3, olmo, olmo2 and its
/// OLMo 3 files, exaone, exaone4, seed_oss, chatglm, glm4, ernie4_5, command-r, cohere2,
/// stablelm, starcoder2, phi2, falcon, arcee, nemotron, apertus, jais2, mistral3, hunyuan-dense;
/// F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 and the k-quants Q2_K to Q6_K, IQ4_NL, IQ4_XS).
/// Adapters: PEFT LoRA directories, llama.cpp LoRA GGUFs.
#[derive(Debug, Parser)]
#[command(name = "dlp-run", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// `allow_negative_numbers`: `--top-k -1` is a value the flag refuses by name, not
// "unexpected argument '-1'".
enum Command {
    /// Generate text (streamed), from one prompt or a batch of prompts, each with its own
    /// adapter mixture.
    #[command(allow_negative_numbers = true)]
    Generate(generate::GenerateArgs),
    /// Write the teacher-forced logits of a token sequence to a safetensors file.
    #[command(allow_negative_numbers = true)]
    Score(score::ScoreArgs),
    /// Print the token ids of a text, or the rendered chat prompt of a messages file.
    #[command(allow_negative_numbers = true)]
    Tokenize(tokenize::TokenizeArgs),
    /// Show what a model directory, GGUF file, adapter or safetensors file holds.
    Inspect(inspect::InspectArgs),
    /// Train the DLP router (the mini-MLP that picks adapters per sentence) on labelled text.
    #[cfg(feature = "train")]
    #[command(allow_negative_numbers = true)]
    TrainRouter(router_cmd::TrainRouterArgs),
    /// Train the DLP router: not in this build (without the `train` feature).
    #[cfg(not(feature = "train"))]
    #[command(hide = true)]
    TrainRouter(NoTrainArgs),
    /// Evaluate a trained router: per-task and family accuracy, top-p containment, confusion.
    #[command(allow_negative_numbers = true)]
    EvalRouter(router_eval::EvalRouterArgs),
    /// Measure speed: base vs one LoRA vs K fused LoRAs vs token-level routing vs merged
    /// weights vs batches, interleaved in one run, reported as ratios.
    #[command(allow_negative_numbers = true)]
    Bench(bench::BenchArgs),
    /// Evaluate adapters and routing on tasks: accuracy, BLEU/ROUGE, time per example per mode,
    /// the router's top-p swept, mixed-task prompts.
    #[command(allow_negative_numbers = true)]
    Eval(eval::EvalArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (continuous batching; every request
    /// with its own adapter mixture, or routed by the DLP router with `"model": "auto"`).
    ///
    /// Requests sample with OpenAI's defaults (temperature 1, top_p 1) unless they set their
    /// own; `"temperature": 0` gives the greedy answer `generate` gives by default.
    #[command(allow_negative_numbers = true)]
    Serve(serve::ServeArgs),
    /// Fuzz the parsers of users' files and requests (built with `--features fuzz`).
    #[cfg(feature = "fuzz")]
    #[command(hide = true)]
    Fuzz(fuzz::FuzzArgs),
}

/// `train-router`'s arguments in a build without it: taken whole, so that the command says
/// why it is missing whatever flags it was given.
#[cfg(not(feature = "train"))]
#[derive(Debug, clap::Args)]
struct NoTrainArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    _args: Vec<String>,
}

/// With the `fuzz` feature: single allocations are capped while a fuzz target runs.
#[cfg(feature = "fuzz")]
#[global_allocator]
static ALLOC: fuzz::GuardedAlloc = fuzz::GuardedAlloc;

fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`dlp-run eval-router ... | head`)
    // would panic; restore the default, ending quietly as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    #[cfg(feature = "fuzz")]
    let quiet = matches!(cli.command, Command::Fuzz(_));
    #[cfg(not(feature = "fuzz"))]
    let quiet = false;
    // Fuzzed inputs make libraries warn by the thousand.
    let level = match cli.verbose {
        _ if quiet => "error",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a terminal (a log file or pipe would get escape codes) and never
    // under NO_COLOR.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr::log_writer)
        .with_ansi(ansi)
        .init();
    let result = match &cli.command {
        Command::Generate(a) => a
            .model
            .init_threads()
            .and_then(|_| common::with_backend(&a.model, a)),
        Command::Bench(a) => a
            .model
            .init_threads()
            .and_then(|_| common::with_backend(&a.model, a)),
        Command::Eval(a) => a
            .model
            .init_threads()
            .and_then(|_| common::with_backend(&a.model, a)),
        Command::Serve(a) => a
            .model
            .init_threads()
            .and_then(|_| common::with_backend(&a.model, a)),
        Command::Score(a) => a
            .model
            .init_threads()
            .and_then(|_| common::with_backend(&a.model, a)),
        Command::Tokenize(a) => tokenize::run(a),
        #[cfg(feature = "fuzz")]
        Command::Fuzz(a) => fuzz::run(a),
        Command::Inspect(a) => inspect::run(a),
        #[cfg(not(feature = "train"))]
        Command::TrainRouter(_) => Err(anyhow::anyhow!(
            "train-router: this dlp-run was built without the `train` feature (router training); build it with the default features"
        )),
        #[cfg(feature = "train")]
        Command::TrainRouter(a) => router_cmd::train_router(a),
        Command::EvalRouter(a) => router_eval::eval_router(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
