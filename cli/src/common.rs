//! What every subcommand shares: the model/adapter/backend flags, loading, mixtures.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::ModelFiles;
use dlp_engine::model::Model;
use dlp_engine::tokenizer::TextTokenizer;
use dlp_engine::Backend;

use crate::output::Inputs;
pub use crate::select_backend::{with_backend, WithBackend};

/// Where the default model is looked for, relative to the working directory: the copy that
/// `scripts/fetch-smollm2.sh` installs, then the shared fixtures beside a checkout.
const DEFAULT_MODELS: [&str; 2] = [
    "models/SmolLM2-135M-Instruct.Q4_1.gguf",
    "../shared/fixtures/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
];

/// Which compute backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best available: cuda, then a hardware wgpu adapter, then cpu.
    Auto,
    /// The CPU reference backend (f32, rayon threads).
    Cpu,
    /// wgpu / WGSL compute shaders (Vulkan, Metal, DX12).
    Wgpu,
    /// NVIDIA CUDA (NVRTC kernels + cuBLAS).
    Cuda,
}

/// A CUDA path written without a GPU (`--cuda-experimental`), off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CudaExperimental {
    /// Decode matmuls on bf16 weights streamed with 16-byte loads; q/k/v, gate/up as one launch
    /// (needs --cuda-bf16-weights or --cuda-bf16-compute to matter).
    DecodeMatvec,
    /// With decode-matvec: the LoRA of q/k/v (gate/up, ...) in two launches, expands in the
    /// matvec. Passed on an H200, its entry table with the tiny models.
    FusedLora,
    /// Small ops of decode steps (norms, KV store) on grids that fill the GPU.
    WideGrids,
    /// Attention of decode steps split over positions (flash-decoding), for long contexts.
    SplitAttention,
    /// Decode steps captured as CUDA graphs and replayed.
    Graphs,
    /// LoRA of batches and prefill on TF32 tensor cores, tokens in tiles of 16 (sm_80 or newer).
    Sgmv,
    /// Each residual add and the RMSNorm after it in one launch.
    FusedNorm,
    /// The queries' and keys' rotary embedding in one launch.
    FusedRope,
    /// Decode steps store their keys and values inside the attention kernel.
    FusedKvStore,
    /// With fused-lora, sm_90 or newer: each LoRA matvec starts while its shrink runs (a
    /// dependent launch).
    FusedShrink,
    /// With decode-matvec, sm_90 or newer: each decode matvec starts its weight loads while the
    /// kernel before it finishes.
    DependentLaunch,
    /// Decode steps decode-matvec does not take: a q/k/v or gate/up group's LoRA in two
    /// launches. Passed on an H200 (tiny models).
    BatchLora,
    /// With fused-lora: each group's LoRA shrink runs in its matvec's grid, no launch of its
    /// own; replaces fused-shrink. Passed on an H200 (tiny
    /// models); measured slower there than without it (7B: 3 adapters 7.3 ms a step, 5.9 without).
    InlineShrink,
    /// LoRA of prefill and batches over tiles of 8 tokens on CUDA cores, a row read once per
    /// tile; replaces sgmv. Passed on an H200 (tiny models).
    TiledLora,
    /// With split-attention: the last split block of each head merges the splits, no combine
    /// launch. Passed on an H200 (tiny models).
    InlineCombine,
    /// With fused-kv-store: decode steps rotate q and k inside attention, no rope launch.
    /// Passed on an H200 (tiny models).
    RopeInAttention,
    /// With decode-matvec: the gate/up matvec stores silu(gate) * up, no silu_mul launch.
    /// Passed on an H200 (tiny models).
    FusedSilu,
    /// With decode-matvec: the o and down matvecs of 1-2 tokens add the residual and norm it,
    /// no add_rms_norm launch. Passed on an H200 (tiny models).
    /// With fused-silu, measured slower there (7B base decode 226 tok/s, 257 without both).
    NormInMatvec,
    /// serve's prefix sharing: a prompt that starts as a running one's copies its KV rows on
    /// the GPU instead of computing them. Passed on an H200 (tiny models).
    KvCopy,
    /// With fused-lora: a decode step's LoRA around the plain matvec (one shrink launch before
    /// it, one expand launch after it) instead of in its epilogue; replaces inline-shrink and
    /// the silu/norm folds for LoRA groups. Passed on an H200 (tiny models); there 3 fused
    /// adapters took 5.0 ms a 7B step, 5.5 with the expands in the matvec.
    ExpandLaunch,
    /// With expand-launch and dependent-launch, sm_90 or newer: each LoRA group's shrink and
    /// expand are dependent launches that load their adapter rows before waiting. Not yet run
    /// on a GPU (so not in fast).
    LoraPrefetch,
    /// Greedy steps pick their tokens on the GPU and download a value per row instead of the
    /// logit rows (513 KB a token on Llama 3's vocabulary); the same tokens. Not yet run on a
    /// GPU (so not in fast).
    DeviceArgmax,
    /// Steps that sample at a temperature alone (no top-k, top-p, min-p, bias or penalty) draw
    /// their tokens on the GPU from the host sampler's draws and download a value per row; the
    /// same tokens, bit for bit. Not yet run on a GPU (so not in fast).
    DeviceSampling,
    /// Each step's plan goes to the GPU in one host-to-device copy instead of up to eight
    /// (packed on the host); the same values. Not yet run on a GPU (so not in fast).
    PackedUpload,
    /// Every path above but fused-silu, norm-in-matvec and inline-shrink, which measured
    /// slower on an H200, and lora-prefetch, device-argmax, device-sampling and packed-upload,
    /// not yet run on one: the fastest
    /// set measured there (7B: base decode 257 tok/s, 3 fused adapters 200 tok/s; with all,
    /// 226 and 198).
    Fast,
    /// Every path above.
    All,
}

