//! Opening a model path: an HF directory or a `.gguf` file, with its tokenizer.

use std::path::{Path, PathBuf};

use super::gguf::GgufFile;
use super::safetensors_dir::load_hf_weights;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::WeightMap;
use crate::tokenizer::TextTokenizer;

/// What a model path holds, loaded into host memory.
pub struct ModelFiles {
    /// The path given.
    pub path: PathBuf,
    /// `hf` or `gguf`.
    pub format: &'static str,
    /// Hyper-parameters.
    pub config: ModelConfig,
    /// All weights under HF names (f32, or packed blocks when asked).
    pub weights: WeightMap,
    /// The tokenizer, when the model comes with one.
    pub tokenizer: Option<TextTokenizer>,
}

/// Why `dir` (a directory without `config.json`) is not a model, with the likely fix: it
/// is a PEFT adapter, or it holds `.gguf` files to name instead.
fn not_a_model_dir(dir: &Path) -> String {
    let mut msg = String::from(
        "not a model directory: no config.json (expected an HF model directory or a .gguf file)",
    );
    if dir.join("adapter_config.json").exists() {
        msg += "; this is a PEFT LoRA adapter: load it on a base model with --adapter NAME=DIR";
        return msg;
    }
    let mut ggufs: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    ggufs.sort();
    if let Some(first) = ggufs.first() {
        let more = match ggufs.len() {
            1 => String::new(),
            n => format!(" (one of its {n} .gguf files)"),
        };
        msg += &format!("; give the file: {}{more}", dir.join(first).display());
    }
    msg
}

impl ModelFiles {
    /// Loads an HF directory (`config.json` + safetensors) or a GGUF file (then a
    /// `tokenizer.json` beside it is preferred over the GGUF's own vocabulary).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, false)
    }

    /// As [`ModelFiles::load`]; with `keep_packed`, a GGUF's F16/BF16/Q8_0/Q4/Q5/k-quant matrices
    /// stay in their compact blocks (for a backend whose [`crate::Backend::packed_weights`] is
    /// true). HF directories always load as f32.
    pub fn load_with(path: &Path, keep_packed: bool) -> Result<Self> {
        if path.is_dir() {
            if !path.join("config.json").exists() {
                return Err(Error::format(path, not_a_model_dir(path)));
            }
            let config = ModelConfig::from_hf_dir(path)?;
            let mut weights = load_hf_weights(path, config.quantization.as_ref())?;
            // A text-and-image checkpoint's decoder under the model's names, before any step
            // that reads them.
            super::multimodal::text_model(&mut weights);
            match config.arch {
                crate::config::Arch::Exaone => super::exaone::rename_checkpoint(&mut weights)?,
                crate::config::Arch::Apertus => {
                    super::renamed::rename_checkpoint::<super::apertus::Apertus>(&mut weights)?
                }
                crate::config::Arch::Hunyuan => {
                    super::renamed::rename_checkpoint::<super::renamed::Hunyuan>(&mut weights)?
                }
                arch if super::prefixed::applies(arch) => {
                    super::prefixed::prepare_checkpoint(&mut weights, &config)?
                }
                _ => {}
            }
            super::fused::split_stacked(&mut weights, &config)?;
            super::fused::rename_final_norm(&mut weights, config.arch)?;
            if weights.file_names.is_none() {
                weights.file_names = super::fused::file_names(config.arch);
            }
            super::qk_norm::gather(&mut weights, &config)?;
            super::partial_rotary::reorder_heads(&mut weights, &config)?;
            super::gemma::prepare_hf(&mut weights, &config);
            let tokenizer = TextTokenizer::from_hf_dir(path)?;
            if let Some(t) = &tokenizer {
                fits(t, &config, &path.join("tokenizer.json"))?;
            }
            return Ok(ModelFiles {
                path: path.into(),
                format: "hf",
                config,
                weights,
                tokenizer,
            });
        }
        if !path.exists() {
            return Err(Error::invalid(format!(
                "{}: no such file or directory (expected an HF model directory or a .gguf file)",
                path.display()
            )));
        }
        // An HF checkpoint's own file given for its folder (transformers takes the folder).
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "safetensors" | "json" | "bin") && !super::gguf::is_gguf_file(path) {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.map_or(".".into(), |d| d.display().to_string());
            return Err(Error::invalid(format!(
                "{}: a file of an HF checkpoint, not a model; pass the folder that holds config.json and the weights ({dir}), or a .gguf file",
                path.display()
            )));
        }
        let g = GgufFile::open(path)?;
        let config = g.config()?;
        let beside = path.with_file_name("tokenizer.json");
        let mut tokenizer = if beside.exists() {
            let t = TextTokenizer::from_file(&beside)?;
            fits(&t, &config, &beside)?;
            Some(t)
        } else if let Some(why) = TextTokenizer::gguf_unsupported(&g) {
            // The weights still serve token ids (`score --ids`); text needs a tokenizer.json.
            tracing::warn!(
                "{why}; put the model's tokenizer.json in the .gguf's folder to read and write \
                 text (token ids work without it: `dlp-run score --ids`)"
            );
            None
        } else {
            Some(TextTokenizer::from_gguf(&g)?)
        };
        if let Some(t) = tokenizer.as_mut() {
            t.adopt_gguf(&g);
        }
        let mut weights = g.load_weights_with(keep_packed)?;
        super::gguf::names::rename_falcon_norms(&mut weights, &config);
        super::fused::split_stacked(&mut weights, &config)?;
        super::qk_norm::gather(&mut weights, &config)?;
        super::partial_rotary::reorder_heads(&mut weights, &config)?;
        Ok(ModelFiles {
            path: path.into(),
            format: "gguf",
            config,
            weights,
            tokenizer,
        })
    }
}

/// Refuses a tokenizer whose vocabulary has more tokens than the model has embedding rows: it
/// is another model's (its ids would be read as the wrong tokens, or fall outside the table).
/// A model may have more rows than its tokenizer has tokens (padding), and added tokens past
/// the table only warn, since a prompt may never use them.
fn fits(t: &TextTokenizer, config: &ModelConfig, file: &Path) -> Result<()> {
    let (base, all) = (
        t.hf_tokenizer().get_vocab_size(false),
        t.hf_tokenizer().get_vocab_size(true),
    );
    let rows = config.embed_rows();
    if base > rows {
        return Err(Error::format(
            file,
            format!("the tokenizer has {base} tokens but the model's embedding table only {rows} rows (vocab_size): this tokenizer belongs to another model"),
        ));
    }
    if all > rows {
        tracing::warn!(
            "{}: {} added tokens have ids past the model's {rows} embedding rows; a prompt using one is refused",
            file.display(),
            all - rows
        );
    }
    Ok(())
}
