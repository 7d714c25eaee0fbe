//! Task examples for `dlp-run eval`: the jsonl files of `../shared/data/tasks`, which adapter
//! answers which task (the oracle, and router labels without an adapter of their own), and
//! composed prompts that ask several tasks' questions at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dlp_router::metrics::{default_families, family_of};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde_json::Value;

use super::metrics::Kind;

/// One question: its text, the gold solution and answer, and how it is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The task it comes from.
    pub task: String,
    /// The user message.
    pub instruction: String,
    /// The gold solution text (BLEU / ROUGE reference; teacher-forced continuation).
    pub output: String,
    /// The gold answer (option label or number).
    pub answer: String,
    /// How it is scored.
    pub kind: Kind,
}

/// Refuses a `--split` other than the default `dev` where every `--data` is a file and none
/// is that split's `<split>.jsonl`: the split picks the file of a data folder, so it would
/// be ignored (`--split test` on a dev file evaluated the dev file).
pub fn check_split_applies(inputs: &[PathBuf], split: &str) -> Result<()> {
    let named = |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| *n == *format!("{split}.jsonl"))
    };
    if split != "dev"
        && !inputs.is_empty()
        && inputs.iter().all(|p| p.is_file())
        && !inputs.iter().any(named)
    {
        bail!(
            "--split {split} picks the {split}.jsonl of a data folder, but every --data here is a \
             file, read as it is; name the {split}.jsonl files or give their folders"
        );
    }
    Ok(())
}

/// Refuses a `--data` folder that gives no `<split>.jsonl` (it had been dropped without a word,
/// the run going on with the other tasks), saying what it holds and `hint` (how the command
/// picks a folder's file); notes task folders without one (a folder of tasks may mix).
pub fn check_split_gaps(inputs: &[PathBuf], split: &str, hint: &str) -> Result<()> {
    let gaps = dlp_router::data::split_gaps(inputs, split);
    if let Some((dir, held)) = gaps.named.first() {
        let held = match held.len() {
            0 => "no .jsonl files".to_string(),
            n if n > 6 => format!("{}, ... ({n} .jsonl files)", held[..6].join(", ")),
            _ => held.join(", "),
        };
        bail!(
            "--data {}: no {split}.jsonl in it or in its task folders (it holds {held}); {hint}",
            dir.display()
        );
    }
    if !gaps.task_folders.is_empty() {
        let shown: Vec<String> = gaps
            .task_folders
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        eprintln!(
            "note: --data: {} task folder(s) without {split}.jsonl left out: {}",
            shown.len(),
            shown.join(", ")
        );
    }
    Ok(())
}

/// The jsonl files named by `--data`: files as given; directories as `DIR/<split>.jsonl` or
/// `DIR/<task>/<split>.jsonl`.
pub fn data_files(inputs: &[PathBuf], split: &str) -> Result<Vec<PathBuf>> {
    check_split_applies(inputs, split)?;
    let files = dlp_router::data::find_split_files(inputs, split)?;
    check_split_gaps(
        inputs,
        split,
        "--split picks which file of a folder is read",
    )?;
    if files.is_empty() {
        bail!(
            "--data: no {split}.jsonl found in {} (give jsonl files, or directories holding <task>/{split}.jsonl)",
            inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(files)
}

/// Reads every example of `path`, checking each line's fields.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    // A byte-order mark (as Windows editors save UTF-8) is not part of the first object.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let field = |name: &str| -> Result<String> {
            match v.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                // Numeric answers are sometimes stored as numbers.
                Some(Value::Number(n)) if name == "answer" => Ok(n.to_string()),
                Some(other) => bail!("{}: field `{name}` must be a string, found {other}", at()),
                None => bail!(
                    "{}: missing field `{name}` (each line needs task, instruction, output, answer, kind)",
                    at()
                ),
            }
        };
        let kind = match field("kind")?.as_str() {
            "mcq" => Kind::Mcq,
            "qa" => Kind::Qa,
            other => bail!(
                "{}: unknown `kind` {other:?} (expected \"mcq\" or \"qa\")",
                at()
            ),
        };
        // An empty question, task or answer would be asked, grouped or scored as if it were
        // a real one.
        let nonempty = |name: &str| -> Result<String> {
            let s = field(name)?;
            if s.trim().is_empty() {
                bail!("{}: field `{name}` is empty", at());
            }
            Ok(s)
        };
        let answer = nonempty("answer")?;
        // One no completion can match ("yes" for an mcq task) made every example silently
        // wrong: an mcq answer, read as a completion, must score as itself; a qa answer must
        // read as a number (`.5` does: a completion's 0.5 matches it).
        let scorable = match kind {
            Kind::Mcq => super::metrics::correct(kind, &answer, &answer),
            Kind::Qa => answer
                .trim()
                .replace(',', "")
                .parse::<f64>()
                .is_ok_and(f64::is_finite),
        };
        if !scorable {
            let rule = match kind {
                Kind::Mcq => "an mcq answer is read as true/false, answerN, solutionN, optionN or one letter a-e",
                Kind::Qa => "a qa answer is a number",
            };
            bail!(
                "{}: `answer` {answer:?} can never be scored right: {rule}",
                at()
            );
        }
        out.push(Example {
            task: nonempty("task")?,
            instruction: nonempty("instruction")?,
            output: field("output")?,
            answer,
            kind,
        });
    }
    if out.is_empty() {
        bail!("{}: no examples (empty file)", path.display());
    }
    Ok(out)
}

