//! `dlp-run bench`: the paper's efficiency claims measured side by side in one run — base
//! model, one LoRA, K fused LoRAs, router-chosen mixtures, token-level routing, merged
//! weights, batches of all-different mixtures — interleaved round by round so that a noisy,
//! shared machine slows every scenario alike, and reported as ratios.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::cpu::CpuBackend;
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::ModelFiles;
use dlp_engine::lora::{merge_into, synthetic_adapter, Mixture};
use dlp_engine::model::Model;
use dlp_engine::{Backend, LoraModule};
use serde_json::Value;

use crate::bench_memory::MemoryModel;
use crate::bench_peers;
use crate::bench_report::{self, Measured, Report};
use crate::bench_run::{describe_sampling, run_once, Ctx};
use crate::common::{load, Loaded, ModelArgs, WithBackend};
use crate::pipeline::{encode_prompt, render_prompt};
use crate::routing::{RouteBy, Routing};
use dlp_router::SelectConfig;

/// The prompt used when none is given (about 60 tokens through SmolLM2's chat template).
const DEFAULT_PROMPT: &str = "Please answer with true or false: do cows have to be pregnant to \
produce milk? Explain your reasoning in a few sentences, as a farmer would to a curious child.";

/// Measure dlp-run's speed: base vs one LoRA vs K fused LoRAs vs token-level routing vs
/// merged weights vs batches, in one interleaved run, reported as ratios.
///
/// Columns: prefill and decode tokens/s over all requests (decode: the forward passes); lat50/
/// lat90: request 0's time per token (median, p90), counted once every request of the batch
/// is decoding; pick ms: the host's time a decode step spends picking the tokens from their
/// logit rows (sampling with filters, e.g. --temperature 1 --top-p 0.9; about 0 where the
/// step picks them itself: greedy, and a temperature alone on the CPU or with
/// --cuda-experimental device-sampling); host ms: the rest of a decode step's wall time, the
/// host's work besides the forward pass and the picks (scheduling, the step's plan, the token
/// callbacks: on a GPU, time the device waits for the host).
///
/// Example: dlp-run bench --quick
///          dlp-run bench --synthetic-adapters 100 --rank 16 --json bench.json --plot bench.png
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Random in-memory adapters to add (named syn0, syn1, ...). Default: 8 when no
    /// `--adapter` is given, so that K up to 8 can be fused.
    #[arg(long, value_name = "N")]
    pub synthetic_adapters: Option<usize>,
    /// The numbers of fused adapters to measure (the paper's time against number of LoRAs),
    /// e.g. `--fused 1,5,10,20 --synthetic-adapters 20` (K = 1 is the `single` row). Default:
    /// 2,3,5,8 (3 with --quick).
    #[arg(long, value_delimiter = ',', value_name = "K,...")]
    pub fused: Vec<usize>,
    /// Rank of the synthetic adapters.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Modules the synthetic adapters target, by PEFT name: as the model's files name them (Phi-3's
    /// qkv_proj and gate_up_proj, the modules they stack; StarCoder2's c_fc/c_proj, Phi's
    /// dense/fc1/fc2) or as Llama's (up_proj is StarCoder2's c_fc and Phi's fc1). The default's
    /// gate_proj is left out on a model without one.
    #[arg(long, default_value = crate::bench_targets::DEFAULT)]
    pub targets: String,
    /// A trained router (its labels = the adapter names) for the router-chosen and
    /// token-level scenarios; without one, a randomly initialised router of the paper's size
    /// (same cost) picks among the loaded adapters.
    #[arg(long, value_name = "DIR")]
    pub router: Option<PathBuf>,
    /// The prompt (rendered through the chat template when the model has one).
    #[arg(long, allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// Sample every token at this temperature, as a server's requests do (request i seeded
    /// with i), instead of the greedy pick; with --top-p, --top-k, --min-p. 0 = greedy, picked
    /// on the device where the backend does.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// With --temperature: keep the smallest set of tokens whose probability reaches P (1 =
    /// off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f32,
    /// With --temperature: keep the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// With --temperature: drop tokens less likely than MIN_P times the most likely (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub min_p: f32,
    /// New tokens per request (generation never stops early: EOS is ignored).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Rounds; each runs every scenario once, interleaved; medians are reported. On a shared,
    /// noisy machine more rounds of fewer tokens interleave finer and steady the ratios (e.g.
    /// `--rounds 21 --new-tokens 24`: fused3/base within ±0.01 across runs here, against ±0.08
    /// with the defaults).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The reduced set (K = 1 and 3, batch 1 and 32, 24 tokens, 2 rounds): under two minutes.
    #[arg(long)]
    pub quick: bool,
    /// Run only these scenarios (comma-separated names from the table: base, single, fused3,
    /// routed, token_level, batch32, merged3_f32, ...), e.g. to profile one of them. Ratios
    /// whose scenarios did not run are left out.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write every figure as JSON (with a top-level `ratios` object).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw per-token decode latency against the number of fused adapters (PNG).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Also run the peers (transformers+PEFT, llama.cpp) through bench/peers/peers.py on the
    /// same prompt token ids and token count, and report paired ratios. llama.cpp runs once
    /// after every round (interleaved with dlp-run's scenarios, like them a median over the
    /// rounds); transformers+PEFT runs `--rounds` times after the last round.
    #[arg(long)]
    pub peers: bool,
    /// Python for `--peers` (default: .venv-peers/bin/python when bench/peers/setup.sh made
    /// it, else python3).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Make request 0's decode steps (from the first step in which every request decodes) the
    /// profiler's capture range, so that a profile holds decode kernels alone: CUDA's
    /// cuProfilerStart/Stop, e.g. `ncu --profile-from-start off dlp-run bench --backend cuda
    /// --profile-decode --only base`, or `nsys profile --capture-range=cudaProfilerApi`.
    /// Nothing on the other backends.
    #[arg(long)]
    pub profile_decode: bool,
}

