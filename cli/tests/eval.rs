//! `dlp-run eval` end to end on SmolLM2 with the shared task adapters (a reduced run: three
//! tasks, ten examples each, three modes): the JSON keys that outside checks read, `oracle`
//! equal to `generate` with the same prompts and adapter, BLEU/ROUGE on the `qa` task, and
//! clear errors for bad data.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

#[path = "common/run.rs"]
mod run_cmd;
use run_cmd::{run, succeeds};

struct Setup {
    gguf: PathBuf,
    adapters: PathBuf,
    data: PathBuf,
}

fn setup() -> Option<Setup> {
    let smol = dlp_tests::fixtures("smollm2")?;
    Some(Setup {
        gguf: smol.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        adapters: dlp_tests::shared("adapters/smollm2-tasks")?,
        data: dlp_tests::shared("data/tasks")?,
    })
}

impl Setup {
    fn model_args(&self, adapters: &[&str]) -> Vec<String> {
        let mut a = vec![
            "--model".into(),
            self.gguf.display().to_string(),
            "--backend".into(),
            "cpu".into(),
        ];
        for t in adapters {
            a.push("--adapter".into());
            a.push(format!("{t}={}", self.adapters.join(t).display()));
        }
        a
    }
}

fn first_instructions(data: &Path, task: &str, n: usize) -> Vec<String> {
    std::fs::read_to_string(data.join(task).join("dev.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["instruction"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn reduced_eval_keys_and_oracle_equals_generate() {
    let Some(s) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("eval.json");
    let tasks = ["boolq", "piqa", "gsm8k"];
    let mut args: Vec<String> = vec!["eval".into()];
    args.extend(s.model_args(&tasks));
    args.push("--data".into());
    args.extend(tasks.iter().map(|t| s.data.join(t).display().to_string()));
    args.extend(
        [
            "--modes",
            "base,oracle,teacher-forced",
            "--limit",
            "10",
            "--batch",
            "10",
            "--max-tokens",
            "24",
            "--json",
        ]
        .map(String::from),
    );
    args.push(json.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = succeeds(&argv);
    let table = String::from_utf8_lossy(&out.stdout);
    for t in tasks {
        assert!(table.contains(t), "{table}");
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for t in tasks {
        for m in ["base", "oracle", "teacher-forced"] {
            let acc = v["per_task"][t][m]["accuracy"]
                .as_f64()
                .unwrap_or_else(|| panic!("{t}/{m}: {v}"));
            assert!((0.0..=1.0).contains(&acc));
            assert_eq!(v["per_task"][t][m]["n"], 10);
        }
    }
    for key in ["bleu", "rouge1", "rougeL"] {
        let x = v["per_task"]["gsm8k"]["oracle"][key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&x), "{key} {x}");
        assert!(
            v["per_task"]["boolq"]["oracle"].get(key).is_none(),
            "no {key} for mcq"
        );
    }
    for m in ["base", "oracle", "teacher-forced"] {
        assert!(v["mean"][m]["accuracy"].is_number(), "{m}");
        assert!(v["time_per_example_s"][m].as_f64().unwrap() > 0.0, "{m}");
    }
    // The oracle's completions equal `generate` with the same prompts and adapter, in the
    // same batches (one task's ten examples each).
    let examples = v["examples"]["oracle"].as_array().unwrap();
    for (ti, t) in tasks.iter().enumerate() {
        let prompts = tmp.path().join(format!("{t}.jsonl"));
        let lines: Vec<String> = first_instructions(&s.data, t, 10)
            .iter()
            .map(|i| json!({"prompt": i, "mix": {*t: 1.0}}).to_string())
            .collect();
        std::fs::write(&prompts, lines.join("\n")).unwrap();
        let mut g: Vec<String> = vec!["generate".into()];
        g.extend(s.model_args(&tasks));
        g.extend(["--chat", "--json", "--max-tokens", "24", "--prompts"].map(String::from));
        g.push(prompts.display().to_string());
        let gv: Vec<&str> = g.iter().map(String::as_str).collect();
        let out = succeeds(&gv);
        let gen: Value = serde_json::from_slice(&out.stdout).unwrap();
        for i in 0..10 {
            assert_eq!(
                examples[ti * 10 + i]["completion"],
                gen["results"][i]["text"],
                "{t} example {i}"
            );
            assert_eq!(examples[ti * 10 + i]["task"], *t);
        }
    }
}

#[test]
fn bad_data_gets_clear_errors() {
    let Some(s) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    // `eval` with `adapters` loaded, `flags`, on `file`: whether it succeeded, and its stderr.
    let eval = |adapters: &[&str], flags: &[&str], file: String| {
        let mut args: Vec<String> = vec!["eval".into()];
        args.extend(s.model_args(adapters));
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend(["--data".to_string(), file]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&argv);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = r#"{"task": "boolq", "instruction": "Is it?", "output": "the correct answer is true", "answer": "true", "kind": "mcq"}"#;
    let cases = [
        (
            write(
                "missing.jsonl",
                r#"{"task": "boolq", "instruction": "x", "answer": "true", "kind": "mcq"}"#,
            ),
            vec!["missing.jsonl:1", "missing field `output`"],
        ),
        (
            write("kind.jsonl", &good.replace("\"mcq\"", "\"essay\"")),
            vec!["kind.jsonl:1", "unknown `kind`", "essay"],
        ),
        (
            write("blank.jsonl", &good.replace("\"Is it?\"", "\"  \"")),
            vec!["blank.jsonl:1", "field `instruction` is empty"],
        ),
        (
            write("empty.jsonl", "\n"),
            vec!["empty.jsonl", "no examples"],
        ),
        (
            write("notjson.jsonl", "{oops"),
            vec!["notjson.jsonl:1", "not a JSON object"],
        ),
        (
            write("noadapter.jsonl", &good.replace("\"boolq\"", "\"poetry\"")),
            vec!["poetry", "has no adapter", "--label-map"],
        ),
        // Answers no completion can match (every example had scored 0 without a word), and a
        // task of two kinds (its first example's kind had labelled it all).
        (
            write(
                "yes.jsonl",
                &good.replace("\"answer\": \"true\"", "\"answer\": \"yes\""),
            ),
            vec![
                "yes.jsonl:1",
                "`answer` \"yes\" can never be scored right",
                "true/false",
            ],
        ),
        (
            write(
                "units.jsonl",
                &good.replace(
                    "\"true\", \"kind\": \"mcq\"",
                    "\"12 apples\", \"kind\": \"qa\"",
                ),
            ),
            vec!["units.jsonl:1", "\"12 apples\"", "a qa answer is a number"],
        ),
        (
            write(
                "kinds.jsonl",
                &format!(
                    "{good}\n{}",
                    good.replace("\"true\", \"kind\": \"mcq\"", "\"3\", \"kind\": \"qa\"")
                ),
            ),
            vec![
                "kinds.jsonl",
                "task `boolq` has examples of kind mcq and of kind qa",
            ],
        ),
    ];
    for (file, needles) in cases {
        let (ok, err) = eval(&["boolq"], &["--modes", "oracle"], file.clone());
        assert!(!ok, "{file} should fail");
        for n in needles {
            assert!(err.contains(n), "{file}: {err:?} lacks {n:?}");
        }
    }
    // A mode that needs the router, without one.
    let (ok, err) = eval(&["boolq"], &["--modes", "routed"], write("ok.jsonl", good));
    assert!(!ok && err.contains("needs --router"), "{err}");
    // The base model needs no adapter for a task (it asked for one per task).
    let (ok, err) = eval(
        &[],
        &["--modes", "base", "--max-tokens", "2"],
        write("poetry.jsonl", &good.replace("\"boolq\"", "\"poetry\"")),
    );
    assert!(ok, "{err}");
    // A --label-map key that is no task (nor router label) is refused; routing flags with no
    // routing mode are said to do nothing.
    let (ok, err) = eval(
        &["boolq"],
        &["--modes", "base", "--label-map", "boolk=boolq"],
        write("typo.jsonl", good),
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("`boolk` is neither a task of the data (boolq)"),
        "{err}"
    );
    let idle = ["--modes", "base", "--max-tokens", "2", "--route-p", "0.5"];
    let (ok, err) = eval(&[], &idle, write("idle.jsonl", good));
    assert!(ok, "{err}");
    assert!(
        err.contains("note: --route-p changes nothing: no mode of this run routes (base)"),
        "{err}"
    );
    // --compose past the tasks loaded is refused before any mode runs (after them, before).
    let compose = ["--modes", "base", "--compose", "50"];
    let (ok, err) = eval(&["boolq"], &compose, write("one-task.jsonl", good));
    assert!(!ok, "{err}");
    assert!(
        err.contains("--compose 50: composing needs at least 2 tasks"),
        "{err}"
    );
    assert!(!err.contains("examples, modes"), "a mode ran first: {err}");
    // Default modes are what the loaded parts allow: no adapter, so base alone, the others
    // said (it had failed: "task `boolq` has no adapter"); a repeated mode runs once.
    let json = tmp.path().join("e.json").display().to_string();
    let (ok, err) = eval(
        &[],
        &["--max-tokens", "1", "--json", &json],
        write("plain.jsonl", good),
    );
    assert!(ok, "{err}");
    assert!(err.contains("modes base, top-p"), "{err}");
    for left in [
        "oracle (needs every task's adapter",
        "uniform (needs --adapter",
    ] {
        assert!(err.contains(left), "{err:?} lacks {left:?}");
    }
    let flags = ["--modes", "base,oracle,base", "--max-tokens", "1"];
    let (ok, err) = eval(&["boolq"], &flags, write("twice.jsonl", good));
    assert!(ok, "{err}");
    assert!(err.contains("modes base,oracle, top-p"), "{err}");
    // A prompt past the context is named (task and start) before any mode runs.
    let long = good.replace("Is it?", &"Is it so? ".repeat(200));
    let flags = ["--modes", "base", "--max-context", "64"];
    let (ok, err) = eval(&[], &flags, write("long.jsonl", &long));
    assert!(!ok, "{err}");
    assert!(
        err.contains("task `boolq`, the example starting \"Is it so? Is it so?"),
        "{err}"
    );
    assert!(!err.contains("examples, modes"), "a mode ran first: {err}");
    // A --route-p value twice ran its modes twice, as two columns of one name.
    let (ok, err) = eval(&[], &["--route-p", "0.9,0.5,0.9"], write("p.jsonl", good));
    assert!(
        !ok && err.contains("--route-p 0.9 is given more than once"),
        "{err}"
    );
    // Examples without a gold output (as all of mawps'): no BLEU/ROUGE (they had been 0
    // against "", pulling the qa means down) and no teacher-forced score (it forces the gold
    // output's tokens: none), shown "-" and left out of the means, with a note.
    let mawps = r#"{"task": "mawps", "instruction": "Tom has 3 apples and gets 4 more. How many?", "output": "", "answer": "7", "kind": "qa"}"#;
    let json = tmp.path().join("m.json");
    let flags = [
        "--modes",
        "base,teacher-forced",
        "--max-tokens",
        "8",
        "--json",
        json.to_str().unwrap(),
    ];
    let (ok, err) = eval(&["gsm8k"], &flags, write("mawps.jsonl", mawps));
    assert!(ok, "{err}");
    assert!(
        err.contains("teacher-forced: examples without a gold output to force are left out of its scores (mawps 1"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let m = &v["per_task"]["mawps"];
    assert!(m["base"]["accuracy"].is_number(), "{m}");
    assert!(
        m["base"]["bleu"].is_null() && m["base"]["rougeL"].is_null(),
        "{m}"
    );
    assert!(m["teacher-forced"]["accuracy"].is_null(), "{m}");
    assert!(v["mean"]["teacher-forced"]["accuracy"].is_null(), "{v}");
    assert_eq!(v["examples"]["base"][0]["answer"], "7");
    assert_eq!(v["examples"]["base"][0]["index"], 0);
}

/// An adapter that overflows the forward pass (its B scaled by 1e30; it loads): every answer
/// under it ends at a NaN logit. The run keeps the other modes' answers, scores the broken ones
/// as wrong, counts them in the table and marks them in the JSON, then exits 1 naming the
/// modes and examples. Before, the first broken batch ended the run with every figure lost.
#[test]
fn broken_answers_are_reported_and_the_others_kept() {
    let Some(s) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let huge = tmp.path().join("huge");
    dlp_tests::broken::scaled_lora_b(&s.adapters.join("boolq"), &huge, 1e30);
    let json = tmp.path().join("eval.json");
    let mut args: Vec<String> = vec!["eval".into()];
    args.extend(s.model_args(&[]));
    args.push("--adapter".into());
    args.push(format!("boolq={}", huge.display()));
    args.push("--data".into());
    args.push(s.data.join("boolq").display().to_string());
    args.extend(
        [
            "--modes",
            "base,oracle,teacher-forced",
            "--limit",
            "4",
            "--batch",
            "2",
        ]
        .map(String::from),
    );
    args.push("--json".into());
    args.push(json.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&argv);
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{err}");
    for needle in [
        "oracle: 4 (boolq #0, boolq #1, boolq #2, ...)",
        "teacher-forced: 4 (boolq #0",
        "scored as",
        "wrong",
    ] {
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    assert!(!err.contains("base:"), "{err}");
    let row = stdout.lines().find(|l| l.starts_with("non-finite"));
    let cells: Vec<&str> = row.expect(&stdout).split_whitespace().skip(1).collect();
    assert_eq!(cells, ["0", "4", "4"], "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (mode, broken) in [("base", false), ("oracle", true), ("teacher-forced", true)] {
        let ex = v["examples"][mode].as_array().unwrap();
        assert_eq!(ex.len(), 4, "{mode}");
        for e in ex {
            assert_eq!(e["non_finite"], json!(broken), "{mode}: {e}");
            if broken {
                assert_eq!(e["correct"], json!(false), "{mode}: {e}");
            }
        }
        assert_eq!(
            v["mean"][mode]["non_finite"],
            json!(if broken { 4 } else { 0 })
        );
    }
    assert_eq!(v["per_task"]["boolq"]["oracle"]["accuracy"], json!(0.0));
    assert!(v["per_task"]["boolq"]["base"]["accuracy"].is_number());
}

/// A routed run with a top-p sweep and composed prompts: the table names the top-p of its
/// router columns; the sweep holds the swept modes only (top1 reads no p, and had been listed
/// at the first one); each composed completion is in the JSON with how it was split and each
/// question's answer, and its scores add up from them.
#[test]
fn routed_sweep_and_composed_prompts_report_what_they_ran() {
    let Some(s) = setup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let router = tmp.path().join("router");
    let tokenizer = s.gguf.parent().unwrap().join("tokenizer/tokenizer.json");
    let tasks = ["boolq", "gsm8k"];
    let mut train: Vec<String> = vec!["train-router".into(), "--data".into()];
    train.extend(
        tasks
            .iter()
            .map(|t| s.data.join(t).join("dev.jsonl").display().to_string()),
    );
    let small = [
        "--epochs",
        "2",
        "--embed-dim",
        "32",
        "--hidden",
        "64",
        "--quiet",
    ];
    train.extend(small.map(String::from));
    train.extend(["--tokenizer".into(), tokenizer.display().to_string()]);
    train.extend(["--out".into(), router.display().to_string()]);
    let argv: Vec<&str> = train.iter().map(String::as_str).collect();
    succeeds(&argv);
    let json = tmp.path().join("eval.json");
    let mut args: Vec<String> = vec!["eval".into()];
    args.extend(s.model_args(&tasks));
    args.extend([
        "--router".into(),
        router.display().to_string(),
        "--data".into(),
    ]);
    args.extend(tasks.iter().map(|t| s.data.join(t).display().to_string()));
    let flags = [
        "--modes",
        "routed,top1",
        "--limit",
        "2",
        "--max-tokens",
        "8",
        "--route-p",
        "0.5,1",
        "--compose",
        "2",
        "--compose-n",
        "2",
        "--json",
    ];
    args.extend(flags.map(String::from));
    args.push(json.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = succeeds(&argv);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("(the router's columns at top-p 0.5, the first of --route-p)"),
        "{table}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let sweep = v["sweep"].as_array().unwrap();
    let swept: Vec<(&str, f64)> = (sweep.iter())
        .map(|x| (x["mode"].as_str().unwrap(), x["p"].as_f64().unwrap()))
        .collect();
    assert_eq!(swept, [("routed", 0.5), ("routed", 1.0)], "{}", v["sweep"]);
    let composed = &v["composed"]["2"]["routed"];
    let examples = composed["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2, "{composed}");
    let mut right = 0;
    for e in examples {
        assert!(e["completion"].is_string(), "{e}");
        assert!(
            ["numbered", "in order"].contains(&e["split"].as_str().unwrap()),
            "{e}"
        );
        let qs = e["questions"].as_array().unwrap();
        assert_eq!(qs.len(), 2, "{e}");
        right += qs.iter().filter(|q| q["correct"] == json!(true)).count();
    }
    let acc = composed["accuracy"].as_f64().unwrap();
    assert!((acc - right as f64 / 4.0).abs() < 1e-12, "{composed}");
}
