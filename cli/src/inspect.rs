//! `dlp-run inspect`: what a model directory, GGUF file, adapter, router or safetensors file
//! holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use dlp_engine::loader::gguf::GgufFile;
use dlp_engine::loader::safetensors_dir::{mmap, weight_files};
use dlp_engine::ModelConfig;

use crate::output::outln;

/// Show what a model / GGUF / adapter / router / safetensors file holds.
#[derive(Debug, Args, Clone)]
#[command(override_usage = "dlp-run inspect <PATH>\n       dlp-run inspect --backends")]
pub struct InspectArgs {
    /// An HF model directory, a .gguf file (a model or a llama.cpp LoRA adapter), a PEFT
    /// adapter directory, a router directory (`train-router --out`) or a .safetensors file.
    #[arg(value_name = "PATH", required_unless_present = "backends")]
    pub path: Option<PathBuf>,
    /// List the compute backends this machine offers (and what `--backend auto` picks).
    #[arg(long)]
    pub backends: bool,
}

/// The backends of this build and machine, one per line.
fn backends_text() -> String {
    let mut s = String::from("backends:\n  cpu: always available\n");
    // Changed only by the GPU backends' sections, which a build may leave out.
    #[allow(unused_mut)]
    let mut auto = "cpu";
    #[cfg(feature = "wgpu")]
    {
        // Quiet: Vulkan drivers print warnings of their own while being enumerated.
        let (adapters, lines) =
            crate::stderr::quiet(|| (dlp_wgpu::list_adapters(), dlp_wgpu::describe_adapters()));
        if adapters.is_empty() {
            s += "  wgpu: no adapter (no Vulkan/Metal/DX12 driver; on Linux install mesa-vulkan-drivers)\n";
        }
        for (info, line) in adapters.iter().zip(lines) {
            s += &format!("  wgpu: {line}\n");
            if !dlp_wgpu::is_software(info) {
                auto = "wgpu";
            }
        }
        if adapters.iter().all(dlp_wgpu::is_software) && !adapters.is_empty() {
            s += "        (software adapters are used only with --backend wgpu)\n";
        }
    }
    #[cfg(not(feature = "wgpu"))]
    {
        s += "  wgpu: not in this build (rebuild with `--features wgpu`)\n";
    }
    #[cfg(feature = "cuda")]
    // The device alone: a backend would compile every kernel first. NVRTC's version keys the
    // PTX cache (a cache made elsewhere serves only the same).
    match dlp_cuda::CudaBackend::describe_device(0) {
        Ok(d) => {
            s += &format!("  cuda: {d}\n");
            auto = "cuda";
        }
        Err(e) => s += &format!("  cuda: unavailable ({e})\n"),
    }
    #[cfg(not(feature = "cuda"))]
    {
        s += "  cuda: not in this build (rebuild with `--features cuda`)\n";
    }
    s + &format!("--backend auto picks: {auto}")
}

/// Tensor count, parameters and dtypes of safetensors files (headers only).
fn tensor_table(files: &[PathBuf]) -> Result<String> {
    let mut by_dtype: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut vision = 0;
    for f in files {
        let map = mmap(f)?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file: {e}", f.display()))?;
        let mut ts = st.tensors();
        ts.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, v) in ts {
            let n: usize = v.shape().iter().product();
            if dlp_engine::loader::multimodal::vision_tensor(&name) {
                vision += n;
            }
            let e = by_dtype.entry(format!("{:?}", v.dtype())).or_default();
            e.0 += 1;
            e.1 += n;
            if lines.len() < 12 {
                lines.push(format!("    {name} {:?} {:?}", v.shape(), v.dtype()));
            }
        }
    }
    let total: usize = by_dtype.values().map(|v| v.1).sum();
    let mut s = format!("  parameters: {total} ({:.1} M)", total as f64 / 1e6);
    if vision > 0 {
        s += &format!(
            ", of which {vision} ({:.1} M) in the vision tower and projector (Apertus 1.5: its image and audio tokenizers), which text never reaches (not loaded)",
            vision as f64 / 1e6
        );
    }
    s += "\n";
    for (d, (c, n)) in &by_dtype {
        s += &format!("  {d}: {c} tensors, {n} values\n");
    }
    s += "  first tensors:\n";
    s += &lines.join("\n");
    Ok(s)
}

