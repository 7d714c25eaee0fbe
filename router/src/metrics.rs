//! Router evaluation: top-1, family top-1, top-p containment, mixture size, confusion matrix.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::data::Example;
use crate::select::{select, SelectConfig};
use crate::RouterError;

/// A named group of labels that are interchangeable enough that confusing them is benign.
pub type Family = (String, Vec<String>);

/// The families of the 14 benchmark tasks: commonsense tasks stand alone, the three
/// science-QA sets (same answer format) form one family, and the six math word-problem sets
/// another. A label in no family is its own family.
pub fn default_families() -> Vec<Family> {
    let f = |name: &str, members: &[&str]| {
        (
            name.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        )
    };
    vec![
        f("boolq", &["boolq"]),
        f("piqa", &["piqa"]),
        f("social_iqa", &["social_iqa"]),
        f("winogrande", &["winogrande"]),
        f("science_qa", &["arc_challenge", "arc_easy", "openbookqa"]),
        f("aqua", &["aqua"]),
        f(
            "math_word",
            &[
                "gsm8k",
                "addsub",
                "multiarith",
                "singleeq",
                "svamp",
                "mawps",
            ],
        ),
    ]
}

/// The family that `label` belongs to (its own name if none lists it).
pub fn family_of<'a>(families: &'a [Family], label: &'a str) -> &'a str {
    families
        .iter()
        .find(|(_, m)| m.iter().any(|x| x == label))
        .map_or(label, |(n, _)| n.as_str())
}

/// Each example's label as an index into `labels`; labels the router does not know are an error
/// listing them all.
pub fn truth_indices(labels: &[String], examples: &[Example]) -> Result<Vec<usize>, RouterError> {
    let mut unknown = std::collections::BTreeSet::new();
    let idx: Vec<usize> = examples
        .iter()
        .map(|e| {
            labels
                .iter()
                .position(|l| *l == e.label)
                .unwrap_or_else(|| {
                    unknown.insert(e.label.clone());
                    usize::MAX
                })
        })
        .collect();
    if !unknown.is_empty() {
        return Err(RouterError::Data(format!(
            "labels {unknown:?} are not among the router's labels {labels:?} (wrong --label-field, or data the router was not trained for)"
        )));
    }
    Ok(idx)
}

/// Everything `eval-router` measures. Fractions are in 0..1.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Number of evaluated texts.
    pub examples: usize,
    /// The top-p threshold used for containment and mixture size.
    pub p: f32,
    /// The top-k cap of the selected set, where one was set.
    pub top_k: Option<usize>,
    /// The cap on adapters per mixture, where one was set.
    pub max_adapters: Option<usize>,
    /// Share of texts whose most probable label is the true one.
    pub top1: f32,
    /// Share of texts whose most probable label is in the true label's family.
    pub family_top1: f32,
    /// Share of texts whose true label is inside the selected set.
    pub topp_containment: f32,
    /// Mean number of adapters in the selected set.
    pub mean_adapters: f32,
    /// Mean cross-entropy of the true label (nats).
    pub loss: f32,
    /// Top-1 per true label.
    pub per_task_top1: BTreeMap<String, f32>,
    /// Containment per true label.
    pub per_task_topp_containment: BTreeMap<String, f32>,
    /// Texts per true label.
    pub per_task_examples: BTreeMap<String, usize>,
    /// Family top-1 per true family.
    pub per_family_top1: BTreeMap<String, f32>,
    /// Row/column names of `confusion`: the router's labels.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]` counts of top-1 predictions.
    pub confusion: Vec<Vec<usize>>,
}