impl CudaExperimental {
    /// The paths `fast` leaves out: the first three each measured slower on an H200 than
    /// without it; lora-prefetch, device-argmax, device-sampling and packed-upload have not run
    /// on a GPU yet.
    const LEFT_OUT_OF_FAST: [CudaExperimental; 7] = [
        CudaExperimental::FusedSilu,
        CudaExperimental::NormInMatvec,
        CudaExperimental::InlineShrink,
        CudaExperimental::LoraPrefetch,
        CudaExperimental::DeviceArgmax,
        CudaExperimental::DeviceSampling,
        CudaExperimental::PackedUpload,
    ];

    /// Whether this name turns `path` on: itself, `all`, or `fast` for a path it keeps.
    fn turns_on(self, path: CudaExperimental) -> bool {
        self == path
            || self == CudaExperimental::All
            || (self == CudaExperimental::Fast && !Self::LEFT_OUT_OF_FAST.contains(&path))
    }
}

impl ModelArgs {
    /// The `--cuda-*` flags given, for messages: `--backend cuda --cuda-bf16-compute ...`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn cuda_flags(&self) -> String {
        let mut f = String::from("--backend cuda");
        for (on, flag) in [
            (self.cuda_bf16_weights, " --cuda-bf16-weights"),
            (self.cuda_bf16_compute, " --cuda-bf16-compute"),
            (self.cuda_lora_bf16, " --cuda-lora-bf16"),
            (self.cuda_kv_bf16, " --cuda-kv-bf16"),
        ] {
            if on {
                f += flag;
            }
        }
        if !self.cuda_experimental.is_empty() {
            let names: Vec<String> = self
                .cuda_experimental
                .iter()
                .filter_map(|e| e.to_possible_value().map(|v| v.get_name().to_string()))
                .collect();
            f += &format!(" --cuda-experimental {}", names.join(","));
        }
        f
    }

    /// Whether `--cuda-experimental` turns on `path` (directly, or through `all` or `fast`).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn cuda_experimental_on(&self, path: CudaExperimental) -> bool {
        self.cuda_experimental.iter().any(|&e| e.turns_on(path))
    }
}

/// `--help`'s section for the backend flags, after the command's own options.
const BACKEND_HEADING: &str = "Backend";
/// `--help`'s section for the CUDA backend's flags, last: the longest, for one backend.
const CUDA_HEADING: &str = "CUDA backend";

