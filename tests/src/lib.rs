//! Shared helpers for the golden tests: finding the fixtures, reading the reference numbers,
//! and comparing logits with the tolerances the fixtures support.

mod activation_fixtures;
pub mod broken;
pub mod cpu_probe;
pub mod device_argmax;
mod fixture_macros;
mod golden;
pub mod parity;
pub mod prefix_sharing;
mod scored_fixtures;
mod tolerances;
pub use golden::{
    longest_per_mixture, run_golden, run_golden_bf16_weights, run_golden_bf16_weights_with,
    run_golden_f32_weights, run_golden_with, run_golden_within, run_golden_within_with, Coverage,
};
pub use tolerances::{
    amx_logit_tol, bf16_compute_logit_tol, bf16_logit_tol, int8_logit_tol, kv_bf16_logit_tol,
    lora_bf16_logit_tol, lora_tf32_logit_tol,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dlp_engine::cpu::CpuBackend;
use dlp_engine::generate::{ScoreInput, Segments};
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::ModelFiles;
use dlp_engine::lora::resolve_mixture;
use dlp_engine::model::Model;
use dlp_engine::{Backend, Result};
use serde::Deserialize;

/// Largest |logit - reference| allowed (float32 engine vs float64 oracle).
pub const LOGIT_TOL: f32 = 2e-3;
/// Greedy tokens must agree wherever the reference top-1/top-2 margin exceeds this.
pub const MARGIN: f32 = 1e-2;

/// The fixture folder `sub`: this repository's own (`tests/fixtures`: Qwen models and GGUFs, made by
/// `tests/fixtures/make_qwen.py`), else the shared fixtures' (`DLP_FIXTURES`, default
/// `../shared/fixtures` beside the checkout), or `None` with a printed reason. With
/// `DLP_REQUIRE_FIXTURES=1` a missing folder panics.
pub fn fixtures(sub: &str) -> Option<PathBuf> {
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub);
    if own.join("golden.json").exists() {
        return Some(own);
    }
    let dir = fixtures_root().join(sub);
    if dir.exists() {
        return Some(dir);
    }
    skip_unless_required(
        &format!("fixture {} not found (set DLP_FIXTURES)", dir.display()),
        "DLP_REQUIRE_FIXTURES",
    );
    None
}

/// `DLP_FIXTURES`, or `../shared/fixtures` beside the checkout.
fn fixtures_root() -> PathBuf {
    std::env::var_os("DLP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
                .join("../../shared/fixtures")
        })
}

/// A folder of the shared material beside the fixtures (`adapters/smollm2-tasks`,
/// `data/tasks`): `DLP_FIXTURES/../sub`. Missing: as [`fixtures`].
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = fixtures_root().join("..").join(sub);
    if dir.exists() {
        return Some(dir);
    }
    skip_unless_required(
        &format!(
            "shared folder {} not found (set DLP_FIXTURES to the fixtures beside it)",
            dir.display()
        ),
        "DLP_REQUIRE_FIXTURES",
    );
    None
}

pub use dlp_skip::{kind, required};

/// Records a skip ([`dlp_skip::skip`]), or panics when `require_var` is `1` (CI turns skips
/// into failures). The kind of reason follows from the variable.
pub fn skip_unless_required(why: &str, require_var: &str) {
    let k = match require_var {
        "DLP_REQUIRE_FIXTURES" => kind::FIXTURES,
        "DLP_REQUIRE_WGPU" | "DLP_REQUIRE_WGPU_F16" => kind::WGPU,
        "DLP_REQUIRE_CUDA" => kind::CUDA,
        "DLP_REQUIRE_NVRTC" => kind::NVRTC,
        "DLP_REQUIRE_PYTHON" => kind::PYTHON,
        other => other,
    };
    dlp_skip::skip(k, why, Some(require_var));
}

/// Records a check left out because the only adapter here is a software one (lavapipe) on
/// which it would take minutes; never required.
pub fn skip_slow_software(why: &str) {
    dlp_skip::skip("too slow on a software GPU", why, None);
}

/// Says (as a recorded skip) that this CPU or OS has no AMX-BF16, when it has none; then the
/// caller returns.
pub fn no_amx() -> bool {
    if dlp_engine::cpu::amx_available() {
        return false;
    }
    dlp_skip::skip(kind::AMX, "this CPU or OS has no AMX-BF16", None);
    true
}

/// The backend `made`, or `None` after [`skip_unless_required`] when it could not be created.
pub fn backend_or_skip<B, E: std::fmt::Display>(
    made: std::result::Result<B, E>,
    require_var: &str,
) -> Option<B> {
    match made {
        Ok(b) => Some(b),
        Err(e) => {
            skip_unless_required(&format!("no backend: {e}"), require_var);
            None
        }
    }
}

