//! `dlp-run serve`: an OpenAI-compatible HTTP server. Every request gets its own exact adapter
//! mixture (the base model, one adapter, an explicit `lora_mixture`, or the DLP router per
//! request or per sentence with `model: "auto"`), and all of them run together in one
//! continuous batch ([`dlp_engine::scheduler`]).
//!
//! Threads: the engine loop runs on the calling thread (it owns the model); axum runs on a
//! small tokio runtime beside it; the two talk through channels ([`worker`]).

mod adapters;
pub(crate) mod api;
mod body;
mod chat;
mod chat_options;
mod cors;
mod error;
mod format;
mod http;
mod json_text;
mod listen;
mod metrics;
mod middleware;
mod mixture;
mod prompt;
mod prompt_field;
mod protocol;
mod pythonic;
mod response;
mod responses;
mod responses_options;
mod responses_out;
mod schema_refs;
mod text_offset;
mod token_fields;
mod tokenize;
mod tool_parser;
mod tools;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::generate::DEFAULT_STEP_TOKENS;
use dlp_engine::scheduler::SchedulerConfig;
use dlp_engine::Backend;

use crate::common::{load_keeping_adapters, Loaded, ModelArgs, WithBackend};
use crate::routing::{load_router, select_config, FusionChoice, RouteBy, Routing};

/// Serve the model over an OpenAI-compatible HTTP API, with continuous batching.
///
/// Every request picks its adapters: `"model": "<base model>"` (no adapter), `"model":
/// "<adapter>"` (that adapter alone), `"model": "auto"` (the DLP router; `"dlp_route_by":
/// "sentence"` routes each sentence), or `"lora_mixture": {"a": 0.7, "b": 0.3}` (an exact
/// weighted sum, each adapter at its own alpha/rank). Requests with different mixtures share
/// every forward pass. Responses carry a `dlp` object with the segments and mixtures used.
///
/// Endpoints: POST /v1/chat/completions, POST /v1/completions, POST /v1/responses (all with
/// "stream": true), POST /tokenize and /detokenize, GET /v1/models, GET /health (no key
/// needed), GET /metrics (Prometheus), and with
/// --allow-runtime-adapters POST /v1/load_lora_adapter and /v1/unload_lora_adapter.
///
/// Example:
///
///   dlp-run serve --adapter boolq=adapters/boolq --adapter piqa=adapters/piqa
///
///   curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json'
///     -d '{"model": "boolq", "messages": [{"role": "user", "content": "Is water wet?"}]}'
#[derive(Debug, Args, Clone)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A router directory from `dlp-run train-router`: enables `"model": "auto"`. Every router
    /// label must be a loaded adapter's name (other adapters may be loaded too).
    #[arg(long, value_name = "DIR")]
    pub router: Option<PathBuf>,
    /// Router top-p: keep the smallest set of adapters whose probability reaches P.
    #[arg(long, value_name = "P", default_value_t = 0.9)]
    pub route_p: f32,
    /// Keep at most this many adapters per routed mixture (0 = no cap).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_adapters: usize,
    /// How the router's kept probabilities become fusion weights.
    #[arg(long, value_enum, default_value = "renorm")]
    pub fusion_weights: FusionChoice,
    /// Address to listen on. The default answers this machine only; give 0.0.0.0 (and an
    /// --api-key) to serve others.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at startup).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long, env = "DLP_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Let web pages from these origins call the server from a browser (CORS: preflights
    /// answered, `Access-Control-Allow-Origin` on every answer): comma-separated
    /// `scheme://host[:port]` as the browser's Origin header writes it (no path or trailing
    /// `/`), `null` for file:// pages (sandboxed frames of any site send it too), or `*` for
    /// any page; vLLM's JSON list (`'["http://localhost:3000"]'`) is read too. Default: none,
    /// so that a page the user opens cannot read a local server's answers (vLLM's default is
    /// `*`); whatever this says, a POST must be labelled application/json, which a page of
    /// another site cannot send unless the server allows its origin.
    #[arg(long, value_name = "ORIGINS")]
    pub allowed_origins: Vec<String>,
    /// Sequences decoded at once (KV-cache slots, each holding --max-context positions);
    /// more requests wait in the queue.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_concurrent: usize,
    /// Most tokens in one forward pass: every running sequence's next token, plus prompt
    /// chunks of new requests in what is left (so long prompts never stall running streams).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STEP_TOKENS)]
    pub max_batch_tokens: usize,
    /// Compute every prompt in full. By default a sequence whose first 16 or more tokens (and
    /// their adapters) equal a running sequence's copies that one's KV-cache rows instead:
    /// the `n` choices of a request prefill their prompt once, and chats share their
    /// template's opening (vLLM's prefix caching, for sequences in flight; cpu and wgpu, and
    /// cuda with --cuda-experimental kv-copy).
    #[arg(long)]
    pub no_prefix_sharing: bool,
    /// Sequences that may wait for a slot; past that, requests get 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_queue: usize,
    /// The base model's name in `model` fields and /v1/models (default: the model file's
    /// name without its extension).
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (needs --adapter-root).
    #[arg(long, requires = "adapter_root")]
    pub allow_runtime_adapters: bool,
    /// The only directory runtime adapters may be loaded from (paths are relative to it, or
    /// absolute inside it; `..` and symbolic links leading out are refused).
    #[arg(long, value_name = "DIR", requires = "allow_runtime_adapters")]
    pub adapter_root: Option<PathBuf>,
    /// Largest request body accepted, in MiB (413 past it).
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub max_body_mib: usize,
    /// On SIGINT/SIGTERM: stop accepting, let running requests finish for up to this many
    /// seconds (a second signal ends them at once), then end what is left and exit 0
    /// (connections whose clients do not read their answers are closed 5 s later).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// A client must send a request's headers, and then its body, within this many seconds
    /// (else the connection is closed, or a 408); an idle keep-alive connection is closed
    /// after it. Keeps stalled or trickling clients from holding connections.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub read_timeout: u64,
    /// Most open connections; more wait in the kernel's accept queue until one closes. Each
    /// holds a file descriptor (the process limit is `ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// How `tool_choice: "auto"` (the default with `tools`) reads the calls a model writes in
    /// its own syntax: `auto` takes the one its chat template shows (`<tool_call>` blocks:
    /// hermes; `<|python_tag|>`: llama3_json; `[TOOL_CALLS]`: mistral; a `[func_name1(...)]`
    /// format line: pythonic), and without one such requests are refused.
    /// Forced calls (`"required"`, a named function) need no parser: they are generated under
    /// a grammar.
    #[arg(long, value_enum, value_name = "PARSER", default_value = "auto")]
    pub tool_call_parser: tool_parser::ParserChoice,
}