fn inspect_adapter(dir: &Path) -> Result<String> {
    let cfg_path = dir.join("adapter_config.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)
        .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
    let g = |k: &str| {
        v.get(k)
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut s = format!("PEFT adapter {}\n", dir.display());
    for k in [
        "peft_type",
        "base_model_name_or_path",
        "r",
        "lora_alpha",
        "use_rslora",
        "target_modules",
        "rank_pattern",
        "alpha_pattern",
        "layers_to_transform",
        "use_dora",
        "bias",
        "modules_to_save",
    ] {
        s += &format!("  {k}: {}\n", g(k));
    }
    let st = dir.join("adapter_model.safetensors");
    if st.exists() {
        s += &tensor_table(&[st])?;
    } else {
        s += "  (no adapter_model.safetensors)";
    }
    Ok(s)
}

/// A router directory: labels, sizes, calibration, dev metrics and trainings from
/// `router.json`, then its weights' table; an error for one that would not load.
fn inspect_router(dir: &Path) -> Result<String> {
    use dlp_router::config::WEIGHTS_FILE;
    // Loaded whole (weights against the config, the tokenizer), as routing would.
    let router = dlp_router::Router::load(dir)?;
    let c = router.config();
    let mut s = format!("DLP router {}\n", dir.display());
    s += &format!("  labels ({}): {}\n", c.labels.len(), c.labels.join(", "));
    s += &format!(
        "  tokenizer: {} ({} tokens); reads the first {} tokens of a text\n",
        c.tokenizer, c.vocab_size, c.max_tokens
    );
    let widths: Vec<String> = c.widths().iter().map(usize::to_string).collect();
    s += &format!(
        "  layers: embedding {} x {}, then {} (ReLU between)\n",
        c.vocab_size,
        c.embed_dim,
        widths.join(" -> ")
    );
    // Already divided into the last layer; shown for what calibration did.
    s += &format!("  calibration temperature: {:.3}\n", c.temperature);
    match &c.dev {
        Some(d) => {
            s += &format!("  dev ({}): {d}\n", d.texts());
        }
        None => s += "  dev: not measured\n",
    }
    for t in &c.trainings {
        s += &format!(
            "  training ({}): {} examples, {:.1} s, labels {}\n",
            t.kind,
            t.examples,
            t.seconds,
            t.labels.join(", ")
        );
    }
    s += &format!(
        "  extendable (train-router --extend): {}\n",
        match &c.feature_stats {
            // Its header checked as extending reads the file: a missing or broken one is a
            // "no", with why.
            #[cfg(feature = "train")]
            Some(f) => match crate::router_extend::check_stats_header(dir, &router, f) {
                Ok(_) => format!("yes ({f})"),
                Err(e) => format!("no ({f}: {e:#})"),
            },
            #[cfg(not(feature = "train"))]
            Some(f) => format!("not checked ({f}; this dlp-run was built without `train`)"),
            None => "no (no feature statistics; written before extension existed)".into(),
        }
    );
    s += &format!("  weights ({WEIGHTS_FILE}):\n");
    s += &tensor_table(&[dir.join(WEIGHTS_FILE)])?;
    Ok(s)
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs) -> Result<()> {
    if args.backends {
        outln!("{}", backends_text());
    }
    let Some(p) = &args.path else {
        return Ok(());
    };
    let text = if p.is_dir() && p.join("adapter_config.json").exists() {
        inspect_adapter(p)?
    } else if p.is_dir() && p.join(dlp_router::config::CONFIG_FILE).exists() {
        inspect_router(p)?
    } else if p.is_dir() && p.join(dlp_router::config::WEIGHTS_FILE).exists() {
        // (It had fallen through to the model branch: "config.json: No such file".)
        bail!(
            "{}: {}: missing (the folder holds {}: a router needs both)",
            p.display(),
            dlp_router::config::CONFIG_FILE,
            dlp_router::config::WEIGHTS_FILE
        );
    } else if p.is_dir() && p.join("adapter_model.safetensors").exists() {
        bail!(
            "{}: adapter_config.json: missing (the folder holds adapter_model.safetensors: a PEFT adapter needs both)",
            p.display()
        );
    } else if p.is_dir() {
        // A model this engine cannot run is still described, with the reason (as a GGUF is).
        let described = match ModelConfig::from_hf_dir(p) {
            // How the weights are stored where the tensor table alone would not say what
            // they mean.
            Ok(cfg) => match &cfg.quantization {
                Some(q) => format!(
                    "{}\n  weights: {}, dequantized to f32 at load",
                    config_text(&cfg),
                    q.describe()
                ),
                None => config_text(&cfg),
            },
            Err(e) if p.join("config.json").is_file() => {
                format!("{}\n  not loadable as a model: {e}", raw_config_text(p))
            }
            Err(e) => return Err(e.into()),
        };
        let files = weight_files(p)?;
        format!(
            "HF model {}\n{described}\n  weight files: {}\n{}",
            p.display(),
            files.len(),
            tensor_table(&files)?
        )
    } else if p.extension().is_some_and(|e| e == "safetensors") {
        format!(
            "safetensors file {}\n{}",
            p.display(),
            tensor_table(std::slice::from_ref(p))?
        )
    } else if p.exists() && !p.is_file() {
        // A FIFO would block the read forever; a device is no model.
        bail!(
            "{}: not a regular file or a folder (inspect reads a model folder, a .gguf, an \
             adapter or router folder, or a .safetensors file)",
            p.display()
        );
    } else if p.exists() {
        let g = GgufFile::open(p)?;
        let mut s = g.summary();
        match (dlp_engine::loader::gguf::lora::describe(&g), g.config()) {
            (Some(adapter), _) => s += &format!("\n{adapter}"),
            (None, Ok(c)) => {
                s += &format!("\nmodel config as dlp-run reads it:\n{}", config_text(&c))
            }
            (None, Err(e)) => s += &format!("\nnot loadable as a model: {e}"),
        }
        s
    } else {
        bail!("{}: no such file or directory", p.display());
    };
    outln!("{text}");
    Ok(())
}

/// What a `config.json` this engine does not read says of itself: its model type, classes and
/// sizes (a text-and-image config's text model's too), as far as it holds them.
fn raw_config_text(dir: &Path) -> String {
    let v: serde_json::Value = match std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(v) => v,
        None => return "  config.json: not readable as JSON".into(),
    };
    let field = |v: &serde_json::Value, k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(x) if !x.is_null() => x.to_string(),
        _ => "?".into(),
    };
    // ", 24 layers, hidden 1024, vocabulary 248320", or nothing where it names no size.
    let sizes = |v: &serde_json::Value| {
        let keys = ["num_hidden_layers", "hidden_size", "vocab_size"];
        match keys.map(|k| field(v, k)) {
            [l, h, n] if [&l, &h, &n].iter().any(|x| *x != "?") => {
                format!(", {l} layers, hidden {h}, vocabulary {n}")
            }
            _ => String::new(),
        }
    };
    let mut s = format!(
        "  config.json: model_type {}, architectures {}{}",
        field(&v, "model_type"),
        field(&v, "architectures"),
        sizes(&v)
    );
    if let Some(t) = v.get("text_config").filter(|t| t.is_object()) {
        s += &format!(
            "\n  text_config: model_type {}{}",
            field(t, "model_type"),
            sizes(t)
        );
    }
    s
}