/// Model, adapters and backend.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// The base model: an HF directory (config.json + safetensors) or a .gguf file (a
    /// tokenizer.json beside it is used if present). Default: $DLP_MODEL, else
    /// models/SmolLM2-135M-Instruct.Q4_1.gguf (run scripts/fetch-smollm2.sh), else
    /// $DLP_FIXTURES/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, else
    /// ../shared/fixtures/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
    #[arg(long, short = 'm', value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Load a LoRA adapter under a name (repeatable): `--adapter math=adapters/gsm8k`. A PEFT
    /// folder (adapter_config.json, adapter_model.safetensors) or a llama.cpp LoRA GGUF
    /// (convert_lora_to_gguf.py's; scaled as llama.cpp scales it: adapter.lora.alpha / r). All
    /// loaded adapters sit side by side, and each request chooses its mixture of them: `--mix` or
    /// the router in generate, `--mix` in score, the request's `model` or `lora_mixture` in serve, the mode
    /// in eval, the scenario in bench. NAME: 1 to 128 characters, no whitespace, `,` or `=` (as
    /// the server's /v1/load_lora_adapter takes them; serve also refuses `auto`, the router, and
    /// the base model's name).
    #[arg(long = "adapter", value_name = "NAME=PATH")]
    pub adapters: Vec<String>,
    /// llama.cpp's `--lora FILE` (hidden): refused, saying how it is written here.
    #[arg(long = "lora", hide = true, value_name = "FILE")]
    pub llama_cpp_lora: Vec<String>,
    /// llama.cpp's `--lora-scaled FILE SCALE` (hidden): refused as `--lora` is.
    #[arg(long = "lora-scaled", hide = true, num_args = 2, value_names = ["FILE", "SCALE"])]
    pub llama_cpp_lora_scaled: Vec<String>,
    /// Compute backend.
    #[arg(long, help_heading = BACKEND_HEADING, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// CPU threads (default: all cores; at most 4 per core).
    #[arg(long, help_heading = BACKEND_HEADING, value_name = "N")]
    pub threads: Option<usize>,
    /// Load every weight as f32 (4 bytes per parameter; the reference path).
    ///
    /// By default the CPU backend keeps a GGUF's compact blocks (Q4_0/Q4_K 0.5625, Q4_1 0.625,
    /// Q5_K 0.69, Q6_K 0.82, Q8_0 1.0625, F16/BF16 2 bytes per parameter; Q2_K, Q3_K, Q5_0,
    /// Q5_1, IQ4_NL, IQ4_XS likewise) and dequantises them inside its matmuls; the wgpu backend
    /// keeps the quantised kinds as groups of the same values (5-10 bits per parameter: Q4_K
    /// 6, Q6_K 10, Q8_0 9) and decodes them in its shaders.
    #[arg(long, help_heading = BACKEND_HEADING)]
    pub f32_weights: bool,
    /// With --backend wgpu: store the large weights as f16 (half the memory of f32).
    ///
    /// The large weights are the matmul weights, lm_head and the embedding table; activations,
    /// accumulation, KV cache, LoRA and norms stay f32. A GGUF's quantised matrices stay
    /// quantised either way (the same values as on the CPU); this rounds the f32, f16 and bf16
    /// ones. Needs an adapter with shader-f16 (an error otherwise). Tolerance: logits differ
    /// from the float64 reference by the weights' rounding, measured up to 2.6e-3 on a tiny
    /// f32 model (tested bound 1e-2; f32 weights: 2e-3).
    #[arg(long, help_heading = BACKEND_HEADING, conflicts_with = "f32_weights")]
    pub wgpu_f16_weights: bool,
    /// With --backend cuda: store the 2-D weights in bf16 (half the memory and bytes of f32).
    ///
    /// The 2-D weights are the matmul weights, lm_head and the embedding table; activations,
    /// accumulation, KV cache, LoRA and norms stay f32. Tolerance: logits differ from the float64
    /// reference by the weights' rounding to bf16 (8 bits of mantissa), which the CPU backend
    /// measures on the same rounded weights (see `tests/tests/golden_cpu.rs::bf16_weights`).
    #[arg(long, help_heading = CUDA_HEADING, conflicts_with = "f32_weights")]
    pub cuda_bf16_weights: bool,
    /// With --backend cuda: the bf16 compute mode, as production engines run.
    ///
    /// Weights stored in bf16 (as --cuda-bf16-weights), and every base matmul and the lm_head round
    /// their inputs to bf16 with f32 accumulation; products of more than 8 rows (prefill, batches)
    /// run on tensor cores through cublasGemmEx. LoRA, attention, norms and the KV cache stay f32.
    /// Tolerance: logits differ from the float64 reference by up to 3.7e-2 on the tiny test models
    /// and 3.4e-1 on SmolLM2-135M, measured on the CPU with the same rounding (tested bounds 8e-2
    /// and 0.7; bf16 weights alone: 3.0e-2 and 1.44e-1). Its tests pass on an H200
    /// (scripts/gpu-check.sh).
    #[arg(long, help_heading = CUDA_HEADING, conflicts_with = "f32_weights")]
    pub cuda_bf16_compute: bool,
    /// With --backend cuda: store LoRA A and B in bf16 (half each adapter's memory and bytes).
    ///
    /// The shrink and expand read them into f32. Tolerance: logits differ from the float64
    /// reference by the adapters' rounding, measured on the CPU with the same rounding (up to
    /// 6.9e-3 on the tiny test models, 1.15e-2 on SmolLM2-135M with its task adapters; tested
    /// bounds 1.5e-2 and 2.5e-2). Its tests pass on an H200 (scripts/gpu-check.sh).
    #[arg(long, help_heading = CUDA_HEADING)]
    pub cuda_lora_bf16: bool,
    /// With --backend cuda: store the KV cache in bf16 (half its memory and bytes).
    ///
    /// Twice the sequences or context fit in the same memory, and attention reads half the bytes,
    /// which at long contexts rival the weights'. Keys and values are rounded when stored;
    /// attention reads them back exactly and computes in f32. Tolerance, measured on the CPU with
    /// the same rounding: up to 1.25e-2 on the tiny test models, 1.5e-1 on SmolLM2-135M (bf16
    /// weights alone: 1.44e-1); tested bounds 2.5e-2 and 0.3. Its tests pass on an H200
    /// (scripts/gpu-check.sh).
    #[arg(long, help_heading = CUDA_HEADING)]
    pub cuda_kv_bf16: bool,
    /// With --backend cuda: turn on optional faster GPU paths (`fast`: the fastest verified set).
    ///
    /// These are off by default until a GPU run has verified them (scripts/gpu-check.sh). A
    /// comma-separated list of the paths below, `fast` or `all`. Every path but lora-prefetch,
    /// device-argmax, device-sampling and packed-upload (not yet run on a GPU) passed every CUDA
    /// test on an H200, alone and all together (the latest ones
    /// on the tiny test models only). With --cuda-bf16-compute on a model of Llama-2-7B's shape
    /// there: `fast` decoded 257 tok/s (3 fused adapters: 200), `all` 226 (198), none of them 143.
    /// fused-norm, fused-rope, fused-kv-store, inline-combine, rope-in-attention, fused-silu and
    /// norm-in-matvec fold a launch into another and are tested to give the unfused kernels' values
    /// bit for bit; fused-shrink, dependent-launch and graphs change only how the same kernels are
    /// launched; inline-shrink gives fused-lora's values bit for bit, and lora-prefetch
    /// expand-launch's (both checked on the CPU emulator); the others add in another order (tested
    /// within the f32 tolerance, 2e-3; expand-launch, which needs bf16 weights, within the bf16
    /// compute mode's bound), and sgmv also rounds to TF32 (logits move by up to 3.2e-3 on SmolLM2
    /// with its task adapters, measured on the CPU); kv-copy turns serve's prefix sharing on for
    /// CUDA (KV rows copied, not computed: the values a full prompt's computation gives, within
    /// float rounding); device-argmax picks greedy tokens on the GPU by the host sampler's rule
    /// (the same tokens, tested on the CPU emulator), device-sampling draws a temperature's tokens
    /// there from the host sampler's draws (the same tokens, bit for bit, tested on the CPU
    /// emulator); packed-upload copies each step's plan in one transfer instead of up to eight (the
    /// same values; its layout tested on the CPU). README.md's Backends section describes each
    /// path.
    #[arg(long, help_heading = CUDA_HEADING, value_enum, value_delimiter = ',',
          value_name = "PATHS")]
    pub cuda_experimental: Vec<CudaExperimental>,
    /// With --backend cpu: store LoRA A and B in f16 (half each adapter's memory and bytes).
    ///
    /// Half the bytes each fused adapter adds to a decode step; the base weights are unaffected.
    /// Tolerance: the adapters' values are rounded (relative error about 2e-4 on the SmolLM2 task
    /// adapters); logits differ from the float64 reference by up to 2.0e-3 on the fixtures (tested
    /// bound 5e-3; f32 LoRA: 2e-3).
    #[arg(long, help_heading = BACKEND_HEADING)]
    pub lora_f16: bool,
    /// With --backend cpu: bf16 matmuls of several rows on the AMX unit (Sapphire Rapids+).
    ///
    /// On CPUs with AMX-BF16 (Intel Sapphire Rapids and later), runs the matmuls and the LoRA pair
    /// of several rows (batches, prefill) on the AMX tile unit, inputs, weights and adapters
    /// rounded to bf16, f32 accumulation; one-row decode stays f32. Faster prefill and batches;
    /// logits move by the bf16 rounding (up to 3.7e-1 on SmolLM2, tested bound 0.7; f32: 2e-3).
    #[arg(long, help_heading = BACKEND_HEADING)]
    pub cpu_amx: bool,
    /// With --backend cpu: 8-bit activations with integer dot products, as llama.cpp's.
    ///
    /// The dot products use AVX2, AVX-VNNI or AVX-512 VNNI, picked at run time. Each matmul's
    /// input rows are quantised per block of 32 (scales in f32; llama.cpp's in f16) and meet the
    /// GGUF's Q4_0/Q4_1/Q8_0 blocks, as llama.cpp's do; other 2-D weights (f32, F16, BF16, Q5,
    /// k-quant, IQ4; the embedding table and a tied head too) are quantised to Q8_0 at load,
    /// where llama.cpp keeps their own type (f32 weights meet f32 inputs there). LoRA, attention
    /// and norms stay f32. Faster decode and batches, above all on CPUs without AVX-512; logits
    /// move by the quantisation: up to 1.7 on SmolLM2 (llama.cpp on the same file: 0.65 to 1.33)
    /// and 0.13 on the tiny test models against the float64 reference (tested bounds 3.3 and
    /// 0.22; f32: 2e-3); a tiny k-quant GGUF, requantised to Q8_0, 0.46 (bound 1.0). Gemma's
    /// families move most: 0.33 on a tiny Gemma 2 (bound 0.65); measured once, not tested: 0.19
    /// to 0.65 on the other tiny Gemma models, 1.35 on a tiny Gemma 3 GGUF of mostly f32 layers
    /// (llama.cpp: 0.72 on that file, 1.36 given the Q8_0 weights this mode makes).
    #[arg(long, help_heading = BACKEND_HEADING, conflicts_with = "f32_weights")]
    pub cpu_int8: bool,
    /// Longest sequence, prompt and answer together, in tokens (the RoPE table and KV cache are
    /// sized to it); capped by the model's own limit. On a LongRoPE model (Phi-3-128k,
    /// Phi-3.5) it also picks the factor set, as llama.cpp's context size does: the long
    /// factors above the original context (4096), the short ones up to it.
    #[arg(long, value_name = "TOKENS", default_value_t = 8192,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    pub max_context: usize,
    /// Use this chat template (a Jinja file, as in a model's `chat_template.jinja`) instead of the
    /// model's own.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

