//! `dlp-run bench` results: medians, ratios, the table, the JSON and the latency plot.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::bench_memory::MemoryModel;
use crate::output::outln;

/// One timed run of a scenario.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds of the steps that carried prompt tokens (plus prompt routing).
    pub prefill_secs: f64,
    /// Prompt tokens over all requests.
    pub prefill_tokens: usize,
    /// Seconds of decode-only steps' forward passes.
    pub decode_secs: f64,
    /// Seconds the host spent picking those steps' tokens from their logit rows.
    pub decode_pick_secs: f64,
    /// Wall seconds of those steps, each whole (the forward pass, the picks and the host's
    /// other work: scheduling, the plan, the token callbacks).
    pub decode_wall_secs: f64,
    /// Tokens sampled in decode-only steps, over all requests.
    pub decode_tokens: usize,
    /// Time between consecutive tokens of request 0, once every request of the batch has its
    /// first token (decode steps only).
    pub token_latencies: Vec<f64>,
}

/// Every sample of one scenario.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Row name.
    pub name: String,
    /// Adapters per mixture (0 for the base model and for `routed`, whose router chooses
    /// them per sentence: see [`Measured::fixed_k`]).
    pub k: usize,
    /// Requests side by side.
    pub batch: usize,
    /// One per round.
    pub samples: Vec<Sample>,
    /// Bytes one decode step reads for this sequence, where known (CPU, batch 1, a fixed
    /// mixture: [`MemoryModel::bytes_per_token`]).
    pub bytes_per_token: Option<u64>,
}

/// A table cell: `v` with `precision` decimals, or `-` where there is no figure (`NaN`).
fn figure(v: f64, precision: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.precision$}")
    }
}

/// The median (`NaN` when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

impl Measured {
    /// An empty record.
    pub fn new(name: &str, k: usize, batch: usize) -> Self {
        Measured {
            name: name.into(),
            k,
            batch,
            samples: Vec::new(),
            bytes_per_token: None,
        }
    }

    /// Adapters per mixture, where the scenario fixes them (None for `routed`: the router
    /// chooses per sentence).
    pub fn fixed_k(&self) -> Option<usize> {
        (self.name != "routed").then_some(self.k)
    }

    /// Bytes per second the median decode reads, GB/s, where the bytes are known.
    pub fn decode_gbs(&self) -> Option<f64> {
        Some(self.bytes_per_token? as f64 * self.decode_tps() / 1e9)
    }

    /// Median decode throughput, tokens/s over all requests.
    pub fn decode_tps(&self) -> f64 {
        median(
            self.samples
                .iter()
                .map(|s| s.decode_tokens as f64 / s.decode_secs)
                .collect(),
        )
    }

    /// The median over rounds of `secs` of a round's decode steps, per step (per token of one
    /// sequence).
    fn per_step(&self, secs: impl Fn(&Sample) -> f64) -> f64 {
        median(
            self.samples
                .iter()
                .map(|s| secs(s) * self.batch as f64 / s.decode_tokens as f64)
                .collect(),
        )
    }

    /// Median decode seconds per step (per token of one sequence): the forward pass.
    pub fn decode_step_secs(&self) -> f64 {
        self.per_step(|s| s.decode_secs)
    }

    /// Median seconds a decode step spent picking its tokens on the host.
    pub fn pick_step_secs(&self) -> f64 {
        self.per_step(|s| s.decode_pick_secs)
    }

    /// Median seconds of a decode step's host work besides the forward pass and the picks
    /// (scheduling, the step's plan, the token callbacks): the GPU's idle time between
    /// steps, where the step's work does not overlap it.
    pub fn host_step_secs(&self) -> f64 {
        self.per_step(|s| s.decode_wall_secs - s.decode_secs - s.decode_pick_secs)
    }

    /// Median decode throughput by the wall clock, tokens/s over all requests: each decode
    /// step's whole wall time ([`Self::decode_tps`] counts the forward passes only).
    pub fn decode_wall_tps(&self) -> f64 {
        median(
            self.samples
                .iter()
                .map(|s| s.decode_tokens as f64 / s.decode_wall_secs)
                .collect(),
        )
    }

    /// Median prefill throughput, tokens/s.
    pub fn prefill_tps(&self) -> f64 {
        median(
            self.samples
                .iter()
                .map(|s| s.prefill_tokens as f64 / s.prefill_secs)
                .collect(),
        )
    }

    /// Per-token latency of request 0 at quantile `q` over all rounds, seconds.
    pub fn latency(&self, q: f64) -> f64 {
        quantile(
            self.samples
                .iter()
                .flat_map(|s| s.token_latencies.iter().copied())
                .collect(),
            q,
        )
    }
}