/// One thing to measure.
#[derive(Debug, Clone)]
pub enum Plan {
    /// `batch` requests, request `i` under `mixes[i % len]`.
    Fixed { batch: usize, mixes: Vec<Mixture> },
    /// Each prompt sentence routed by the router, re-routed after each generated sentence.
    Routed,
    /// The router run at every token, every token its own segment (MeteoRA-style cost).
    TokenLevel,
}

/// A named scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Row name.
    pub name: String,
    /// Adapters per mixture (0 = base).
    pub k: usize,
    /// Requests side by side.
    pub batch: usize,
    /// What runs.
    pub plan: Plan,
}

fn equal_mix(first: usize, k: usize, n_adapters: usize) -> Mixture {
    (0..k)
        .map(|j| ((first + j) % n_adapters, 1.0 / k as f32))
        .collect()
}

/// The scenarios of a run with `n` adapters loaded; `fused` replaces the fused-K list.
pub fn scenarios(n: usize, quick: bool, with_router: bool, fused: &[usize]) -> Vec<Scenario> {
    let fixed = |name: String, k: usize, batch: usize, mixes: Vec<Mixture>| Scenario {
        name,
        k,
        batch,
        plan: Plan::Fixed { batch, mixes },
    };
    let mut v = vec![
        fixed("base".into(), 0, 1, vec![vec![]]),
        fixed("single".into(), 1, 1, vec![vec![(0, 1.0)]]),
    ];
    let ks: &[usize] = match (fused.is_empty(), quick) {
        (false, _) => fused,
        (true, true) => &[3],
        (true, false) => &[2, 3, 5, 8],
    };
    for &k in ks.iter().filter(|&&k| k <= n && k >= 2) {
        v.push(fixed(format!("fused{k}"), k, 1, vec![equal_mix(0, k, n)]));
    }
    if with_router && !quick {
        v.push(Scenario {
            name: "routed".into(),
            k: 0,
            batch: 1,
            plan: Plan::Routed,
        });
    }
    v.push(Scenario {
        name: "token_level".into(),
        k: 3.min(n),
        batch: 1,
        plan: Plan::TokenLevel,
    });
    let batches: &[usize] = if quick { &[32] } else { &[4, 16, 32] };
    let k = 3.min(n);
    for &b in batches {
        // Every request a different mixture (shifted adapter windows with distinct weights).
        let mixes = (0..b)
            .map(|i| {
                let mut m = equal_mix(i, k, n);
                m.iter_mut()
                    .enumerate()
                    .for_each(|(j, e)| e.1 = (1 + (i + j) % 4) as f32 / 4.0);
                m
            })
            .collect();
        v.push(fixed(format!("batch{b}"), k, b, mixes));
    }
    v
}

/// The router of the routed and token-level scenarios, matched to the adapters; it selects
/// with the paper's top-p (0.9) and routes by sentence.
fn bench_routing(
    args: &BenchArgs,
    tok: &dlp_engine::tokenizer::TextTokenizer,
    names: &[String],
) -> Result<Routing> {
    let router = match &args.router {
        Some(dir) => crate::routing::load_router(dir)?,
        None => std::sync::Arc::new(bench_report::random_router(
            tok.hf_tokenizer().clone(),
            names,
        )),
    };
    let what = args
        .router
        .as_ref()
        .map_or("the random router".into(), |d| {
            format!("--router {}", d.display())
        });
    Routing::from_router(router, SelectConfig::default(), RouteBy::Sentence, names).context(what)
}