/// The feed-forward's shape and activation, for [`config_text`].
fn mlp_line(c: &ModelConfig) -> &'static str {
    use dlp_engine::config::Activation;
    match (c.arch.gated_mlp(), c.activation) {
        (true, _) => "gated feed-forward",
        (false, Activation::GeluTanh) => "ungated feed-forward (up, GELU's tanh form, down)",
        (false, Activation::GeluErf) => "ungated feed-forward (up, exact GELU, down)",
        (false, Activation::Relu2) => "ungated feed-forward (up, squared ReLU, down)",
        (false, Activation::Xielu) => {
            "ungated feed-forward (up, xIELU with each layer's constants, down)"
        }
        (false, Activation::Silu) => "ungated feed-forward (up, SiLU, down)",
    }
}

/// A model's config in a few indented lines: shape, attention, RoPE, biases, special ids.
fn config_text(c: &ModelConfig) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let windows: Vec<String> = (c.attention_window.iter().enumerate())
        .filter_map(|(l, w)| w.map(|w| format!("{l}:{w}")))
        .collect();
    let window = match windows.len() {
        0 => "full causal attention in every layer".to_string(),
        n if n == c.num_layers && c.attention_window.windows(2).all(|p| p[0] == p[1]) => {
            format!(
                "a sliding window of {} in every layer",
                c.attention_window[0].unwrap_or(0)
            )
        }
        _ => format!("sliding windows (layer:window) {}", windows.join(" ")),
    };
    let pairs = match c.rope_interleaved {
        true => " in adjacent pairs",
        false => "",
    };
    let part = match c.rotary_dim < c.head_dim {
        true => format!(
            " on the first {} of each head's {} dimensions{pairs}",
            c.rotary_dim, c.head_dim
        ),
        false => pairs.to_string(),
    };
    let rope = match &c.rope_scaling {
        Some(r) => format!("RoPE theta {}{part}, {}", c.rope_theta, r.describe()),
        None => match &c.rope_freq_factors {
            Some(f) => format!(
                "RoPE theta {}{part}, frequencies divided by rope_freqs.weight ({} factors, {} to {})",
                c.rope_theta,
                f.len(),
                f.iter().copied().fold(f64::INFINITY, f64::min),
                f.iter().copied().fold(0.0, f64::max),
            ),
            None => format!("RoPE theta {}{part}", c.rope_theta),
        },
    };
    let nope: Vec<String> = (c.rope_layers.iter().enumerate())
        .filter(|(_, r)| !**r)
        .map(|(l, _)| l.to_string())
        .collect();
    let rope = match nope.is_empty() {
        true => rope,
        false => format!("{rope}; NoPE layers (no rotation) {}", nope.join(" ")),
    };
    let rope = match c.local_rope_theta {
        Some(t) if c.attention_window.iter().any(Option::is_some) => {
            format!("{rope}; sliding layers' RoPE theta {t} (unscaled)")
        }
        _ => rope,
    };
    let rope = match c.attn_temperature {
        Some(t) => format!(
            "{rope}; Llama 4's attention temperature: queries x (1 + {} ln(1 + floor(pos / {})))",
            t.beta, t.step
        ),
        None => rope,
    };
    let bos = c.bos_token_id.map_or("none".into(), |b| b.to_string());
    let gemma = match &c.gemma {
        Some(g) => format!(
            "\n  Gemma: {:?} feed-forward, embedding x {}, norms by 1 + w{}{}{}",
            c.activation,
            g.embed_scale,
            if g.sandwich_norms {
                ", norms around attention and feed-forward"
            } else {
                ""
            },
            match g.query_pre_attn_scalar == c.head_dim as f64 {
                true => String::new(),
                false => format!(", scores scaled by {}^-0.5", g.query_pre_attn_scalar),
            },
            match (g.attn_softcap, g.final_softcap) {
                (None, None) => String::new(),
                (a, f) => format!(
                    ", soft caps: attention scores {}, logits {}",
                    a.map_or("none".into(), |a| a.to_string()),
                    f.map_or("none".into(), |f| f.to_string())
                ),
            },
        ),
        None => String::new(),
    };
    let extras = match &c.granite {
        Some(g) => format!(
            "{gemma}\n  Granite: embedding x {}, attention scores x {}{}, each residual branch x {}, logits / {}",
            g.embedding,
            g.attention,
            match g.attention == dlp_engine::backend::AttnShape::head_scale(c.head_dim) {
                true => " (head_dim^-0.5)",
                false => " (not head_dim^-0.5)",
            },
            g.residual,
            g.logits
        ),
        None => gemma,
    };
    let qk_norm = match (
        c.qk_norm,
        c.qk_norm_per_head,
        c.qk_norm_widths().0 == c.head_dim,
    ) {
        (true, true, _) => {
            ", each head's query and key LayerNorm-ed before RoPE, a weight per head"
        }
        (true, false, true) if c.arch.qk_norm_after_rope() => {
            ", each head's query and key RMS-normed after RoPE"
        }
        (true, false, true) => ", each head's query and key RMS-normed before RoPE",
        (true, false, false) => ", the query and key RMS-normed over all heads before RoPE",
        (false, ..) => "",
    };
    // Gemma's line above says its own.
    let extras = match (c.pre_norms(), c.post_norms() && c.gemma.is_none()) {
        (false, _) => format!("{extras}
  norms: none before attention or the feed-forward; each one's output normed before its residual add"),
        (true, true) => format!("{extras}
  norms: before attention and the feed-forward, and each one's output normed before its residual add"),
        (true, false) => extras,
    };
    let extras = match (c.layer_norms(), c.arch.is_cohere()) {
        (true, true) => format!(
            "{extras}\n  Cohere: LayerNorms (no bias); attention and the feed-forward side by side on one normed input, both added to the residual; logits x {}",
            c.logit_scale.map_or("1".into(), |s| s.to_string())
        ),
        (true, false) => {
            let block = match (c.parallel_block(), c.parallel_norms) {
                (true, false) => "attention and the feed-forward side by side on one normed input",
                (true, true) => "attention and the feed-forward side by side, each on its own norm of one input",
                (false, _) => "attention, then the feed-forward",
            };
            let mlp = mlp_line(c);
            let head = match c.head_bias {
                true => "; a bias on the output head",
                false => "",
            };
            let one_plus = match c.norm_weights_less_one() {
                true => " (LayerNorm1P: an HF file's weights stored less one, the 1 added at load)",
                false => "",
            };
            let norms = match c.arch.unweighted_norms() {
                true => "LayerNorms with neither weight nor bias",
                false => "LayerNorms with biases",
            };
            let clamp = c.clip_qkv.map_or(String::new(), |l| {
                format!("; query, key and value clamped to +-{l}")
            });
            format!("{extras}\n  {norms}{one_plus}; {block}; {mlp}{head}{clamp}")
        }
        // Arcee's and Apertus's: RMSNorms around an ungated feed-forward.
        (false, _) if !c.arch.gated_mlp() => format!("{extras}\n  {}", mlp_line(c)),
        (false, _) => extras,
    };
    let norm = match c.layer_norms() {
        true => "LayerNorm",
        false => "RMSNorm",
    };
    format!(
        "  {:?}: {} layers, hidden {}, MLP {}, vocabulary {}, context {}\n  \
         attention: {} query heads, {} key/value heads, head width {}{qk_norm}; {window}\n  \
         {rope}; {norm} epsilon {}\n  \
         lm_head tied to the embedding: {}; biases: q/k/v {}, o {}, MLP {}, lm_head {}\n  \
         BOS id {bos}, end ids {:?}{extras}",
        c.arch,
        c.num_layers,
        c.hidden_size,
        c.intermediate_size,
        match c.input_vocab {
            Some(rows) => format!(
                "{} (the output head's; the embedding's {rows}, ids past the head's inputs only)",
                c.vocab_size
            ),
            None => c.vocab_size.to_string(),
        },
        match c.context_limit() {
            n if n > c.max_position_embeddings => {
                format!(
                    "{n} (max_position_embeddings {}, stretched by its RoPE scaling)",
                    c.max_position_embeddings
                )
            }
            n => n.to_string(),
        },
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.rms_norm_eps,
        yes(c.tie_word_embeddings),
        yes(c.qkv_bias),
        yes(c.o_bias),
        yes(c.mlp_bias),
        yes(c.head_bias),
        c.eos_token_ids,
    )
}