/// A whole bench run.
#[derive(Debug)]
pub struct Report {
    /// Model path.
    pub model: String,
    /// How tokens were picked, in words (`greedy`, `temperature 1, top-p 0.9`).
    pub sampling: String,
    /// Backend name.
    pub backend: String,
    /// How the weights are stored.
    pub weights: String,
    /// The kernel set that ran ([`dlp_engine::backend::Backend::kernels`]), where the backend
    /// picks one.
    pub kernels: Option<String>,
    /// Adapters loaded.
    pub adapters: usize,
    /// Their largest rank.
    pub rank: usize,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// New tokens per request.
    pub new_tokens: usize,
    /// Rounds.
    pub rounds: usize,
    /// Threads.
    pub threads: usize,
    /// Every scenario.
    pub measured: Vec<Measured>,
    /// The peers' JSON (from peers.py), if run.
    pub peers: Option<Value>,
    /// Bytes per token and streaming bandwidth (CPU runs).
    pub memory: Option<MemoryModel>,
    /// Peak RSS of the scenarios (before the bandwidth probe), MiB.
    pub peak_rss_mib: Option<f64>,
}

impl Report {
    fn get(&self, name: &str) -> Option<&Measured> {
        self.measured.iter().find(|m| m.name == name)
    }

    fn step_ratio(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.get(a)?.decode_step_secs() / self.get(b)?.decode_step_secs())
    }

    /// The headline ratios (decode time ratios: > 1 means the first is slower).
    pub fn ratios(&self) -> serde_json::Map<String, Value> {
        let mut r = serde_json::Map::new();
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                r.insert(k.into(), json!(v));
            }
        };
        put("fused3_over_single", self.step_ratio("fused3", "single"));
        put("fused3_over_base", self.step_ratio("fused3", "base"));
        put("single_over_base", self.step_ratio("single", "base"));
        for k in [2, 5, 8] {
            put(
                &format!("fused{k}_over_single"),
                self.step_ratio(&format!("fused{k}"), "single"),
            );
        }
        put(
            "token_level_over_sentence_level",
            self.step_ratio("token_level", "fused3"),
        );
        put("routed_over_fused3", self.step_ratio("routed", "fused3"));
        put(
            "fused3_over_merged3",
            self.step_ratio("fused3", "merged3_f32").and_then(|x| {
                // Merged runs on f32 weights: compare like with like through the f32 base.
                Some(x / self.step_ratio("base", "base_f32")?)
            }),
        );
        put(
            "merged3_f32_over_base_f32",
            self.step_ratio("merged3_f32", "base_f32"),
        );
        if let (Some(b32), Some(b1)) = (self.get("batch32"), self.get("fused3")) {
            put(
                "batch32_over_batch1_throughput",
                Some(b32.decode_tps() / b1.decode_tps()),
            );
        }
        if let Some(p) = &self.peers {
            let tps = |peer: &str| p["peers"][peer]["decode_tokens_per_s"].as_f64();
            let ours = |n: &str| self.get(n).map(|m| m.decode_tps());
            if let (Some(o), Some(t)) = (ours("fused3"), tps("transformers_peft")) {
                put("dlp_fused3_over_transformers_peft_decode", Some(o / t));
            }
            if let (Some(o), Some(t)) = (ours("base"), tps("transformers_base")) {
                put("dlp_base_over_transformers_base_decode", Some(o / t));
            }
            if let (Some(o), Some(t)) = (ours("base"), tps("llama_cpp")) {
                put("dlp_base_over_llama_cpp_decode", Some(o / t));
            }
        }
        r
    }

    /// The table on stdout; an error where stdout cannot be written.
    pub fn print(&self) -> anyhow::Result<()> {
        outln!(
            "dlp-run bench: {} on {} (weights: {}), {} adapter{} (rank {}{}), prompt {} tokens, {} new tokens ({}), {} rounds, {} threads",
            self.model, self.backend, self.weights, self.adapters,
            if self.adapters == 1 { "" } else { "s" },
            // The largest, where the adapters' ranks differ (loaded ones beside synthetic).
            if self.adapters > 1 { "up to " } else { "" },
            self.rank, self.prompt_tokens,
            self.new_tokens, self.sampling, self.rounds, self.threads
        );
        if let Some(k) = &self.kernels {
            outln!("kernels: {k}");
        }
        outln!(
            "{:<14} {:>3} {:>5} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9}",
            "scenario",
            "K",
            "batch",
            "prefill t/s",
            "decode t/s",
            "lat50 ms",
            "lat90 ms",
            "pick ms",
            "host ms",
            "step/base"
        );
        let base = self.get("base").map(|b| b.decode_step_secs());
        let mut no_latency = false;
        for m in &self.measured {
            let rel = base.map_or(f64::NAN, |b| m.decode_step_secs() / b);
            let (lat50, lat90) = (m.latency(0.5), m.latency(0.9));
            no_latency |= lat50.is_nan();
            outln!(
                "{:<14} {:>3} {:>5} {:>11} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9}",
                m.name,
                m.fixed_k().map_or("-".into(), |k| k.to_string()),
                m.batch,
                figure(m.prefill_tps(), 1),
                figure(m.decode_tps(), 1),
                figure(lat50 * 1e3, 2),
                figure(lat90 * 1e3, 2),
                figure(m.pick_step_secs() * 1e3, 3),
                figure(m.host_step_secs() * 1e3, 3),
                figure(rel, 3)
            );
        }
        if no_latency {
            outln!("(lat -: fewer than two of request 0's tokens were timed while its whole batch decoded; give more --new-tokens)");
        }
        match base {
            // A batch row's step decodes its whole batch, so its ratio is not per token.
            Some(_) => outln!("(step/base: the decode step's time over base's, > 1 = slower; a step decodes the row's whole batch)"),
            None => outln!("(step/base -: the run has no base scenario to compare with)"),
        }
        if let Some(p) = &self.peers {
            for (name, v) in p["peers"].as_object().into_iter().flatten() {
                match v["decode_tokens_per_s"].as_f64() {
                    Some(t) => outln!(
                        "peer {name:<20} decode {t:>8.1} t/s  prefill {} s",
                        figure(v["prefill_secs"].as_f64().unwrap_or(f64::NAN), 3)
                    ),
                    None => outln!("peer {name:<20} {}", v["error"]),
                }
            }
        }
        if let Some(mem) = &self.memory {
            outln!("{}", mem.describe());
            let mut past_probe = false;
            for m in &self.measured {
                if let (Some(b), Some(gbs)) = (m.bytes_per_token, m.decode_gbs()) {
                    let share = 100.0 * gbs / mem.bandwidth_gbs;
                    past_probe |= share > 100.0;
                    outln!(
                        "  {:<14} {:>7.1} MB/token {:>6.1} GB/s  {:>3.0}% of {}",
                        m.name,
                        b as f64 / 1e6,
                        gbs,
                        share,
                        mem.probe_name()
                    );
                }
            }
            if past_probe {
                outln!(
                    "(a share past 100%: the {} probe read less than decode steps did, most often because other work slowed the probe on a busy machine; these shares are unreliable in this run)",
                    mem.probe_name()
                );
            }
        }
        let ratios = self.ratios();
        if ratios.is_empty() {
            outln!("ratios: none (the run measured no pair of scenarios they compare, e.g. fused3 and base)");
        } else {
            outln!("ratios (decode time; > 1 = slower):");
        }
        for (k, v) in ratios {
            outln!("  {k:<44} {}", figure(v.as_f64().unwrap_or(f64::NAN), 3));
        }
        if let Some(rss) = self.peak_rss_mib {
            outln!("peak RSS {rss:.0} MiB (whole process, every model of the run)");
        }
        Ok(())
    }

    /// Everything as JSON.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .measured
            .iter()
            .map(|m| {
                json!({
                    "name": m.name, "k": m.fixed_k(), "batch": m.batch,
                    "prefill_tokens_per_s": m.prefill_tps(), "decode_tokens_per_s": m.decode_tps(),
                    "decode_step_ms": m.decode_step_secs() * 1e3,
                    "decode_pick_ms_per_step": m.pick_step_secs() * 1e3,
                    "decode_host_ms_per_step": m.host_step_secs() * 1e3,
                    "decode_wall_tokens_per_s": m.decode_wall_tps(),
                    "latency_ms_median": m.latency(0.5) * 1e3, "latency_ms_p90": m.latency(0.9) * 1e3,
                    "rounds": m.samples.len(),
                    "decode_mb_per_token": m.bytes_per_token.map(|b| b as f64 / 1e6),
                    "decode_gbs": m.decode_gbs(),
                })
            })
            .collect();
        json!({
            "model": self.model, "sampling": self.sampling, "backend": self.backend, "weights": self.weights, "kernels": self.kernels,
            "adapters": self.adapters, "rank": self.rank, "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens, "rounds": self.rounds, "threads": self.threads,
            "peak_rss_mib": self.peak_rss_mib,
            "memory": self.memory.as_ref().map(MemoryModel::to_json),
            "scenarios": rows, "ratios": self.ratios(), "peers": self.peers,
        })
    }
}