impl WithBackend for &BenchArgs {
    type Out = ();
    fn run<B: Backend>(self, backend: B) -> Result<()> {
        let args = self;
        let (new_tokens, rounds) = if args.quick {
            (args.new_tokens.min(24), args.rounds.min(2))
        } else {
            (args.new_tokens, args.rounds)
        };
        if new_tokens < 2 || rounds == 0 {
            bail!("--new-tokens must be at least 2 and --rounds at least 1");
        }
        let sampling = args.sampling()?;
        let outputs = [
            (
                "--json",
                args.json.as_deref(),
                crate::output::OutFormat::Text,
            ),
            (
                "--plot",
                args.plot.as_deref(),
                crate::output::OutFormat::Png,
            ),
        ];
        let mut inputs = args.model.inputs()?;
        inputs.router(args.router.as_deref());
        crate::output::check_outputs(&outputs, &inputs)?;
        let mut loaded: Loaded<B> = load(backend, &args.model)?;
        let synthetic = args
            .synthetic_adapters
            .unwrap_or(if args.model.adapters.is_empty() { 8 } else { 0 });
        let targets = crate::bench_targets::parse(&args.targets, &loaded.model.config)?;
        let path = args.model.model_path()?;
        let cfg = loaded.model.config.clone();
        let specs = args.model.adapter_specs()?;
        let n_adapters = specs.len() + synthetic;
        let widest = cfg
            .hidden_size
            .min(cfg.intermediate_size)
            .min(cfg.num_kv_heads * cfg.head_dim);
        if synthetic > 0 && !(1..=widest).contains(&args.rank) {
            bail!(
                "--rank {}: a LoRA's rank must be from 1 to {widest} (this model's narrowest matrix side)",
                args.rank
            );
        }
        check_synthetic_memory(synthetic, &cfg, args.rank, &targets)?;
        let tok = loaded.tokenizer()?;
        let text = args.prompt.as_deref().unwrap_or(DEFAULT_PROMPT);
        let chat = tok.chat_template().is_some();
        let rendered = render_prompt(tok, chat, None, Some(text), None)?;
        let (ids, starts) = encode_prompt(tok, &rendered)?;
        // Each round's tokens are kept: a count past the context is refused, not allocated.
        let room = loaded.model.max_context.saturating_sub(ids.len());
        if new_tokens > room {
            bail!(
                "--new-tokens {new_tokens}: the prompt's {} tokens leave room for {room} in the context of {} (--max-context)",
                ids.len(),
                loaded.model.max_context
            );
        }
        // Scenario flags are checked before any adapter is built (minutes for many).
        if args.fused.contains(&0) {
            bail!("--fused 0: each K (adapters fused) must be at least 1");
        }
        if let Some((i, k)) =
            (args.fused.iter().enumerate()).find(|&(i, k)| args.fused[..i].contains(k))
        {
            bail!(
                "--fused: K {k} is given twice (item {}); each K is one scenario",
                i + 1
            );
        }
        if let Some(&k) = args.fused.iter().find(|&&k| k > n_adapters) {
            bail!(
                "--fused {k}: needs {k} adapters and {n_adapters} are loaded (add --synthetic-adapters {k})",
            );
        }
        let mut plans = scenarios(n_adapters, args.quick, args.router.is_some(), &args.fused);
        // The merged-weights floor (base_f32, merged<K>_f32) runs on the CPU backend, outside
        // --quick; each of its models runs the base scenario (no adapter at run time).
        let floor_names = [
            "base_f32".to_string(),
            format!("merged{}_f32", 3.min(n_adapters)),
        ];
        let with_floor = !args.quick && loaded.model.backend.name() == "cpu";
        let base_plan = plans[0].clone();
        let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
        if let Some(bad) = args.only.iter().find(|o| {
            let in_run = plans.iter().any(|p| &p.name == *o);
            !(in_run || with_floor && floor_names.contains(o))
        }) {
            let mut names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
            if with_floor {
                names.extend(floor_names.iter().map(String::as_str));
            }
            let why = if floor_names.contains(bad) {
                " (the merged-weights rows run on the CPU backend, without --quick)"
            } else {
                ""
            };
            bail!(
                "--only: no scenario `{bad}` in this run{why} (have: {})",
                names.join(", ")
            );
        }
        plans.retain(|p| wanted(&p.name));
        // Refused before the run, not after it (the plot's points are these scenarios).
        let plotted = |p: &Scenario| p.name == "single" || p.name.starts_with("fused");
        if args.plot.is_some() && !plans.iter().any(plotted) {
            bail!(
                "--plot draws decode latency against the number of fused adapters; {} runs no \
                 `single` or `fused*` scenario",
                match args.only.is_empty() {
                    true => "this run (no adapters?)".to_string(),
                    false => format!("--only {}", args.only.join(",")),
                }
            );
        }
        let mut adapters: Vec<PeftAdapter> = Vec::new();
        for (n, d) in specs {
            adapters.push(PeftAdapter::load(&n, &d, &cfg)?);
        }
        for i in 0..synthetic {
            adapters.push(synthetic_adapter(
                &format!("syn{i}"),
                &cfg,
                args.rank,
                &targets,
                i as u64,
            ));
        }
        if adapters.is_empty() {
            bail!("no adapters: give --adapter NAME=DIR or --synthetic-adapters N");
        }
        loaded.model.set_adapters(&adapters)?;
        let names = loaded.model.adapter_names().to_vec();
        let tok = loaded.tokenizer()?;
        let routing = bench_routing(args, tok, &names)?;
        // The merged-weights floor and its f32 base (merging needs f32 weights), on the CPU.
        let floor_wanted: Vec<bool> = floor_names.iter().map(|n| wanted(n)).collect();
        let merged = if !with_floor || !floor_wanted.contains(&true) {
            None
        } else {
            let mix = equal_mix(0, 3.min(adapters.len()), adapters.len());
            let mut models = Vec::new();
            for merge in [false, true]
                .into_iter()
                .filter(|&m| floor_wanted[m as usize])
            {
                let mut files = ModelFiles::load_with(&path, false)?;
                if merge {
                    merge_into(&mut files.weights, &adapters, &mix)?;
                }
                models.push(Model::new(
                    CpuBackend::new(),
                    cfg.clone(),
                    files.weights,
                    args.model.max_context,
                )?);
            }
            Some(models)
        };
        let eprint_progress = crate::progress::Progress::new(
            rounds * (plans.len() + merged.as_ref().map_or(0, Vec::len)),
            "bench {bar:30} {pos}/{len} {msg}",
            "bench",
        );
        let mut measured: Vec<Measured> = plans
            .iter()
            .map(|s| Measured::new(&s.name, s.k, s.batch))
            .collect();
        let mut floor: Vec<Measured> = (floor_names.iter().zip([0, 3.min(n_adapters)]))
            .zip(&floor_wanted)
            .filter(|(_, &w)| w)
            .map(|((name, k), _)| Measured::new(name, k, 1))
            .collect();
        let ctx = Ctx {
            ids: &ids,
            starts: &starts,
            text: &rendered,
            new_tokens,
            tok,
            routing: &routing,
            names: &names,
            profile_decode: args.profile_decode,
            sampling: &sampling,
        };
        let peers = if args.peers {
            Some(bench_peers::Peers::new(
                args, &path, text, new_tokens, &ids,
            )?)
        } else {
            None
        };
        let mut llama_rounds: Vec<Value> = Vec::new();
        for _ in 0..rounds {
            for (s, m) in plans.iter().zip(measured.iter_mut()) {
                eprint_progress.set_message(s.name.clone());
                m.samples.push(run_once(&loaded.model, s, &ctx)?);
                eprint_progress.inc(1);
            }
            if let Some(models) = &merged {
                for (model, m) in models.iter().zip(floor.iter_mut()) {
                    eprint_progress.set_message(m.name.clone());
                    m.samples.push(run_once(model, &base_plan, &ctx)?);
                    eprint_progress.inc(1);
                }
            }
            if let Some(p) = &peers {
                // After a failed round, no more: it would fail the same way every round.
                if llama_rounds
                    .last()
                    .is_none_or(|r| r["peers"]["llama_cpp"].get("error").is_none())
                {
                    eprint_progress.set_message("llama.cpp");
                    let r = eprint_progress.suspend(|| p.run("llamacpp", 1));
                    llama_rounds.push(r.unwrap_or_else(|e| peer_error("llama_cpp", &e)));
                }
            }
        }
        eprint_progress.finish_and_clear();
        if merged.is_some() {
            measured.extend(floor);
        }
        let peers = peers.map(|p| {
            eprintln!("transformers+PEFT peer ({rounds} runs) ...");
            let tf = p
                .run("transformers", rounds)
                .unwrap_or_else(|e| peer_error("transformers_base", &e));
            bench_peers::merge(tf, &llama_rounds, new_tokens)
        });
        // Measured after the scenarios (the probe's buffer would count in their peak RSS).
        let peak_rss_mib = crate::pipeline::peak_rss_mib();
        let lora_bpp = if args.model.lora_f16 || args.model.cuda_lora_bf16 {
            2
        } else {
            4
        };
        let mean_positions = ids.len() + new_tokens / 2;
        let memory = MemoryModel::for_model(&loaded.model, &adapters, lora_bpp, mean_positions);
        if let Some(mem) = &memory {
            for (s, m) in plans.iter().zip(measured.iter_mut()) {
                if let Plan::Fixed { batch: 1, mixes } = &s.plan {
                    m.bytes_per_token = Some(mem.bytes_per_token(&mixes[0]));
                }
            }
        }
        // What the weights are kept as: a GGUF's blocks as the CPU keeps them, or as wgpu's
        // groups of the same values; an HF directory's always as f32.
        let gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let report = Report {
            model: path.display().to_string(),
            sampling: describe_sampling(&sampling),
            backend: loaded.model.backend.name(),
            weights: format!(
                "{}, LoRA {}{}",
                if args.model.wgpu_f16_weights && gguf {
                    "f16 (the GGUF's quantised matrices as groups of their values)"
                } else if args.model.wgpu_f16_weights {
                    "f16"
                } else if args.model.cuda_bf16_compute {
                    "bf16 (bf16 compute)"
                } else if args.model.cuda_bf16_weights {
                    "bf16"
                } else if !(gguf && loaded.model.backend.packed_weights()) || args.model.f32_weights
                {
                    "f32"
                } else {
                    loaded.model.backend.packed_description()
                },
                if args.model.lora_f16 {
                    "f16"
                } else if args.model.cuda_lora_bf16 {
                    "bf16"
                } else {
                    "f32"
                },
                if args.model.cpu_amx {
                    "; several-row matmuls on AMX in bf16"
                } else if args.model.cpu_int8 {
                    "; 8-bit activations, other weights Q8_0"
                } else {
                    ""
                }
            ),
            kernels: loaded.model.backend.kernels(),
            adapters: adapters.len(),
            rank: adapters.iter().map(|a| a.r).max().unwrap_or(0),
            prompt_tokens: ids.len(),
            new_tokens,
            rounds,
            threads: rayon::current_num_threads(),
            measured,
            peers,
            memory,
            peak_rss_mib,
        };
        // The files are written even where the table could not be (a full disk under stdout).
        let printed = report.print();
        if let Some(p) = &args.json {
            crate::output::write_json(p, report.to_json())?;
            eprintln!("wrote {}", p.display());
        }
        if let Some(p) = &args.plot {
            crate::output::write_atomic_with(p, |tmp| bench_report::plot(&report, tmp))?;
            eprintln!("wrote {}", p.display());
        }
        printed
    }
}

