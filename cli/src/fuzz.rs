//! `dlp-run fuzz` (cargo feature `fuzz`): every parser of a user's file or request, fed
//! mutations of a seed corpus for a bounded time on the stable toolchain (a mutation loop, no
//! coverage instrumentation). A failure is a panic, an input that runs past `--timeout`, or an
//! allocation past `--max-alloc-mib` (a length field must never make a loader allocate
//! gigabytes). Every input is written to `<crashes>/last-input.<target>` before it runs, so
//! an abort leaves it behind; a panic is saved as `<crashes>/<target>-<hash>` and counted.
//!
//! Targets and what one input is: `gguf` (a .gguf file), `safetensors-index` (the
//! `model.safetensors.index.json` of the tiny-llama fixture's shards), `config` (a
//! `config.json`), `adapter` (`adapter_config.json` and `adapter_model.safetensors`, split by
//! [`SPLIT`]), `tokenizer` (a `tokenizer.json`), `chat-template` (a template and a messages
//! JSON, split), `router` (`router.json` and `router.safetensors`, split), `prompts` (a
//! `--prompts` JSONL file), `serve-request` (a `/v1/chat/completions` or `/v1/completions`
//! body, the first byte choosing).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::output::outln;

/// Separates the parts of a two-file input.
pub const SPLIT: &[u8] = b"\n--DLP-FUZZ-SPLIT--\n";

/// The largest single allocation allowed while a target runs (0: no limit).
static ALLOC_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The system allocator with a ceiling on single allocations while a target runs: past it,
/// the process says so on stderr (without allocating) and aborts.
pub struct GuardedAlloc;

// SAFETY: every call is forwarded to the system allocator unchanged; the guard only reads an
// atomic and, past the limit, writes a fixed message with write(2) and aborts.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        // SAFETY: forwarded: `ptr` came from this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn check_size(size: usize) {
    let limit = ALLOC_LIMIT.load(Ordering::Relaxed);
    if limit > 0 && size > limit {
        let msg = b"dlp-run fuzz: an allocation past --max-alloc-mib; the input is in last-input.<target>\n";
        #[cfg(unix)]
        // SAFETY: write(2) of a static buffer to fd 2, then abort: no allocation.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
        #[cfg(not(unix))]
        std::process::abort();
    }
}

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Gguf,
    SafetensorsIndex,
    Config,
    Adapter,
    Tokenizer,
    ChatTemplate,
    Router,
    Prompts,
    ServeRequest,
}

impl Target {
    const ALL: [Target; 9] = [
        Target::Gguf,
        Target::SafetensorsIndex,
        Target::Config,
        Target::Adapter,
        Target::Tokenizer,
        Target::ChatTemplate,
        Target::Router,
        Target::Prompts,
        Target::ServeRequest,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Gguf => "gguf",
            Target::SafetensorsIndex => "safetensors-index",
            Target::Config => "config",
            Target::Adapter => "adapter",
            Target::Tokenizer => "tokenizer",
            Target::ChatTemplate => "chat-template",
            Target::Router => "router",
            Target::Prompts => "prompts",
            Target::ServeRequest => "serve-request",
        }
    }
}

/// Fuzz the parsers of users' files and requests (a mutation loop over a seed corpus).
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Targets to run, in turn (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub target: Vec<Target>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The seed corpus: `<DIR>/<target>/*` (tests/fuzz/corpus in the repository).
    #[arg(long, default_value = "tests/fuzz/corpus")]
    pub corpus: PathBuf,
    /// Where failing inputs go (and `last-input.<target>`).
    #[arg(long, default_value = "target/fuzz-crashes")]
    pub crashes: PathBuf,
    /// Fixtures (the tiny-llama model the adapter and index targets load against).
    #[arg(long, env = "DLP_FIXTURES", default_value = "../shared/fixtures")]
    pub fixtures: PathBuf,
    /// Largest single allocation allowed, in MiB.
    #[arg(long, default_value_t = 512)]
    pub max_alloc_mib: usize,
    /// Seconds one input may run.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Random seed of the mutations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run these inputs once each (through the one `--target`) and show how they fail,
    /// instead of fuzzing: to reproduce a saved failure.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub replay: Vec<PathBuf>,
}