/// A router of the paper's size with random weights, labels = `names`: costs what a trained
/// one costs, for the token-level scenario when no `--router` is given.
pub fn random_router(tok: tokenizers::Tokenizer, names: &[String]) -> dlp_router::Router {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (dim, hidden) = (96, vec![384, 384, 192]);
    let vocab = tok.get_vocab_size(true);
    let mut widths = vec![dim];
    widths.extend(&hidden);
    widths.push(names.len());
    let mut u = |n: usize, s: f32| (0..n).map(|_| rng.random_range(-s..s)).collect::<Vec<_>>();
    let embed = u(vocab * dim, 0.1);
    let layers = widths
        .windows(2)
        .map(|w| dlp_router::model::Dense {
            inputs: w[0],
            outputs: w[1],
            weight: u(w[0] * w[1], 1.0 / (w[0] as f32).sqrt()),
            bias: u(w[1], 0.01),
        })
        .collect();
    let weights = dlp_router::RouterWeights {
        vocab,
        dim,
        embed,
        layers,
    };
    let config = dlp_router::RouterConfig {
        format: dlp_router::config::FORMAT.into(),
        labels: names.to_vec(),
        tokenizer: "(model tokenizer)".into(),
        vocab_size: vocab,
        embed_dim: dim,
        num_params: weights.num_params(),
        hidden,
        max_tokens: 256,
        temperature: 1.0,
        dev: None,
        training: None,
        trainings: Vec::new(),
        feature_stats: None,
    };
    dlp_router::Router::from_parts(config, tok, weights)
}

