//! `dlp-run train-router --extend DIR`: new labels on a trained router without its body or its
//! old tasks' data ([`dlp_router::extend`]).

use std::path::Path;

use anyhow::{bail, Context, Result};
use dlp_router::data::{find_split_files, read_all, Fields};
use dlp_router::extend::{extend, ExtendConfig, FeatureStats, STATS_FILE};
use dlp_router::Router;

use crate::output::outln;
use crate::router_cmd::TrainRouterArgs;

/// Loads the router in `dir` and its feature statistics, or says why it cannot be extended.
fn load_extendable(dir: &Path) -> Result<(Router, FeatureStats)> {
    let router = Router::load(dir)
        .with_context(|| format!("--extend {}: loading the router", dir.display()))?;
    let Some(file) = router.config().feature_stats.clone() else {
        bail!(
            "--extend {}: this router has no feature statistics (it was trained before dlp-run could extend routers); retrain it once with `dlp-run train-router` (same data and flags), after which it can be extended",
            dir.display()
        );
    };
    let stats = feature_stats(dir, &router, &file)
        .with_context(|| format!("--extend {}: reading {file}", dir.display()))?;
    Ok((router, stats))
}

/// The labels and feature width of `router`'s statistics.
fn stats_size(router: &Router) -> (usize, usize) {
    let c = router.config();
    (
        c.labels.len(),
        c.hidden.last().copied().unwrap_or(c.embed_dim),
    )
}

/// The feature statistics `file` (router.json's `feature_stats`) of `router` in `dir`, read
/// and checked against its labels and last layer's width, as extending reads them.
fn feature_stats(dir: &Path, router: &Router, file: &str) -> Result<FeatureStats> {
    let (labels, dim) = stats_size(router);
    Ok(FeatureStats::load(&dir.join(file), labels, dim)?)
}

/// Checks the header of `router`'s statistics file `file` in `dir` (every tensor extending
/// reads, F32, of its shape) without reading its data, which can be gigabytes (`inspect`).
pub fn check_stats_header(dir: &Path, router: &Router, file: &str) -> Result<()> {
    let (labels, dim) = stats_size(router);
    let path = dir.join(file);
    let have: std::collections::HashMap<String, (safetensors::Dtype, Vec<usize>)> =
        (dlp_engine::loader::safetensors_dir::header(&path)?.into_iter())
            .map(|(n, d, s)| (n, (d, s)))
            .collect();
    for (name, shape) in FeatureStats::tensor_shapes(labels, dim) {
        match have.get(&name) {
            Some((safetensors::Dtype::F32, s)) if *s == shape => {}
            Some((d, s)) => bail!("{name} is {d:?} {s:?}, expected F32 {shape:?}"),
            None => bail!("no tensor {name}"),
        }
    }
    Ok(())
}

/// Runs `train-router --extend DIR`.
pub fn extend_router(args: &TrainRouterArgs, dir: &Path) -> Result<()> {
    let (router, stats) = load_extendable(dir)?;
    let fields = Fields {
        text: args.text_field.clone(),
        label: args.label_field.clone(),
    };
    let files = find_split_files(&args.data, "train")?;
    crate::eval::data::check_split_gaps(&args.data, "train", crate::router_cmd::TRAIN_HINT)?;
    if files.is_empty() {
        bail!("no data for the new labels: --data names no jsonl file and no directory with train.jsonl");
    }
    let new = read_all(&files, &fields)?;
    if new.is_empty() {
        bail!(
            "no examples for the new labels in {} (empty file?)",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let dev = read_all(
        &crate::router_cmd::dev_files(&args.data, &args.dev, &files)?,
        &fields,
    )?;
    let cfg = ExtendConfig {
        steps: args.extend_steps,
        seed: args.seed,
        progress: !args.quiet,
        ..ExtendConfig::default()
    };
    eprintln!(
        "extending {} ({} labels) with {} examples from {} file(s)",
        dir.display(),
        router.labels().len(),
        new.len(),
        files.len()
    );
    // Dev examples of labels the extended router will know (old labels' dev data is optional).
    let out = extend(&router, &stats, &new, &cfg)?;
    let known: Vec<_> = dev
        .into_iter()
        .filter(|e| out.router.labels().contains(&e.label))
        .collect();
    let dev_metrics = if known.is_empty() {
        None
    } else {
        let mut d = dlp_router::extend::dev_metrics(&out.router, &known)?;
        // Usually the new labels' dev data alone: said so wherever the figures are shown (they
        // had read as the whole router's).
        let mut covered: Vec<String> = known.iter().map(|e| e.label.clone()).collect();
        covered.sort_unstable();
        covered.dedup();
        if covered.len() < out.router.labels().len() {
            d.labels = covered;
        }
        Some(d)
    };
    let mut extended = out.router;
    extended.set_feature_stats(STATS_FILE);
    // The extended router's own figures (`inspect` showed the old router's).
    extended.set_dev_metrics(dev_metrics.clone());
    let tokenizer = router.config().tokenizer_path(dir);
    // In place (`--extend A --out A`) too: A is read whole above, then its files replaced,
    // all or none.
    crate::output::write_files_atomic(&args.out, dlp_router::config::CONFIG_FILE, |dir| {
        extended.save_self_contained(dir, &tokenizer)?;
        Ok(out.stats.save(&dir.join(STATS_FILE))?)
    })?;
    outln!(
        "added {} label(s): {} (now {}: {})",
        out.new_labels.len(),
        out.new_labels.join(", "),
        extended.labels().len(),
        extended.labels().join(", ")
    );
    outln!(
        "fitted the new output rows in {:.1} s (body and old rows unchanged)",
        out.seconds
    );
    if let Some(d) = dev_metrics {
        outln!("dev ({}): {d}", d.texts());
    }
    outln!("wrote {}", args.out.display());
    Ok(())
}