/// One case of `golden.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// `p<prompt>.<mixture>`
    pub name: String,
    /// Prompt length.
    pub prompt_len: usize,
    /// Total length.
    pub len: usize,
    /// `(adapter, weight)` pairs.
    pub mixture: Vec<(String, f32)>,
    /// SmolLM2 only: the prompt text.
    #[serde(default)]
    pub prompt_text: Option<String>,
}

/// `golden.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Golden {
    /// Adapter name -> folder (relative to the fixture).
    pub adapters: HashMap<String, String>,
    /// The cases.
    pub cases: Vec<Case>,
    /// SmolLM2: the GGUF file name.
    #[serde(default)]
    pub gguf: Option<String>,
    /// SmolLM2: text -> ids cases.
    #[serde(default)]
    pub tokenizer_cases: Vec<serde_json::Value>,
    /// SmolLM2: chat template cases.
    #[serde(default)]
    pub chat_template_cases: Vec<serde_json::Value>,
}

/// A fixture model: its golden cases and reference tensors.
pub struct Fixture {
    /// The fixture folder.
    pub dir: PathBuf,
    /// `golden.json`.
    pub golden: Golden,
    tensors: HashMap<String, (Vec<usize>, Vec<u8>, safetensors::Dtype)>,
}

impl Fixture {
    /// Reads `golden.json` and `golden.safetensors` of `dir`.
    pub fn open(dir: &Path) -> Fixture {
        let golden: Golden =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap())
                .unwrap();
        let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec(), v.dtype())))
            .collect();
        Fixture {
            dir: dir.to_path_buf(),
            golden,
            tensors,
        }
    }

    /// The model path: the GGUF file when the fixture has one, else the folder.
    pub fn model_path(&self) -> PathBuf {
        match &self.golden.gguf {
            Some(g) => self.dir.join(g),
            None => self.dir.clone(),
        }
    }

    /// Whether a reference tensor exists.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A reference tensor as f32 (i32 tensors converted).
    pub fn f32s(&self, name: &str) -> Vec<f32> {
        let (_, b, dt) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference tensor {name} missing"));
        match dt {
            safetensors::Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            safetensors::Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            safetensors::Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            d => panic!("{name}: unexpected dtype {d:?}"),
        }
    }

    /// A reference tensor as ids.
    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.f32s(name).into_iter().map(|v| v as u32).collect()
    }

    /// Loads the model with all the fixture's adapters on `backend`, keeping a GGUF's compact
    /// blocks when the backend computes on them (as `dlp-run` does by default).
    pub fn load<B: Backend>(&self, backend: B) -> Result<Model<B>> {
        let packed = backend.packed_weights();
        self.load_with(backend, packed)
    }

    /// As [`Fixture::load`], choosing whether packed weights stay packed.
    pub fn load_with<B: Backend>(&self, backend: B, keep_packed: bool) -> Result<Model<B>> {
        let files = ModelFiles::load_with(&self.model_path(), keep_packed)?;
        self.model_from(backend, files)
    }

    /// As [`Fixture::load_with`] (f32 weights), with every 2-D weight (matmul weights,
    /// lm_head, embedding table) rounded to bf16: what a backend storing them in bf16 computes.
    pub fn load_bf16_rounded<B: Backend>(&self, backend: B) -> Result<Model<B>> {
        let mut files = ModelFiles::load_with(&self.model_path(), false)?;
        let names: Vec<String> = files.weights.names().map(str::to_string).collect();
        for n in names {
            let t = files.weights.get_mut(&n).expect("listed");
            if t.shape.len() == 2 {
                t.data
                    .iter_mut()
                    .for_each(|v| *v = half::bf16::from_f32(*v).to_f32());
            }
        }
        self.model_from(backend, files)
    }

    /// The model of `files` on `backend`, with all the fixture's adapters.
    fn model_from<B: Backend>(&self, backend: B, files: ModelFiles) -> Result<Model<B>> {
        let mut names: Vec<&String> = self.golden.adapters.keys().collect();
        names.sort();
        let adapters = names
            .iter()
            .map(|n| PeftAdapter::load(n, &self.dir.join(&self.golden.adapters[*n]), &files.config))
            .collect::<Result<Vec<_>>>()?;
        let mut model = Model::new(backend, files.config, files.weights, 4096)?;
        model.set_adapters(&adapters)?;
        Ok(model)
    }

    /// The score input of a case: its ids under its mixture.
    pub fn input<B: Backend>(&self, model: &Model<B>, case: &Case) -> ScoreInput {
        let mix = resolve_mixture(model.adapter_names(), &case.mixture).unwrap();
        let segments: Segments = vec![(0, mix)];
        ScoreInput {
            ids: self.ids(&format!("{}.input_ids", case.name)),
            segments,
        }
    }
}

/// Loads a fixture on the CPU backend.
pub fn cpu_model(fx: &Fixture) -> Model<CpuBackend> {
    fx.load(CpuBackend::new())
        .unwrap_or_else(|e| panic!("loading {}: {e}", fx.dir.display()))
}