/// Random edits of `input`: bit flips, byte changes (boundary values among them), inserted,
/// deleted and duplicated runs, digits and lengths rewritten, splices with another seed,
/// truncation.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let n = v.len();
        match rng.random_range(0..9) {
            0 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] = *[
                    0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b']', b'\\', b'9', b'-',
                ]
                .get(rng.random_range(0..12))
                .unwrap_or(&0);
            }
            2 => {
                let i = rng.random_range(0..=n);
                let k = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            3 if n > 1 => {
                let i = rng.random_range(0..n);
                let k = rng.random_range(1..=(n - i).min(64));
                v.drain(i..i + k);
            }
            4 if n > 1 => {
                let i = rng.random_range(0..n);
                let k = rng.random_range(1..=(n - i).min(64));
                let run = v[i..i + k].to_vec();
                v.splice(i..i, run);
            }
            5 if n >= 8 => {
                // An 8-byte little-endian length field set to a boundary value.
                let i = rng.random_range(0..n - 7);
                let val: u64 = *[0, 1, u32::MAX as u64, u64::MAX, 1 << 40, 1 << 31]
                    .get(rng.random_range(0..6))
                    .unwrap_or(&0);
                v[i..i + 8].copy_from_slice(&val.to_le_bytes());
            }
            6 if n > 0 => {
                // A run of digits (a JSON number) replaced by a large or negative one.
                let i = rng.random_range(0..n);
                if let Some(p) = v[i..].iter().position(u8::is_ascii_digit) {
                    let at = i + p;
                    let end = v[at..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(n, |e| at + e);
                    let rep = *[
                        "4294967296",
                        "-1",
                        "0",
                        "99999999999999999999",
                        "1e308",
                        "3",
                    ]
                    .get(rng.random_range(0..6))
                    .unwrap_or(&"0");
                    v.splice(at..end, rep.bytes());
                }
            }
            7 if !other.is_empty() => {
                let i = rng.random_range(0..=n);
                let a = rng.random_range(0..other.len());
                let b = rng
                    .random_range(a..other.len().min(a + 256) + 1)
                    .min(other.len());
                v.splice(i..i, other[a..b].iter().copied());
            }
            8 if n > 0 => v.truncate(rng.random_range(0..n)),
            _ => {}
        }
    }
    v
}

fn split(input: &[u8]) -> (&[u8], &[u8]) {
    match input.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&input[..i], &input[i + SPLIT.len()..]),
        None => (input, &[]),
    }
}

/// What a target needs besides its input.
struct Env {
    dir: tempfile::TempDir,
    fixtures: PathBuf,
    tiny_config: dlp_engine::ModelConfig,
    router_tokenizer: Vec<u8>,
}

/// Runs one input through `target`; errors are expected, panics are failures.
fn run_one(t: Target, env: &Env, input: &[u8]) {
    let d = env.dir.path();
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).expect("writing the fuzz input");
        p
    };
    let text = String::from_utf8_lossy(input);
    match t {
        Target::Gguf => {
            let p = write("model.gguf", input);
            let _ = dlp_engine::loader::ModelFiles::load_with(&p, true);
            // And as a llama.cpp LoRA adapter of the tiny model.
            let _ = dlp_engine::loader::peft::PeftAdapter::load("fuzz", &p, &env.tiny_config);
        }
        Target::SafetensorsIndex => {
            let m = d.join("model");
            let _ = std::fs::create_dir_all(&m);
            for f in std::fs::read_dir(env.fixtures.join("tiny-llama"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name();
                if name.to_string_lossy().starts_with("model-") || name == "config.json" {
                    let dst = m.join(&name);
                    if !dst.exists() {
                        let _ = std::fs::copy(f.path(), dst);
                    }
                }
            }
            let _ = std::fs::write(m.join("model.safetensors.index.json"), input);
            let _ = dlp_engine::loader::ModelFiles::load(&m);
        }
        Target::Config => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) {
                let _ = dlp_engine::ModelConfig::from_hf_json(&v, Path::new("config.json"));
            }
        }
        Target::Adapter => {
            let (cfg, tensors) = split(input);
            let a = d.join("adapter");
            let _ = std::fs::create_dir_all(&a);
            let _ = std::fs::write(a.join("adapter_config.json"), cfg);
            let _ = std::fs::write(a.join("adapter_model.safetensors"), tensors);
            let _ = dlp_engine::loader::peft::PeftAdapter::load("fuzz", &a, &env.tiny_config);
        }
        Target::Tokenizer => {
            let p = write("tokenizer.json", input);
            if let Ok(tok) = dlp_engine::tokenizer::TextTokenizer::from_file(&p) {
                let _ = tok.encode_prompt("Hello <|im_start|> wörld 123", false);
                let _ = tok.decode(&[0, 1, 2, 3, 1000], false);
            }
        }
        Target::ChatTemplate => {
            let (template, messages) = split(input);
            let p = write("tokenizer.json", &env.router_tokenizer);
            if let Ok(mut tok) = dlp_engine::tokenizer::TextTokenizer::from_file(&p) {
                tok.set_chat_template(
                    Some(String::from_utf8_lossy(template).into_owned()),
                    "fuzz input",
                );
                let messages = serde_json::from_slice(messages).unwrap_or_else(|_| {
                    vec![dlp_engine::tokenizer::ChatMessage::new("user", "hi")]
                });
                let _ = tok.render_chat(&messages, true);
            }
        }
        Target::Router => {
            let (cfg, weights) = split(input);
            let r = d.join("router");
            let _ = std::fs::create_dir_all(&r);
            let _ = std::fs::write(r.join("router.json"), cfg);
            let _ = std::fs::write(r.join("router.safetensors"), weights);
            let _ = std::fs::write(r.join("tokenizer.json"), &env.router_tokenizer);
            if let Ok(router) = dlp_router::Router::load(&r) {
                let _ = router.route(
                    &["Is the sky blue?", ""],
                    &dlp_router::SelectConfig::default(),
                );
            }
        }
        Target::Prompts => {
            let _ = crate::generate::parse_prompts(&text, "prompts.jsonl", &[], false);
        }
        Target::ServeRequest => {
            let body = input.get(1..).unwrap_or(&[]);
            let _ = if input.first().is_some_and(|b| b % 2 == 0) {
                crate::serve::api::chat(body)
            } else {
                crate::serve::api::completion(body)
            };
        }
    }
}