/// Scores probability rows against true label indices. `cfg` chooses the selected set (its
/// `top_p` is reported as `p`).
pub fn evaluate(
    labels: &[String],
    probs: &[Vec<f32>],
    truth: &[usize],
    cfg: &SelectConfig,
    families: &[Family],
) -> EvalReport {
    let n = labels.len();
    let mut confusion = vec![vec![0usize; n]; n];
    let (mut fam_ok, mut contained, mut kept, mut loss) = (0usize, 0usize, 0usize, 0f64);
    let mut per_contained = vec![0usize; n];
    let mut per_fam: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (p, &t) in probs.iter().zip(truth) {
        let sel = select(p, cfg);
        let top = sel[0].0;
        confusion[t][top] += 1;
        let fam_hit = family_of(families, &labels[top]) == family_of(families, &labels[t]);
        fam_ok += fam_hit as usize;
        let e = per_fam
            .entry(family_of(families, &labels[t]).to_string())
            .or_default();
        e.0 += fam_hit as usize;
        e.1 += 1;
        if sel.iter().any(|&(i, _)| i == t) {
            contained += 1;
            per_contained[t] += 1;
        }
        kept += sel.len();
        loss -= (p[t].max(1e-12) as f64).ln();
    }
    let total = probs.len().max(1) as f32;
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    let mut per_task_top1 = BTreeMap::new();
    let mut per_task_topp_containment = BTreeMap::new();
    let mut per_task_examples = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        let rows: usize = confusion[i].iter().sum();
        if rows > 0 {
            per_task_top1.insert(l.clone(), frac(confusion[i][i], rows));
            per_task_topp_containment.insert(l.clone(), frac(per_contained[i], rows));
            per_task_examples.insert(l.clone(), rows);
        }
    }
    EvalReport {
        examples: probs.len(),
        p: cfg.top_p.unwrap_or(1.0),
        top_k: cfg.top_k.filter(|&k| k > 0),
        max_adapters: cfg.max_adapters.filter(|&k| k > 0),
        top1: (0..n).map(|i| confusion[i][i]).sum::<usize>() as f32 / total,
        family_top1: fam_ok as f32 / total,
        topp_containment: contained as f32 / total,
        mean_adapters: kept as f32 / total,
        loss: (loss / total as f64) as f32,
        per_task_top1,
        per_task_topp_containment,
        per_task_examples,
        per_family_top1: per_fam
            .into_iter()
            .map(|(k, (a, b))| (k, frac(a, b)))
            .collect(),
        labels: labels.to_vec(),
        confusion,
    }
}

impl EvalReport {
    /// A human summary: headline metrics, then one line per task.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let pct = |x: f32| format!("{:.1}%", 100.0 * x);
        // The selected set's limits, all of them (a cap had been left out of the label).
        let mut set = format!("top-p(p={}", self.p);
        if let Some(k) = self.top_k {
            let _ = write!(set, ", top-k {k}");
        }
        if let Some(m) = self.max_adapters {
            let _ = write!(set, ", max {m} adapters");
        }
        let _ = writeln!(
            s,
            "{} texts  top-1 {}  family top-1 {}  {set}) containment {}  mean adapters {:.2}  loss {:.3}",
            self.examples,
            pct(self.top1),
            pct(self.family_top1),
            pct(self.topp_containment),
            self.mean_adapters,
            self.loss
        );
        let _ = writeln!(
            s,
            "{:<16} {:>6} {:>8} {:>11}",
            "task", "n", "top-1", "containment"
        );
        for (t, acc) in &self.per_task_top1 {
            let _ = writeln!(
                s,
                "{t:<16} {:>6} {:>8} {:>11}",
                self.per_task_examples[t],
                pct(*acc),
                pct(self.per_task_topp_containment[t])
            );
        }
        s
    }

    /// The confusion matrix as a text table: rows are true labels, columns predicted labels
    /// (numbered, with the numbering on the rows).
    pub fn confusion_table(&self) -> String {
        let mut s = String::from(
            "confusion matrix (rows: true label, columns: top-1 prediction, by number)\n",
        );
        let w = self.labels.iter().map(String::len).max().unwrap_or(4);
        let _ = write!(s, "{:>w$}    ", "", w = w + 3);
        for j in 0..self.labels.len() {
            let _ = write!(s, "{j:>5}");
        }
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            let _ = write!(s, "{i:>2} {:<w$}    ", self.labels[i], w = w);
            for c in row {
                if *c == 0 {
                    s += "    .";
                } else {
                    let _ = write!(s, "{c:>5}");
                }
            }
            s.push('\n');
        }
        s
    }
}
