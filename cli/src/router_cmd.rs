//! `dlp-run train-router`: train the DLP mini-MLP router on labelled instructions (measured
//! by `eval-router`, in `router_eval.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use dlp_router::data::{file_key, find_split_files, hold_out, read_all, Example, Fields};
use dlp_router::extend::{FeatureStats, STATS_FILE};
use dlp_router::train::{train, TrainConfig, TrainDevice};
use dlp_router::RouterError;

use crate::output::outln;
use crate::router_checks;

/// Tokenizer used when `--tokenizer` is not given: the SmolLM2 tokenizer of the shared
/// fixtures, under `$DLP_FIXTURES` where it is set, else beside a checkout (relative to the
/// working directory).
const DEFAULT_TOKENIZER: &str = "smollm2/tokenizer/tokenizer.json";

fn default_tokenizer() -> PathBuf {
    match std::env::var_os("DLP_FIXTURES").filter(|f| !f.is_empty()) {
        Some(f) => PathBuf::from(f).join(DEFAULT_TOKENIZER),
        None => Path::new("../shared/fixtures").join(DEFAULT_TOKENIZER),
    }
}

/// Where router training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouterDevice {
    /// burn-ndarray on the CPU (a few minutes for 14 tasks on 2 cores).
    Ndarray,
    /// burn-wgpu on the default GPU (needs dlp-run built with `--features router-wgpu`).
    Wgpu,
}

/// Train the router: tokenizer → token embeddings → mean pool → 4-layer MLP → one logit per
/// label. Labels are the distinct values of `--label-field`; name them after the adapters the
/// router will choose among (generate matches adapters to labels by name).
///
/// Example: dlp-run train-router --data ../shared/data/tasks --out routers/tasks
///
/// Add tasks to a trained router in seconds, without the old tasks' data (the body stays
/// frozen, only the new labels' output rows are fitted):
///
///   dlp-run train-router --extend routers/tasks --data new_task/ --out routers/tasks2
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TrainRouterArgs {
    /// Extend this router with the labels of `--data` instead of training from scratch: its
    /// embedding table, hidden layers and old output rows stay as they are (byte for byte);
    /// the new labels' rows are fitted against per-label feature statistics stored when it
    /// was trained. The body's settings (--embed-dim, --hidden, --tokenizer, ...) come from it.
    // The scratch training's own settings: an extension fits its rows with --extend-steps
    // alone (they had been taken and ignored).
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "embed_dim", "hidden", "tokenizer", "max_tokens", "device", "dev_fraction", "epochs",
        "patience", "batch_size", "lr", "weight_decay", "chunk_prob", "token_dropout", "dropout",
        "no_calibrate",
    ])]
    pub extend: Option<PathBuf>,
    /// With --extend: full-batch optimiser steps for the new rows.
    #[arg(long, default_value_t = 300, requires = "extend",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub extend_steps: usize,
    /// Training data: jsonl files (one object per line), or directories holding `train.jsonl`
    /// directly or in one level of per-task folders (`DIR/<task>/train.jsonl`). Directories
    /// also supply their `dev.jsonl` files as the dev split.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Dev data for early stopping and calibration (files, or directories with `dev.jsonl`);
    /// replaces the `dev.jsonl` files found under `--data`.
    #[arg(long, num_args = 1..)]
    pub dev: Vec<PathBuf>,
    /// When no dev data is found: the share of each label's training examples held out as dev.
    #[arg(long, default_value_t = 0.1)]
    pub dev_fraction: f32,
    /// Output directory: router.json, router.safetensors and a copy of the tokenizer. It must
    /// not exist yet or be empty, unless --overwrite.
    #[arg(long)]
    pub out: PathBuf,
    /// Write into an --out folder that already holds files (a router there is replaced; other
    /// files stay beside it).
    #[arg(long)]
    pub overwrite: bool,
    /// tokenizer.json to read text with (or a directory holding one, or a .gguf model whose
    /// vocabulary is then rebuilt as one): normally the base model's, though any works.
    /// Default: $DLP_FIXTURES/smollm2/tokenizer/tokenizer.json, else
    /// ../shared/fixtures/smollm2/tokenizer/tokenizer.json (from the repository root).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// jsonl field holding the label (the adapter name).
    #[arg(long, default_value = "task")]
    pub label_field: String,
    /// jsonl field holding the text the router reads.
    #[arg(long, default_value = "instruction")]
    pub text_field: String,
    /// Maximum passes over the training data (early stopping usually ends sooner).
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Stop after this many epochs without a better dev loss; the best epoch's weights are kept.
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Seed of initialisation, shuffling, augmentation and dropout: same seed (and the same
    /// --data in the same order), same router.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Token embedding width, 1 to 4096. Parameters ≈ vocab × this + the MLP (96 with SmolLM2's
    /// 49152-token vocabulary: about 5M, the paper's size).
    #[arg(long, default_value_t = 96)]
    pub embed_dim: usize,
    /// Hidden layer widths, comma-separated, each 1 to 16384, at most 16 (three hidden layers =
    /// the paper's 4-layer MLP).
    #[arg(long, value_delimiter = ',', default_value = "384,384,192")]
    pub hidden: Vec<usize>,
    /// Tokens read per text (the same limit applies at inference).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Probability that a training example also contributes a random run of its sentences, with
    /// its label, each epoch: teaches the router single sentences for `--route-by sentence`.
    #[arg(long, default_value_t = 0.5)]
    pub chunk_prob: f32,
    /// Probability of dropping each token from a training text (robustness to wording).
    #[arg(long, default_value_t = 0.1)]
    pub token_dropout: f32,
    /// Dropout on the pooled vector and hidden activations.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// Skip fitting a softmax temperature on the dev split (it makes top-p sets honest).
    #[arg(long)]
    pub no_calibrate: bool,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = RouterDevice::Ndarray)]
    pub device: RouterDevice,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
}