impl ModelArgs {
    /// The model path, resolving the default.
    pub fn model_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.model {
            return Ok(p.clone());
        }
        // Empty is unset, as shells' `VAR= cmd` means.
        if let Some(p) = std::env::var_os("DLP_MODEL").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            // Named here: a later "not found" would not say the path came from the variable.
            if !p.exists() {
                bail!("$DLP_MODEL is {:?}, which does not exist; set it to a model (an HF folder or a .gguf file), unset it, or pass --model PATH", p.display().to_string());
            }
            return Ok(p);
        }
        // The shared fixtures' copy under $DLP_FIXTURES too, where train-router's default
        // tokenizer is looked for.
        let fixtures = std::env::var_os("DLP_FIXTURES")
            .filter(|f| !f.is_empty())
            .map(|f| PathBuf::from(f).join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
        let mut looked = vec![PathBuf::from(DEFAULT_MODELS[0])];
        looked.extend(fixtures);
        looked.push(PathBuf::from(DEFAULT_MODELS[1]));
        if let Some(p) = looked.iter().find(|p| p.exists()) {
            return Ok(p.clone());
        }
        let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        bail!("no --model given and no default model found (looked at $DLP_MODEL, {}); run scripts/fetch-smollm2.sh or pass --model PATH", looked.join(", "))
    }

    /// `NAME=PATH` pairs from `--adapter` ([`crate::adapter_args::specs`], its errors).
    pub fn adapter_specs(&self) -> Result<Vec<(String, PathBuf)>> {
        crate::adapter_args::specs(
            &self.adapters,
            &self.llama_cpp_lora,
            &self.llama_cpp_lora_scaled,
        )
    }

    /// The files this model, its adapters and its chat template are read from, so that no
    /// output replaces them.
    pub fn inputs(&self) -> Result<Inputs> {
        let mut inputs = Inputs::default();
        let model = self.model_path()?;
        if model.is_dir() {
            inputs.dir(&model, crate::output::MODEL_FILES);
            // Its weights: `model.safetensors` or the index's shards, not every
            // `.safetensors` there (a logits file written beside them is not read).
            for f in dlp_engine::loader::safetensors_dir::weight_files(&model).unwrap_or_default() {
                inputs.file(&f);
            }
        } else {
            inputs.file(&model);
            // A GGUF's tokenizer.json (and what it brings) beside it.
            for f in [
                "tokenizer.json",
                "tokenizer_config.json",
                "chat_template.jinja",
            ] {
                inputs.file(&model.with_file_name(f));
            }
        }
        for (_, path) in self.adapter_specs()? {
            // A PEFT folder's files, or a llama.cpp LoRA GGUF itself.
            match path.is_dir() {
                true => inputs.dir(&path, crate::output::ADAPTER_FILES),
                false => inputs.file(&path),
            }
        }
        if let Some(t) = &self.chat_template {
            inputs.file(t);
        }
        Ok(inputs)
    }

    /// Replaces the tokenizer's chat template with `--chat-template`'s, when given.
    pub fn apply_chat_template(&self, tok: &mut TextTokenizer) -> Result<()> {
        if let Some(f) = &self.chat_template {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("--chat-template {}", f.display()))?;
            tok.set_chat_template(Some(t), &dlp_engine::tokenizer::file_name(f));
        }
        Ok(())
    }

    /// Applies `--threads` to the rayon pool.
    pub fn init_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            if n == 0 {
                bail!("--threads must be at least 1");
            }
            // More threads than cores only contend, and tens of thousands fail to start (each
            // its stack), which rayon reports as a panic.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if n > 4 * cores {
                bail!(
                    "--threads {n}: at most {} (4 per core of this machine's {cores}); \
                     more threads than cores only contend",
                    4 * cores
                );
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .context("setting up the thread pool")?;
        }
        Ok(())
    }
}