/// Every example of `files`, at most `limit` per task (the first ones, in file order), grouped
/// by task in the order tasks first appear.
pub fn load(files: &[PathBuf], limit: Option<usize>) -> Result<Vec<(String, Vec<Example>)>> {
    let mut by_task: Vec<(String, Vec<Example>)> = Vec::new();
    for f in files {
        for e in read_examples(f)? {
            let i = match by_task.iter().position(|(t, _)| *t == e.task) {
                // A task is scored one way (its first example's kind labelled it all).
                Some(i) if by_task[i].1.first().is_some_and(|x| x.kind != e.kind) => bail!(
                    "{}: task `{}` has examples of kind {} and of kind {}; a task is scored one way (give the others their own task name)",
                    f.display(),
                    e.task,
                    by_task[i].1[0].kind.name(),
                    e.kind.name()
                ),
                Some(i) => i,
                None => {
                    by_task.push((e.task.clone(), Vec::new()));
                    by_task.len() - 1
                }
            };
            if limit.is_none_or(|n| by_task[i].1.len() < n) {
                by_task[i].1.push(e);
            }
        }
    }
    Ok(by_task)
}

/// Parses `--label-map task=adapter,...`.
pub fn parse_label_map(s: Option<&str>) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for part in s.unwrap_or("").split(',').filter(|p| !p.trim().is_empty()) {
        let (t, a) = part
            .split_once('=')
            .with_context(|| format!("--label-map `{part}`: expected TASK=ADAPTER"))?;
        m.insert(t.trim().to_string(), a.trim().to_string());
    }
    Ok(m)
}

/// The adapter that answers `task`: `--label-map`'s choice; the task's own adapter; the math
/// word-problem sets (and aqua) gsm8k's; else the first adapter of the task's family.
pub fn adapter_for(
    task: &str,
    adapters: &[String],
    map: &BTreeMap<String, String>,
) -> Result<String> {
    if let Some(a) = map.get(task) {
        if !adapters.contains(a) {
            bail!(
                "--label-map {task}={a}: no adapter `{a}` is loaded (loaded: {})",
                adapters.join(", ")
            );
        }
        return Ok(a.clone());
    }
    if adapters.iter().any(|a| a == task) {
        return Ok(task.to_string());
    }
    let families = default_families();
    let fam = family_of(&families, task);
    let math = fam == "math_word" || task == "aqua";
    if math && adapters.iter().any(|a| a == "gsm8k") {
        return Ok("gsm8k".into());
    }
    if let Some((_, members)) = families.iter().find(|(n, _)| n == fam) {
        if let Some(a) = members.iter().find(|m| adapters.contains(m)) {
            return Ok(a.clone());
        }
    }
    bail!(
        "task `{task}` has no adapter: load one named `{task}`, or map it with --label-map {task}=ADAPTER (loaded: {})",
        adapters.join(", ")
    )
}