fn logsumexp(row: &[f32]) -> f64 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// The reference's 32 largest logits per position and their ids (`[len, k]` each, best first):
/// the stored `.topk_ids`/`.topk_logits`, or, where a fixture stores the full `.logits` instead
/// (this repository's tiny fixtures, to keep them small), ranked from those. With full logits
/// the top-k check repeats the full comparison; the top-1 id still gives the greedy check.
fn reference_top_k(fx: &Fixture, n: &str, len: usize) -> (Vec<u32>, Vec<f32>) {
    if fx.has(&format!("{n}.topk_ids")) {
        return (
            fx.ids(&format!("{n}.topk_ids")),
            fx.f32s(&format!("{n}.topk_logits")),
        );
    }
    let logits = fx.f32s(&format!("{n}.logits"));
    let vocab = logits.len() / len;
    let k = vocab.min(32);
    let (mut ids, mut values) = (Vec::with_capacity(len * k), Vec::with_capacity(len * k));
    for row in logits.chunks_exact(vocab) {
        let mut order: Vec<usize> = (0..vocab).collect();
        // Largest first, equal logits by id (torch.topk leaves their order open; only the
        // greedy check reads the order, and only where the reference margin is clear).
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &i in &order[..k] {
            ids.push(i as u32);
            values.push(row[i]);
        }
    }
    (ids, values)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Compares the logits of one case (`[len, vocab]`) with the reference: every available
/// reference number within [`LOGIT_TOL`], and the greedy token equal wherever the margin allows.
/// Returns the largest absolute difference seen, or a description of the first failure.
pub fn check_case(
    fx: &Fixture,
    case: &Case,
    vocab: usize,
    logits: &[f32],
) -> std::result::Result<f32, String> {
    check_case_within(fx, case, vocab, logits, LOGIT_TOL, MARGIN)
}

/// As [`check_case`] with bound `tol` per reference number, and the greedy token checked
/// where the reference top-1/top-2 margin exceeds `margin` (for reduced-precision paths).
pub fn check_case_within(
    fx: &Fixture,
    case: &Case,
    vocab: usize,
    logits: &[f32],
    tol: f32,
    margin_min: f32,
) -> std::result::Result<f32, String> {
    let n = &case.name;
    if logits.len() != case.len * vocab {
        return Err(format!(
            "{n}: got {} logits, expected {} x {vocab}",
            logits.len(),
            case.len
        ));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(format!("{n}: non-finite logit at flat index {i}"));
    }
    let mut worst = 0f32;
    let mut see = |what: &str,
                   pos: usize,
                   got: f32,
                   want: f32|
     -> std::result::Result<(), String> {
        let d = (got - want).abs();
        worst = worst.max(d);
        if d > tol {
            return Err(format!("{n}: {what} at position {pos}: got {got}, reference {want} (|diff| {d:.2e} > {tol:.2e})"));
        }
        Ok(())
    };
    if fx.has(&format!("{n}.logits")) {
        let r = fx.f32s(&format!("{n}.logits"));
        for (i, (&g, &w)) in logits.iter().zip(&r).enumerate() {
            see("logit", i / vocab, g, w)?;
        }
    }
    if fx.has(&format!("{n}.last_prompt_logits")) {
        let r = fx.f32s(&format!("{n}.last_prompt_logits"));
        let row = &logits[(case.prompt_len - 1) * vocab..case.prompt_len * vocab];
        for (&g, &w) in row.iter().zip(&r) {
            see("last-prompt logit", case.prompt_len - 1, g, w)?;
        }
    }
    let (top_ids, top_logits) = reference_top_k(fx, n, case.len);
    let lse = fx.f32s(&format!("{n}.logsumexp"));
    let margin = fx.f32s(&format!("{n}.margin"));
    let k = top_ids.len() / case.len;
    let input_ids = fx.ids(&format!("{n}.input_ids"));
    for p in 0..case.len {
        let row = &logits[p * vocab..(p + 1) * vocab];
        for j in 0..k {
            see(
                "top-k logit",
                p,
                row[top_ids[p * k + j] as usize],
                top_logits[p * k + j],
            )?;
        }
        see("logsumexp", p, logsumexp(row) as f32, lse[p])?;
        if margin[p] > margin_min {
            let a = argmax(row);
            if a != top_ids[p * k] as usize {
                return Err(format!(
                    "{n}: greedy token at position {p} is {a}, reference {} (margin {})",
                    top_ids[p * k],
                    margin[p]
                ));
            }
            if p + 1 >= case.prompt_len && p + 1 < case.len && a != input_ids[p + 1] as usize {
                return Err(format!(
                    "{n}: greedy continuation at position {p} is {a}, reference sequence has {}",
                    input_ids[p + 1]
                ));
            }
        }
    }
    Ok(worst)
}