/// The tokenizer.json to train with: `--tokenizer` (a file, a folder holding one, or a GGUF
/// model) or the default. A GGUF without a tokenizer.json beside it has its vocabulary rebuilt
/// as one (as `generate` reads it) into a temporary folder, returned with the path: the saved
/// router copies it into `--out`, and a failed training leaves nothing behind.
fn resolve_tokenizer(arg: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let p = arg.map_or_else(default_tokenizer, Path::to_path_buf);
    let p = if p.is_dir() {
        p.join("tokenizer.json")
    } else {
        p
    };
    if !p.is_file() {
        let default = match arg {
            None => {
                " (the default: under $DLP_FIXTURES, else relative to the current directory: run from the repository root)"
            }
            Some(_) => "",
        };
        bail!(
            "tokenizer {} not found{default}: pass --tokenizer with the base model's tokenizer.json or .gguf",
            p.display()
        );
    }
    let mut magic = [0u8; 4];
    let gguf = std::fs::File::open(&p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"GGUF";
    let named_gguf = p
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if named_gguf && !gguf {
        bail!(
            "--tokenizer {}: named .gguf, but it is not a GGUF file (no GGUF magic at its start)",
            p.display()
        );
    }
    if !gguf {
        return Ok((p, None));
    }
    let beside = p.with_file_name("tokenizer.json");
    if beside.is_file() {
        return Ok((beside, None));
    }
    let g = dlp_engine::loader::gguf::GgufFile::open(&p)?;
    let tok = dlp_engine::tokenizer::TextTokenizer::from_gguf(&g)
        .with_context(|| format!("--tokenizer {}", p.display()))?;
    let tmp = tempfile::tempdir().context("creating a temporary folder for the tokenizer")?;
    let dst = tmp.path().join("tokenizer.json");
    tok.hf_tokenizer()
        .save(&dst, false)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", dst.display()))?;
    Ok((dst, Some(tmp)))
}

/// How train-router picks a `--data` folder's files (for [`crate::eval::data::check_split_gaps`]).
pub(crate) const TRAIN_HINT: &str =
    "train-router reads each --data folder's train.jsonl (and its dev.jsonl as dev data)";

/// The dev files of a training: `--dev`'s, else the `dev.jsonl` of each `--data` folder; an
/// error for one that is also training data (dev figures, early stopping and calibration on
/// training data say nothing), naming where it came from.
pub fn dev_files(
    data: &[PathBuf],
    dev: &[PathBuf],
    train_files: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let inputs: Vec<PathBuf> = if dev.is_empty() {
        data.iter().filter(|p| p.is_dir()).cloned().collect()
    } else {
        dev.to_vec()
    };
    let files = find_split_files(&inputs, "dev")?;
    let train: Vec<PathBuf> = train_files.iter().map(|t| file_key(t)).collect();
    if let Some(f) = files.iter().find(|f| train.contains(&file_key(f))) {
        match dev.is_empty() {
            true => bail!(
                "--data {}: named as training data, and the dev split of a --data folder; name \
                 the folder or its files, not both",
                f.display()
            ),
            false => bail!(
                "--dev {}: also training data (--data); give dev data the router does not train on",
                f.display()
            ),
        }
    }
    Ok(files)
}

/// Checks `train-router --out` before any work: a folder that does not exist yet or is empty,
/// or with `overwrite` any folder; never a file or a link to nothing. Refuses to replace a
/// router (`extend`'s own, in place, says so), or to drop the router's files among others (a
/// data folder named by mistake), without `--overwrite`.
pub fn check_out_dir(out: &Path, overwrite: bool, extend: Option<&Path>) -> Result<()> {
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        // A link to nothing would pass here and fail only when the trained router is saved.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && out.symlink_metadata().is_ok() => {
            bail!(
                "train-router: --out {} is a link to nothing; name a folder",
                out.display()
            )
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return check_creatable(out)
        }
        Err(e) => bail!("train-router: --out {}: {e}", out.display()),
    };
    if !meta.is_dir() {
        bail!(
            "train-router: --out {} is a file; name a folder for the router's files",
            out.display()
        );
    }
    if overwrite {
        return Ok(());
    }
    // What an interrupted save left is not the folder's content (it is removed at the save).
    let stale = crate::output::stale_staging(out);
    let mut names: Vec<String> = std::fs::read_dir(out)
        .with_context(|| format!("train-router: reading --out {}", out.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| !stale.contains(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.iter().any(|n| n == dlp_router::config::CONFIG_FILE) {
        let same = |p: &Path| p.canonicalize().ok();
        let in_place = if extend.is_some_and(|e| same(e).is_some() && same(e) == same(out)) {
            " (it is --extend's router: --overwrite extends it in place)"
        } else {
            ""
        };
        bail!(
            "train-router: --out {} already holds a router ({}){in_place}; pass --overwrite \
             to replace it, or name a new folder",
            out.display(),
            dlp_router::config::CONFIG_FILE
        );
    }
    if let Some(first) = names.first() {
        let holds = match names.len() {
            1 => format!("it holds {first}"),
            n => format!("{n} entries, e.g. {first}"),
        };
        bail!(
            "train-router: --out {} is not empty ({holds}); name a new or empty folder, or pass \
             --overwrite to write the router's files into it",
            out.display()
        );
    }
    Ok(())
}

/// Checks that the missing folder `out` can be made when the router is saved (with its
/// missing parents, as `mkdir -p`): its nearest existing ancestor is a folder in which a folder
/// can be created now, so that a read-only place does not throw a finished training away.
/// Nothing is left behind.
fn check_creatable(out: &Path) -> Result<()> {
    let mut base = out;
    let base = loop {
        base = match base.parent() {
            Some(p) if p.as_os_str().is_empty() => break Path::new("."),
            Some(p) => p,
            None => break base,
        };
        if std::fs::symlink_metadata(base).is_ok() {
            break base;
        }
    };
    if !base.is_dir() {
        bail!(
            "train-router: --out {}: {} is not a folder",
            out.display(),
            base.display()
        );
    }
    let probe = base.join(format!(".dlp-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).with_context(|| {
        format!(
            "train-router: --out {}: cannot create a folder in {}",
            out.display(),
            base.display()
        )
    })?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}

/// Runs `train-router`.
pub fn train_router(args: &TrainRouterArgs) -> Result<()> {
    check_out_dir(&args.out, args.overwrite, args.extend.as_deref())?;
    if let Some(dir) = &args.extend {
        return crate::router_extend::extend_router(args, dir);
    }
    let cfg = TrainConfig {
        embed_dim: args.embed_dim,
        hidden: args.hidden.clone(),
        max_tokens: args.max_tokens,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        dropout: args.dropout,
        token_dropout: args.token_dropout,
        chunk_prob: args.chunk_prob,
        patience: args.patience,
        seed: args.seed,
        calibrate: !args.no_calibrate,
        device: match args.device {
            RouterDevice::Ndarray => TrainDevice::Ndarray,
            RouterDevice::Wgpu => TrainDevice::Wgpu,
        },
        progress: !args.quiet,
    };
    // Flags are checked before any data is read; the library names its fields, the flags are
    // the same words with dashes.
    if let Err(RouterError::Config {
        field,
        expected,
        got,
    }) = cfg.check()
    {
        let flag = field.replace('_', "-");
        bail!("train-router: --{flag} must be {expected}, got {got}");
    }
    if !(args.dev_fraction > 0.0 && args.dev_fraction < 1.0) {
        bail!(
            "train-router: --dev-fraction must be in (0, 1), got {}",
            args.dev_fraction
        );
    }
    let fields = Fields {
        text: args.text_field.clone(),
        label: args.label_field.clone(),
    };
    let train_files = find_split_files(&args.data, "train")?;
    crate::eval::data::check_split_gaps(&args.data, "train", TRAIN_HINT)?;
    if train_files.is_empty() {
        bail!("no training data: --data names no jsonl file and no directory with train.jsonl");
    }
    let dev_files = dev_files(&args.data, &args.dev, &train_files)?;
    let mut train_set = read_all(&train_files, &fields)?;
    let mut dev_set: Vec<Example> = read_all(&dev_files, &fields)?;
    // Dev data asked for by name must be there: holding out training data instead would
    // silently change what the router is trained on.
    if !args.dev.is_empty() && dev_set.is_empty() {
        bail!(
            "--dev {}: no dev examples there (no jsonl file, no dev.jsonl, or only empty ones)",
            args.dev
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    router_checks::check_labels(&train_set, &args.label_field)?;
    let held_out = dev_set.is_empty();
    if held_out {
        (train_set, dev_set) = hold_out(train_set, args.dev_fraction, args.seed);
        eprintln!(
            "no dev files: holding out {} of the training examples as dev",
            dev_set.len()
        );
    }
    // `rebuilt` keeps a GGUF's rebuilt tokenizer until the router has copied it.
    let (tokenizer_path, rebuilt) = resolve_tokenizer(args.tokenizer.as_deref())?;
    let tokenizer = dlp_router::model::load_tokenizer(&tokenizer_path)?;
    let shown = match (&rebuilt, &args.tokenizer) {
        (Some(_), Some(gguf)) => format!("rebuilt from the vocabulary of {}", gguf.display()),
        _ => tokenizer_path.display().to_string(),
    };
    eprintln!(
        "training on {} examples from {} file(s), dev {} from {} file(s), tokenizer {shown}",
        train_set.len(),
        train_files.len(),
        dev_set.len(),
        dev_files.len(),
    );
    router_checks::check_training_memory(args, &train_set, tokenizer.get_vocab_size(true))?;
    router_checks::warn_labels_without_dev(&train_set, &dev_set, held_out);
    router_checks::note_dev_in_train(&train_set, &dev_set);
    let mut outcome = train(tokenizer, &train_set, &dev_set, &cfg)?;
    // What a later `--extend` needs of this training: per-label feature statistics.
    let stats = FeatureStats::compute(&outcome.router, &train_set)?;
    outcome.router.set_feature_stats(STATS_FILE);
    crate::output::write_files_atomic(&args.out, dlp_router::config::CONFIG_FILE, |dir| {
        outcome.router.save_self_contained(dir, &tokenizer_path)?;
        Ok(stats.save(&dir.join(STATS_FILE))?)
    })?;
    let c = outcome.router.config();
    outln!("labels ({}): {}", c.labels.len(), c.labels.join(", "));
    outln!(
        "parameters: {} (embedding {} x {} + MLP {:?})",
        outcome.router.num_params(),
        c.vocab_size,
        c.embed_dim,
        c.widths()
    );
    outln!(
        "trained {} epochs (best {}) in {:.1} s; calibration temperature {:.3}",
        outcome.history.len(),
        outcome.best_epoch,
        outcome.seconds,
        c.temperature
    );
    if !args.no_calibrate {
        router_checks::note_calibration(c.temperature, dev_set.len());
    }
    if let Some(d) = &c.dev {
        outln!("dev ({}): {d}", d.texts());
    }
    outln!("wrote {}", args.out.display());
    Ok(())
}