/// A prompt that asks the questions of `parts` (different tasks) one after another.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The questions, in prompt order.
    pub parts: Vec<Example>,
    /// The user message.
    pub instruction: String,
}

/// `n` composed prompts of `k` questions from `k` different tasks each, deterministic for
/// `seed`; every question is used at most once.
pub fn compose(
    tasks: &[(String, Vec<Example>)],
    k: usize,
    n: usize,
    seed: u64,
) -> Result<Vec<Composed>> {
    if tasks.len() < 2 {
        bail!(
            "--compose {k}: composing needs at least 2 tasks loaded, there are {}",
            tasks.len()
        );
    }
    if k < 2 || k > tasks.len() {
        bail!(
            "--compose {k}: each value must be from 2 to {} (the number of tasks loaded)",
            tasks.len()
        );
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pools: Vec<Vec<&Example>> = tasks
        .iter()
        .map(|(_, ex)| {
            let mut v: Vec<&Example> = ex.iter().collect();
            v.shuffle(&mut rng);
            v
        })
        .collect();
    // At most every question once: `n` may be far more (`--compose-n 1000000000` had asked
    // for 48 GB up front).
    let questions: usize = pools.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(n.min(questions / k));
    for _ in 0..n {
        let mut order: Vec<usize> = (0..pools.len()).filter(|&t| !pools[t].is_empty()).collect();
        if order.len() < k {
            break;
        }
        order.shuffle(&mut rng);
        let parts: Vec<Example> = order[..k]
            .iter()
            .map(|&t| pools[t].pop().expect("non-empty").clone())
            .collect();
        let instruction = parts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("Question {}: {}", i + 1, p.instruction.trim()))
            .collect::<Vec<_>>()
            .join("\n\n");
        out.push(Composed { parts, instruction });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// A file saved with a UTF-8 byte-order mark reads as without one.
    #[test]
    fn a_byte_order_mark_before_the_first_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.jsonl");
        let line = r#"{"task": "boolq", "instruction": "q?", "output": "true", "answer": "true", "kind": "mcq"}"#;
        std::fs::write(&path, format!("\u{feff}{line}\n{line}\n")).unwrap();
        let ex = super::read_examples(&path).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].task, "boolq");
    }

    /// `--split` picks a folder's file: refused where every input is a file of another name
    /// (it would be ignored), taken where a folder or the split's own file is given.
    #[test]
    fn split_applies_to_folders_or_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, test) = (dir.path().join("dev.jsonl"), dir.path().join("test.jsonl"));
        std::fs::write(&dev, "").unwrap();
        std::fs::write(&test, "").unwrap();
        let check =
            |inputs: &[std::path::PathBuf], split| super::check_split_applies(inputs, split);
        let e = check(std::slice::from_ref(&dev), "test")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--split test picks the test.jsonl of a data folder"),
            "{e}"
        );
        assert!(check(std::slice::from_ref(&dev), "dev").is_ok());
        assert!(check(std::slice::from_ref(&test), "test").is_ok());
        assert!(check(&[dir.path().to_path_buf()], "test").is_ok());
    }

    /// Far more composed prompts asked for than the questions make: as many as they make,
    /// each question once (a count of 1e9 had aborted on a 48 GB allocation).
    #[test]
    fn compose_n_is_bounded_by_the_questions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.jsonl");
        let line = |task: &str, i: usize| {
            format!(
                r#"{{"task": "{task}", "instruction": "q{i}?", "output": "true", "answer": "true", "kind": "mcq"}}"#
            )
        };
        let lines: Vec<String> = (0..3).flat_map(|i| [line("a", i), line("b", i)]).collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let ex = super::read_examples(&path).unwrap();
        let split = |t: &str| ex.iter().filter(|e| e.task == t).cloned().collect();
        let tasks = vec![("a".to_string(), split("a")), ("b".to_string(), split("b"))];
        let c = super::compose(&tasks, 2, 1_000_000_000, 7).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|p| p.parts[0].task != p.parts[1].task));
    }
}
