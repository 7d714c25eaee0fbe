//! Labelled text examples from jsonl files, and finding those files in a data directory.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::RouterError;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// What the router reads (e.g. the `instruction` field).
    pub text: String,
    /// The class (e.g. the `task` field): an adapter name.
    pub label: String,
}

/// Which jsonl fields hold the text and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Name of the text field.
    pub text: String,
    /// Name of the label field.
    pub label: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            text: "instruction".into(),
            label: "task".into(),
        }
    }
}

/// Reads every line of a jsonl file as an [`Example`]; blank lines are skipped. A line without
/// the text or label field (or with a non-string one) is an error naming the file and line.
pub fn read_jsonl(path: &Path, fields: &Fields) -> Result<Vec<Example>, RouterError> {
    let file = std::fs::File::open(path).map_err(|e| RouterError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| RouterError::io(path, e))?;
        // A byte-order mark (as Windows editors save UTF-8) is not part of the first object.
        let line = match line.strip_prefix('\u{feff}') {
            Some(rest) if n == 0 => rest.to_string(),
            _ => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| RouterError::Json {
            path: at(),
            msg: e.to_string(),
        })?;
        // serde_json keeps the last of two equal keys: `{"task": "a", ..., "task": "b"}`
        // would train on one label of two without a word.
        if let Some(k) = duplicate_top_key(&line) {
            return Err(RouterError::Json {
                path: at(),
                msg: format!("key {k:?} is given twice"),
            });
        }
        let field = |name: &str| {
            v.get(name).and_then(|x| x.as_str()).map(str::to_string).ok_or_else(|| RouterError::Json {
                path: at(),
                msg: format!("no string field {name:?} (choose fields with --text-field / --label-field)"),
            })
        };
        let label = field(&fields.label)?;
        // A label names an adapter (`--adapter NAME=DIR`, `--mix NAME=W,...`): one those
        // cannot spell would be trained and never routed to.
        if label.is_empty() || label.contains([',', '=']) || label.trim() != label {
            return Err(RouterError::Json {
                path: at(),
                msg: format!("label {label:?} (field {:?}): an adapter name, non-empty, without `,` or `=` or surrounding spaces", fields.label),
            });
        }
        let text = field(&fields.text)?;
        // Nothing to route by: the router would learn the label of its empty mean.
        if text.trim().is_empty() {
            return Err(RouterError::Json {
                path: at(),
                msg: format!("field {:?} is empty (a text to route by)", fields.text),
            });
        }
        out.push(Example { text, label });
    }
    Ok(out)
}

/// The first key given twice at the top level of the JSON object `line`, if any (values are
/// skipped, not built); None for anything else, which the real parse reports.
fn duplicate_top_key(line: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(k.clone()) {
                    return Ok(Some(k));
                }
            }
            Ok(None)
        }
    }
    serde_json::Deserializer::from_str(line)
        .deserialize_map(Keys)
        .ok()
        .flatten()
}

/// The entries of folder `dir`, in name order (unreadable entries left out).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = (std::fs::read_dir(dir)?)
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// What [`find_split_files`] skips without a word: folders named in `inputs` that give no
/// `<split>.jsonl` at all, and task folders (subfolders of a named folder that hold `.jsonl`
/// files) without one.
#[derive(Debug, Default, PartialEq)]
pub struct SplitGaps {
    /// Named folders with no `<split>.jsonl` in them or their subfolders, each with the
    /// `.jsonl` files it does hold (its own and its subfolders', names relative to it).
    pub named: Vec<(PathBuf, Vec<String>)>,
    /// Task folders without `<split>.jsonl`, in a named folder that gives some.
    pub task_folders: Vec<PathBuf>,
}