/// Per-token decode latency (median) against the number of fused adapters, with the base
/// and single-LoRA levels, as a PNG.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    use dlp_router::heatmap::draw_text;
    use plotters::prelude::*;
    let pts: Vec<(usize, f64)> = std::iter::once(report.get("single"))
        .chain(
            report
                .measured
                .iter()
                .filter(|m| m.name.starts_with("fused"))
                .map(Some),
        )
        .flatten()
        .map(|m| (m.k, m.latency(0.5) * 1e3))
        .collect();
    if pts.is_empty() {
        bail!("--plot: no fused scenarios were measured");
    }
    let base = report.get("base").map(|m| m.latency(0.5) * 1e3);
    let (w, h, l, t, r, b) = (720i32, 440i32, 70i32, 40i32, 20i32, 50i32);
    let kmax = pts.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let ymax = pts.iter().map(|p| p.1).chain(base).fold(0.0, f64::max) * 1.15;
    let px = |k: f64| l + ((k - 0.5) / (kmax) * (w - l - r) as f64) as i32;
    let py = |y: f64| h - b - (y / ymax * (h - t - b) as f64) as i32;
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    let e = |x: String| anyhow::anyhow!("drawing {}: {x}", path.display());
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let axis = vec![(l, t), (l, h - b), (w - r, h - b)];
    root.draw(&PathElement::new(axis, BLACK))
        .map_err(|x| e(x.to_string()))?;
    if let Some(bl) = base {
        root.draw(&PathElement::new(
            vec![(l, py(bl)), (w - r, py(bl))],
            RGBColor(150, 150, 150),
        ))
        .map_err(|x| e(x.to_string()))?;
        draw_text(
            &root,
            w - r - 140,
            py(bl) - 12,
            &format!("base {bl:.1} ms"),
            &RGBColor(100, 100, 100),
            false,
        )
        .map_err(e)?;
    }
    let line: Vec<(i32, i32)> = pts.iter().map(|&(k, y)| (px(k as f64), py(y))).collect();
    root.draw(&PathElement::new(line.clone(), BLUE.stroke_width(2)))
        .map_err(|x| e(x.to_string()))?;
    for (&(k, y), &(x, yy)) in pts.iter().zip(&line) {
        root.draw(&Circle::new((x, yy), 4, BLUE.filled()))
            .map_err(|x| e(x.to_string()))?;
        draw_text(&root, x - 12, yy - 16, &format!("{y:.1}"), &BLUE, false).map_err(e)?;
        draw_text(&root, x - 4, h - b + 8, &k.to_string(), &BLACK, false).map_err(e)?;
    }
    for frac in [0.25, 0.5, 0.75, 1.0] {
        let y = ymax / 1.15 * frac;
        draw_text(&root, 8, py(y) - 4, &format!("{y:.1}"), &BLACK, false).map_err(e)?;
    }
    draw_text(
        &root,
        l,
        12,
        &format!(
            "decode latency per token (median ms) vs fused adapters K - {}",
            report.backend
        ),
        &BLACK,
        false,
    )
    .map_err(e)?;
    draw_text(
        &root,
        w / 2 - 80,
        h - 20,
        "adapters fused (K)",
        &BLACK,
        false,
    )
    .map_err(e)?;
    root.present().map_err(|x| e(x.to_string()))
}