/// The seeds of a target: every file in `<corpus>/<target>/`.
fn seeds(corpus: &Path, t: Target) -> Result<Vec<Vec<u8>>> {
    let dir = corpus.join(t.name());
    let mut v = Vec::new();
    for f in
        std::fs::read_dir(&dir).with_context(|| format!("the seed corpus {}", dir.display()))?
    {
        let f = f?;
        if f.file_type()?.is_file() {
            v.push(std::fs::read(f.path())?);
        }
    }
    if v.is_empty() {
        bail!("{}: no seeds", dir.display());
    }
    Ok(v)
}

/// Runs `fuzz`; fails when any target failed.
pub fn run(args: &FuzzArgs) -> Result<()> {
    let targets = if args.target.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.target.clone()
    };
    std::fs::create_dir_all(&args.crashes)
        .with_context(|| format!("creating {}", args.crashes.display()))?;
    let tiny = args.fixtures.join("tiny-llama");
    let env = Env {
        dir: tempfile::tempdir()?,
        tiny_config: dlp_engine::ModelConfig::from_hf_dir(&tiny).with_context(|| {
            format!(
                "the tiny-llama fixture ({}), for the adapter target",
                tiny.display()
            )
        })?,
        fixtures: args.fixtures.clone(),
        router_tokenizer: std::fs::read(args.corpus.join("tokenizer.json"))
            .context("the small tokenizer of the corpus (tests/fuzz/corpus/tokenizer.json)")?,
    };
    if !args.replay.is_empty() {
        let [t] = targets[..] else {
            bail!("--replay needs exactly one --target");
        };
        for f in &args.replay {
            let input = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            eprintln!("replaying {} through {}", f.display(), t.name());
            run_one(t, &env, &input);
        }
        return Ok(());
    }
    // Panics are counted, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let progress = std::sync::Arc::new(AtomicU64::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let timeout = Duration::from_secs(args.timeout);
    {
        // Watchdog: an input that runs past the timeout is a hang.
        let (progress, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = (progress.load(Ordering::SeqCst), Instant::now());
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let now = progress.load(Ordering::SeqCst);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > timeout {
                    eprintln!(
                        "dlp-run fuzz: an input ran past --timeout; it is in last-input.<target>"
                    );
                    std::process::abort();
                }
            }
        });
    }
    let mut failed = 0usize;
    outln!(
        "{:<18} {:>10} {:>9} {:>8}",
        "target",
        "inputs",
        "inputs/s",
        "panics"
    );
    for t in targets {
        let pool = seeds(&args.corpus, t)?;
        let mut rng = StdRng::seed_from_u64(args.seed ^ (t as u64) << 32);
        let last = args.crashes.join(format!("last-input.{}", t.name()));
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let (mut n, mut panics) = (0u64, 0usize);
        let t0 = Instant::now();
        while Instant::now() < deadline {
            let a = &pool[rng.random_range(0..pool.len())];
            let b = &pool[rng.random_range(0..pool.len())];
            // Now and then a seed as it is, so that the deep paths run too.
            let input = if n % 16 == 0 {
                a.clone()
            } else {
                mutate(&mut rng, a, b)
            };
            std::fs::write(&last, &input)?;
            ALLOC_LIMIT.store(args.max_alloc_mib << 20, Ordering::SeqCst);
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(t, &env, &input)));
            ALLOC_LIMIT.store(0, Ordering::SeqCst);
            progress.fetch_add(1, Ordering::SeqCst);
            n += 1;
            if r.is_err() {
                panics += 1;
                let h = input.iter().fold(0xcbf29ce484222325u64, |h, &b| {
                    (h ^ b as u64).wrapping_mul(0x100000001b3)
                });
                std::fs::write(args.crashes.join(format!("{}-{h:016x}", t.name())), &input)?;
            }
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        outln!("{:<18} {n:>10} {rate:>9.0} {panics:>8}", t.name());
        failed += panics;
    }
    stop.store(true, Ordering::SeqCst);
    if failed > 0 {
        bail!(
            "{failed} inputs panicked; they are in {}",
            args.crashes.display()
        );
    }
    Ok(())
}