/// A model loaded on some backend, with its tokenizer.
pub struct Loaded<B: Backend> {
    /// The model with its adapters.
    pub model: Model<B>,
    /// Its tokenizer (None for bare test models without one).
    pub tokenizer: Option<TextTokenizer>,
}

impl<B: Backend> Loaded<B> {
    /// The tokenizer, or an error saying why there is none.
    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().context("this model has no tokenizer (no tokenizer.json in its directory): put the model's tokenizer.json there, or score token ids with `dlp-run score --ids`")
    }

    /// Every id that ends generation: the config's and the tokenizer's.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids = self.model.config.eos_token_ids.clone();
        if let Some(t) = &self.tokenizer {
            ids.extend(t.eos_token_ids());
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Loads the model and adapters of `args` on `backend`.
pub fn load<B: Backend>(backend: B, args: &ModelArgs) -> Result<Loaded<B>> {
    Ok(load_keeping_adapters(backend, args)?.0)
}

/// `e` with what was being loaded (`model`, adapter `a`) and from where as its context, less
/// what `e`'s own message says already: the path (the loaders' format errors begin with it),
/// or the path and the thing itself (the adapter loader's "adapter `a`: P ..."), so that
/// nothing is said twice.
fn in_context(e: dlp_engine::Error, what: &str, path: &Path) -> anyhow::Error {
    let (msg, shown) = (e.to_string(), path.display().to_string());
    match (msg.contains(&shown), msg.contains(what)) {
        (true, true) => anyhow::Error::new(e),
        (true, false) => anyhow::Error::new(e).context(format!("loading {what}")),
        (false, _) => anyhow::Error::new(e).context(format!("loading {what} from {shown}")),
    }
}

/// As [`load`], also returning the adapters' host copies (slot order), for callers that
/// change the adapter set later (the server's runtime loading).
pub fn load_keeping_adapters<B: Backend>(
    backend: B,
    args: &ModelArgs,
) -> Result<(Loaded<B>, Vec<PeftAdapter>)> {
    let path = args.model_path()?;
    let keep_packed = backend.packed_weights() && !args.f32_weights;
    let files =
        ModelFiles::load_with(&path, keep_packed).map_err(|e| in_context(e, "model", &path))?;
    let adapters = args
        .adapter_specs()?
        .iter()
        .map(|(n, d)| {
            PeftAdapter::load(n, d, &files.config)
                .map_err(|e| in_context(e, &format!("adapter `{n}`"), d))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut model = Model::new(backend, files.config, files.weights, args.max_context)?;
    model.set_adapters(&adapters)?;
    let mut tokenizer = files.tokenizer;
    if let Some(t) = &mut tokenizer {
        args.apply_chat_template(t)?;
    }
    Ok((Loaded { model, tokenizer }, adapters))
}

/// A vocabulary of `vocab` tokens' ids in words, for errors: "ids 0 to 49151" (Rust's
/// `0..49152` reads as inclusive to many).
pub fn vocab_ids(vocab: usize) -> String {
    match vocab {
        0 => "no ids: the vocabulary is empty".into(),
        v => format!("ids 0 to {}", v - 1),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vocab_ids_name_the_last_id() {
        assert_eq!(super::vocab_ids(49_152), "ids 0 to 49151");
        assert_eq!(super::vocab_ids(1), "ids 0 to 0");
        assert!(super::vocab_ids(0).contains("empty"));
    }

    use super::CudaExperimental as X;
    use clap::ValueEnum;

    /// `fast` is every path but the three measured slower and the two no GPU has run; `all`
    /// every path; a path itself.
    #[test]
    fn fast_keeps_every_path_but_the_slower_and_unverified_ones() {
        let paths: Vec<X> = X::value_variants()
            .iter()
            .copied()
            .filter(|p| !matches!(p, X::All | X::Fast))
            .collect();
        assert_eq!(paths.len(), 24);
        for &p in &paths {
            let left_out = matches!(
                p,
                X::FusedSilu
                    | X::NormInMatvec
                    | X::InlineShrink
                    | X::LoraPrefetch
                    | X::DeviceArgmax
                    | X::DeviceSampling
                    | X::PackedUpload
            );
            assert_eq!(X::Fast.turns_on(p), !left_out, "{p:?}");
            assert!(X::All.turns_on(p) && p.turns_on(p), "{p:?}");
        }
        assert!(!X::DecodeMatvec.turns_on(X::FusedLora));
    }

    /// The GPU run's script names the same paths `fast` leaves out (its own copy: it reads
    /// which paths a mode turns on without running dlp-run).
    #[test]
    fn the_gpu_script_leaves_out_the_same_paths_as_fast() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gpu_check_core.py");
        let script = std::fs::read_to_string(path).expect("scripts/gpu_check_core.py");
        let line = script
            .lines()
            .find(|l| l.starts_with("LEFT_OUT_OF_FAST = {"))
            .expect("a line `LEFT_OUT_OF_FAST = {...}` in scripts/gpu_check_core.py");
        let mut named: Vec<&str> = line
            .trim_start_matches("LEFT_OUT_OF_FAST = {")
            .trim_end_matches('}')
            .split(',')
            .map(|n| n.trim().trim_matches('"'))
            .collect();
        let mut want: Vec<String> = X::LEFT_OUT_OF_FAST
            .iter()
            .map(|p| {
                p.to_possible_value()
                    .expect("a name")
                    .get_name()
                    .to_string()
            })
            .collect();
        named.sort_unstable();
        want.sort_unstable();
        assert_eq!(named, want);
    }
}