/// The [`SplitGaps`] of `inputs` for `split` (inputs that are not folders are skipped: files
/// are taken as given, and [`find_split_files`] names what does not exist).
pub fn split_gaps(inputs: &[PathBuf], split: &str) -> SplitGaps {
    let name = format!("{split}.jsonl");
    let jsonl = |dir: &Path| -> Vec<String> {
        (sorted_entries(dir).unwrap_or_default().iter())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    };
    let mut gaps = SplitGaps::default();
    for input in inputs.iter().filter(|p| p.is_dir()) {
        let subdirs: Vec<PathBuf> = (sorted_entries(input).unwrap_or_default().into_iter())
            .filter(|p| p.is_dir())
            .collect();
        let own = input.join(&name).is_file();
        let (with, without): (Vec<&PathBuf>, Vec<&PathBuf>) =
            subdirs.iter().partition(|d| d.join(&name).is_file());
        let tasks_without: Vec<PathBuf> = without
            .into_iter()
            .filter(|d| !jsonl(d).is_empty())
            .cloned()
            .collect();
        if own || !with.is_empty() {
            gaps.task_folders.extend(tasks_without);
            continue;
        }
        let mut held = jsonl(input);
        for d in &subdirs {
            let sub = d.file_name().map(|n| n.to_string_lossy().into_owned());
            held.extend(
                jsonl(d)
                    .into_iter()
                    .map(|f| format!("{}/{f}", sub.clone().unwrap_or_default())),
            );
        }
        gaps.named.push((input.clone(), held));
    }
    gaps
}

/// Finds the `<split>.jsonl` files that `inputs` name: a file is taken as given; a directory
/// contributes `DIR/<split>.jsonl` and `DIR/*/<split>.jsonl` (one level of task folders, in
/// name order). An input that yields nothing is not an error here; callers check the total.
pub fn find_split_files(inputs: &[PathBuf], split: &str) -> Result<Vec<PathBuf>, RouterError> {
    let name = format!("{split}.jsonl");
    let mut out: Vec<PathBuf> = Vec::new();
    for input in inputs {
        if input.is_file() {
            out.push(input.clone());
            continue;
        }
        if input.exists() && !input.is_dir() {
            // A pipe (`<(...)`) or a device: read whole, or without end (/dev/zero).
            return Err(RouterError::Data(format!(
                "{}: not a regular file or a folder (data is read from .jsonl files; write a \
                 pipe's output to a file first)",
                input.display()
            )));
        }
        if !input.is_dir() {
            return Err(RouterError::Data(format!(
                "{}: no such file or directory",
                input.display()
            )));
        }
        if input.join(&name).is_file() {
            out.push(input.join(&name));
        }
        let subdirs: Vec<PathBuf> = (sorted_entries(input)
            .map_err(|e| RouterError::io(input, e))?)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
        out.extend(
            subdirs
                .into_iter()
                .map(|d| d.join(&name))
                .filter(|f| f.is_file()),
        );
    }
    // A file read twice counts twice: every figure (training data, dev accuracy, an eval's
    // scores) would weigh it double without a word.
    let keys: Vec<PathBuf> = out.iter().map(|f| file_key(f)).collect();
    for (i, f) in out.iter().enumerate() {
        if keys[..i].contains(&keys[i]) {
            return Err(RouterError::Data(format!(
                "{} is read twice (named twice, or by name and through its folder); name each \
                 file or folder once",
                f.display()
            )));
        }
    }
    Ok(out)
}

/// What tells two names of one file apart from two files: the canonical path (links and
/// `..` resolved), or the path as given where it cannot be resolved.
pub fn file_key(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Reads and concatenates several jsonl files.
pub fn read_all(files: &[PathBuf], fields: &Fields) -> Result<Vec<Example>, RouterError> {
    let mut out = Vec::new();
    for f in files {
        out.extend(read_jsonl(f, fields)?);
    }
    Ok(out)
}

/// Moves a `fraction` of each label's examples (at least one, when the label has two or more)
/// from `train` into a dev split, chosen by `seed`. Stratified, so small tasks keep a dev share.
pub fn hold_out(train: Vec<Example>, fraction: f32, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let mut by_label: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    for ex in train {
        by_label.entry(ex.label.clone()).or_default().push(ex);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut keep, mut dev) = (Vec::new(), Vec::new());
    for (_, mut exs) in by_label {
        exs.shuffle(&mut rng);
        let n = if exs.len() >= 2 {
            ((exs.len() as f32 * fraction).round() as usize).clamp(1, exs.len() - 1)
        } else {
            0
        };
        dev.extend(exs.drain(..n));
        keep.extend(exs);
    }
    (keep, dev)
}

/// The sorted distinct labels of `examples`.
pub fn labels_of(examples: &[Example]) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    set.into_iter().map(str::to_string).collect()
}
