//! train-router's checks of its data and of the memory free, before and after training: what
//! would make a training fail late, or its figures mislead.

use anyhow::{bail, Result};
use dlp_router::data::Example;

use crate::router_cmd::TrainRouterArgs;

/// Notes a calibration to be wary of: a temperature at an end of the fit's search range (0.25
/// to 8; stopped there, not at the best: an under-trained router), or one fitted on a handful
/// of dev texts (fitted to themselves).
pub fn note_calibration(temperature: f32, dev_texts: usize) {
    if !(0.26..=7.9).contains(&temperature) {
        eprintln!(
            "note: the calibration temperature {temperature:.3} is at the end of its search range (0.25 to 8): the router may be under-trained (more --epochs) or the dev data unlike the training data"
        );
    }
    if dev_texts < 30 {
        eprintln!(
            "note: the calibration temperature was fitted on {dev_texts} dev text(s): give more dev data for probabilities top-p can rely on"
        );
    }
}

/// Refuses, before training, a router whose training would not fit in the memory free: its
/// parameters four times (weights, gradients, AdamW's two moments) and the per-label feature
/// statistics (two f64 covariances of the last hidden width squared per label, kept for
/// `--extend`). A note gives the statistics' size on disk where it passes 100 MB.
pub fn check_training_memory(
    args: &TrainRouterArgs,
    train: &[Example],
    vocab: usize,
) -> Result<()> {
    let labels: std::collections::BTreeSet<&str> = train.iter().map(|e| e.label.as_str()).collect();
    let (params, stats) = router_sizes(args.embed_dim, &args.hidden, labels.len(), vocab);
    let last = args.hidden.last().copied().unwrap_or(args.embed_dim);
    let need = params * 4 * 4 + stats * 8;
    if stats * 4 > 100_000_000 {
        eprintln!(
            "note: the feature statistics (for --extend) take {:.0} MB on disk: {} labels x 2 x {last}^2 (the last --hidden width squared)",
            (stats * 4) as f64 / 1e6,
            labels.len()
        );
    }
    if let Some(free) = crate::bench_memory::available_bytes() {
        if need > u128::from(free) {
            bail!(
                "train-router: --embed-dim {} --hidden {}: training needs about {:.1} GB ({params} parameters x 4 copies, and {:.1} GB of feature statistics), more than the {:.1} GB of memory free; use narrower layers",
                args.embed_dim,
                args.hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                need as f64 / 1e9,
                (stats * 8) as f64 / 1e9,
                free as f64 / 1e9
            );
        }
    }
    Ok(())
}

/// A router's parameters (the embedding table, then each layer's weights and biases) and its
/// feature statistics' values (two `width^2` covariances per label of the last hidden
/// width, the means aside).
fn router_sizes(embed: usize, hidden: &[usize], labels: usize, vocab: usize) -> (u128, u128) {
    let mut widths = vec![embed];
    widths.extend(hidden);
    widths.push(labels);
    let mlp: u128 = (widths.windows(2))
        .map(|w| (w[0] as u128 + 1) * w[1] as u128)
        .sum();
    let last = hidden.last().copied().unwrap_or(embed) as u128;
    (
        vocab as u128 * embed as u128 + mlp,
        labels as u128 * 2 * last * last,
    )
}

/// Says which labels have no dev examples: early stopping and calibration then judge the
/// router on the others alone. `held_out`: the dev set was held out of the training data
/// (a label with one example keeps it), else read from dev files (some tasks' only).
pub fn warn_labels_without_dev(train: &[Example], dev: &[Example], held_out: bool) {
    let in_dev: std::collections::BTreeSet<&str> = dev.iter().map(|e| e.label.as_str()).collect();
    let mut missing: Vec<&str> = (train.iter())
        .map(|e| e.label.as_str())
        .filter(|l| !in_dev.contains(l))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    let fix = if held_out {
        "they have too few training examples to hold one out; add examples, or give dev data \
         (--dev)"
    } else {
        "give their dev data (--dev), or give no dev files so that a share of each label's \
         training examples is held out"
    };
    eprintln!(
        "warning: no dev examples for label(s) {}: early stopping and calibration judge the \
         router on the others only; {fix}",
        missing.join(", ")
    );
}

/// Notes dev texts that also occur in the training data (the same file is refused; a copy, or
/// benchmarks that share items, are not): the dev figures, early stopping and calibration
/// count them as unseen; under another label they can never be right.
pub fn note_dev_in_train(train: &[Example], dev: &[Example]) {
    // A text may be trained under several labels.
    let mut seen: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for e in train {
        seen.entry(e.text.trim()).or_default().push(&e.label);
    }
    let (mut same, mut other) = (0usize, 0usize);
    for e in dev {
        match seen.get(e.text.trim()) {
            Some(ls) if ls.contains(&e.label.as_str()) => same += 1,
            Some(_) => other += 1,
            None => {}
        }
    }
    if same + other > 0 {
        eprintln!(
            "note: {} of {} dev texts also occur in the training data ({same} under the same label, {other} under another): the dev figures count them as unseen",
            same + other,
            dev.len()
        );
    }
}

/// A router chooses among labels: training one from a single label gives a router that
/// always picks it (with no loss to learn from).
pub fn check_labels(train: &[Example], field: &str) -> Result<()> {
    let mut labels: Vec<&str> = train.iter().map(|e| e.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    match labels[..] {
        [] => bail!("the training data has no examples (the jsonl files are empty)"),
        [only] => bail!(
            "the training data has one label (`{field}` = {only:?} in all {} examples); a router needs at least 2 to choose among (to add a label to a trained router, use --extend)",
            train.len()
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// The paper's size with SmolLM2's vocabulary (about 5M parameters), and the statistics
    /// of the widest layers the flags allow (16 labels of 16384: 34 GB of f64 covariances).
    #[test]
    fn router_sizes_count_parameters_and_statistics() {
        let (params, stats) = super::router_sizes(96, &[384, 384, 192], 14, 49152);
        let mlp = 97 * 384 + 385 * 384 + 385 * 192 + 193 * 14;
        assert_eq!(params, 49152 * 96 + mlp);
        assert!((4_900_000..5_100_000).contains(&params), "{params}");
        assert_eq!(stats, 14 * 2 * 192 * 192);
        let (_, wide) = super::router_sizes(96, &[16384], 16, 49152);
        assert_eq!(wide * 8, 16 * 2 * 16384 * 16384 * 8);
    }
}