/// A peer that could not run, as the peers' JSON reports one.
fn peer_error(name: &str, e: &anyhow::Error) -> Value {
    eprintln!("warning: peer {name}: {e:#}");
    serde_json::json!({"peers": {name: {"error": format!("{e:#}")}}})
}

/// Refuses `--synthetic-adapters n` whose adapters (host f32, and the backend's copy) would
/// not fit the memory free now: 100,000 of rank 16 on SmolLM2 (19.5 MB each) were killed
/// by the kernel at 24 GB. Where free memory is unknown (not Linux), nothing is checked.
fn check_synthetic_memory(
    n: usize,
    cfg: &dlp_engine::ModelConfig,
    rank: usize,
    targets: &[LoraModule],
) -> Result<()> {
    let per_layer: usize = (targets.iter())
        .map(|&m| {
            let (n_in, n_out) = cfg.module_dims(m);
            rank * (n_in + n_out) * 4
        })
        .sum();
    let bytes = (n as u128) * (per_layer as u128) * (cfg.num_layers as u128) * 2;
    let Some(free) = crate::bench_memory::available_bytes() else {
        return Ok(());
    };
    if bytes > u128::from(free) {
        bail!(
            "--synthetic-adapters {n}: about {:.1} GB of adapters at rank {rank} ({:.1} MB each, \
             with the backend's copy), more than the {:.1} GB of memory free",
            bytes as f64 / 1e9,
            bytes as f64 / n.max(1) as f64 / 1e6,
            free as f64 / 1e9
        );
    }
    Ok(())
}