impl ServeArgs {
    fn check(&self) -> Result<()> {
        if self.max_concurrent == 0 {
            bail!("--max-concurrent must be at least 1");
        }
        if self.max_batch_tokens < self.max_concurrent {
            bail!(
                "--max-batch-tokens ({}) must be at least --max-concurrent ({}): every running sequence decodes one token per step",
                self.max_batch_tokens,
                self.max_concurrent
            );
        }
        if self.api_key.as_deref() == Some("") {
            bail!("--api-key (or $DLP_API_KEY) is empty");
        }
        if self.max_body_mib == 0 {
            bail!("--max-body-mib must be at least 1");
        }
        Ok(())
    }
}

impl WithBackend for &ServeArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        let args = self;
        args.check()?;
        let origins = cors::parse(&args.allowed_origins)?;
        let model_path = args.model.model_path()?;
        let base_name = args.served_model_name.clone().unwrap_or_else(|| {
            let p = model_path.file_name().unwrap_or(model_path.as_os_str());
            let s = p.to_string_lossy();
            s.strip_suffix(".gguf").unwrap_or(&s).to_string()
        });
        // The base model's name is a request's `model`: `auto` is the router's, and an empty
        // one reads as no model at all.
        if base_name == "auto" || base_name.trim().is_empty() {
            bail!("--served-model-name `{base_name}`: the base model's name must not be empty or `auto` (`model: \"auto\"` is the router); pick another");
        }
        let adapter_root =
            match &args.adapter_root {
                Some(d) => Some(d.canonicalize().ok().filter(|c| c.is_dir()).with_context(
                    || format!("--adapter-root {}: not an existing directory", d.display()),
                )?),
                None => None,
            };
        // Bind first: a port in use is reported before minutes of loading.
        let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;

        let (Loaded { model, tokenizer }, peft) = load_keeping_adapters(backend, &args.model)?;
        let tok = Arc::new(tokenizer.context(
            "this model has no tokenizer (no tokenizer.json beside it); the server needs one",
        )?);
        let names = model.adapter_names().to_vec();
        for n in &names {
            if n == "auto" || *n == base_name {
                bail!("--adapter {n}=...: the name `{n}` is taken (`auto` is the router, `{base_name}` the base model); pick another");
            }
        }
        let eos = {
            let mut ids = model.config.eos_token_ids.clone();
            ids.extend(tok.eos_token_ids());
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let (routing_http, routing_engine) = match &args.router {
            Some(dir) => {
                let select = select_config(args.route_p, args.max_adapters, args.fusion_weights)?;
                let router = load_router(dir)?;
                let http = Routing::by_label(router.clone(), select, RouteBy::Request);
                let mut engine = Routing::by_label(router, select, RouteBy::Sentence);
                engine
                    .rematch(&names)
                    .with_context(|| format!("--router {}", dir.display()))?;
                (Some(http), Some(engine))
            }
            None => (None, None),
        };
        let context = model.max_context;
        let sched = SchedulerConfig {
            max_seqs: args.max_concurrent,
            capacity: context,
            step_tokens: args.max_batch_tokens,
            mix_k: names.len().max(64),
            sparse_kv: true,
            share_prefixes: !args.no_prefix_sharing,
        };
        let shared = Arc::new(worker::Shared {
            metrics: metrics::Metrics::new(),
            outstanding: AtomicUsize::new(0),
        });
        // Calls are written by the template conversations with tools render with.
        let tool_parser = args.tool_call_parser.resolve(tok.chat_template_for(true));
        let (tx, rx) = std::sync::mpsc::channel();
        let started = http::unix_now();
        let state = Arc::new(http::AppState {
            tx: tx.clone(),
            shared: shared.clone(),
            tok: tok.clone(),
            routing: routing_http,
            router_dir: args.router.as_ref().map(|d| d.display().to_string()),
            base_name: base_name.clone(),
            base_path: model_path.display().to_string(),
            adapters: std::sync::RwLock::new(
                peft.iter()
                    .map(|a| (a.name.clone(), a.dir.display().to_string(), started))
                    .collect(),
            ),
            config: model.config.clone(),
            formats: format::Formats::new(
                tok.clone(),
                model.config.vocab_size,
                eos.clone(),
                &shared.metrics,
            ),
            tool_parser,
            context,
            capacity: args.max_concurrent.saturating_add(args.max_queue),
            api_key: args.api_key.clone(),
            adapter_root: adapter_root.filter(|_| args.allow_runtime_adapters),
            shutting_down: AtomicBool::new(false),
            started,
        });

        let kv_gib = (2
            * model.config.num_layers
            * args.max_concurrent
            * context
            * model.config.kv_dim()
            * model.backend.kv_value_bytes()) as f64
            / (1u64 << 30) as f64;
        eprintln!("dlp-run serve: listening on http://{addr}");
        eprintln!(
            "  model    {base_name} ({}), backend {}",
            model_path.display(),
            model.backend.name()
        );
        if names.is_empty() {
            eprintln!("  adapters none");
        }
        for a in &peft {
            eprintln!("  adapter  {} <- {}", a.name, a.dir.display());
        }
        if let Some(dir) = &args.router {
            eprintln!(
                "  router   {} (model `auto`, top-p {})",
                dir.display(),
                args.route_p
            );
        }
        eprintln!(
            "  batching {} sequences x {context} positions (KV cache up to {kv_gib:.1} GiB, filled as used), {} tokens per step, queue {}",
            args.max_concurrent, args.max_batch_tokens, args.max_queue
        );
        match (state.tool_parser, args.tool_call_parser) {
            (Some(p), tool_parser::ParserChoice::Auto) => eprintln!(
                "  tools    tool_choice auto read as {} (the chat template's syntax)",
                p.name()
            ),
            (Some(p), _) => eprintln!("  tools    tool_choice auto read as {}", p.name()),
            (None, tool_parser::ParserChoice::None) => {
                eprintln!("  tools    forced calls only (--tool-call-parser none)")
            }
            (None, _) => eprintln!(
                "  tools    forced calls only: the chat template shows no tool-call syntax (see --tool-call-parser)"
            ),
        }
        if state.tool_parser.is_some()
            && !tok
                .chat_template_for(true)
                .is_some_and(|t| t.contains("tools"))
        {
            eprintln!("  note: the chat template never reads `tools`: the model is not shown the functions it may call");
        }
        if let Some(root) = &state.adapter_root {
            eprintln!("  runtime adapters from {}", root.display());
        }
        if args.api_key.is_some() {
            eprintln!("  API key required (Authorization: Bearer ...)");
        } else if !addr.ip().to_canonical().is_loopback() {
            eprintln!("  warning: no API key on {}: whoever reaches this port can use the server (set --api-key or DLP_API_KEY)", addr.ip());
        }
        if let Some(o) = &origins {
            eprintln!("  {}", cors::describe(o));
            if *o == cors::Origins::Any && args.api_key.is_none() {
                eprintln!("  warning: --allowed-origins '*' without an API key: any web page open in a browser that reaches this port can use the server");
            }
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let read_timeout = Duration::from_secs(args.read_timeout);
        let app = http::router(
            state.clone(),
            args.max_body_mib << 20,
            read_timeout,
            origins.as_ref().map(cors::layer),
        );
        let max_connections = args.max_connections;
        let grace = Duration::from_secs(args.shutdown_grace);
        let http_tx = tx.clone();
        rt.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: listening on {addr}: {e}");
                    let _ = http_tx.send(worker::Cmd::Shutdown);
                    return;
                }
            };
            // Registered before serving: a signal is never lost between two waits for one.
            let mut signals = match Signals::new() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: listening for SIGINT/SIGTERM: {e}");
                    let _ = http_tx.send(worker::Cmd::Shutdown);
                    return;
                }
            };
            let st = state.clone();
            let abort_tx = http_tx.clone();
            let (aborted_tx, aborted_rx) = tokio::sync::oneshot::channel::<()>();
            let signal = async move {
                signals.next().await;
                eprintln!(
                    "dlp-run serve: shutting down (running requests may finish for {}s)",
                    grace.as_secs()
                );
                st.shutting_down.store(true, Ordering::SeqCst);
                // The grace, or a second signal (Ctrl-C pressed again), ends what runs; a
                // signal after that ends the process at once (it had been swallowed, the
                // default handlers being replaced).
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(grace) => {}
                        _ = signals.next() => eprintln!(
                            "dlp-run serve: second signal: ending the running requests now"
                        ),
                    }
                    let _ = abort_tx.send(worker::Cmd::Abort);
                    let _ = aborted_tx.send(());
                    let signal = signals.next().await;
                    eprintln!("dlp-run serve: another signal: exiting now, without the drain");
                    Signals::die_of(signal);
                });
            };
            // Once the abort is sent, time for the answers it sends to go out.
            let drain = async move {
                let _ = aborted_rx.await;
                tokio::time::sleep(DRAIN_AFTER_ABORT).await;
            };
            listen::serve(listener, app, read_timeout, max_connections, drain, signal).await;
            let _ = http_tx.send(worker::Cmd::Shutdown);
        });
        drop(tx);
        let worker = worker::Worker {
            model,
            adapters: peft
                .into_iter()
                .map(|a| {
                    let dir = a.dir.clone();
                    (a, dir)
                })
                .collect(),
            tok: &tok,
            routing: routing_engine,
            eos,
            config: sched,
            shared,
        };
        let result = worker.run(rx);
        rt.shutdown_timeout(Duration::from_secs(1));
        eprintln!("dlp-run serve: stopped");
        result
    }
}

/// After the shutdown grace, how long the errors sent to requests cut short have to reach
/// their clients before the remaining connections are closed.
const DRAIN_AFTER_ABORT: Duration = Duration::from_secs(5);

/// SIGINT (Ctrl-C) and SIGTERM, listened for from creation on: a signal that arrives while
/// nothing waits is kept for the next [`Signals::next`].
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next SIGINT or SIGTERM: its number (2 where there are no such numbers).
    async fn next(&mut self) -> i32 {
        #[cfg(unix)]
        return tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        };
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }

    /// Ends the process as signal `signal` does when nothing handles it, so that a supervisor
    /// reads a stop by that signal (an exit status would read as a failure).
    fn die_of(signal: i32) -> ! {
        #[cfg(unix)]
        // SAFETY: restoring the default action and raising the signal on this process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        std::process::exit(128 + signal)
    }
}
