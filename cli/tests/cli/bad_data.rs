//! Bad input to the router and data commands (train-router, eval-router, eval's data): a
//! non-zero exit with a message naming the flag, file or line, never a panic.

use super::*;

#[test]
fn bad_router_and_data_input_exits_non_zero_with_a_message() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = gguf.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A router label no --adapter/--mix can name.
    for label in ["", "bool q,x=1", " boolq"] {
        let data = tmp.path().join("labels.jsonl");
        let line = serde_json::json!({"instruction": "Is it?", "task": label});
        std::fs::write(
            &data,
            format!("{{\"instruction\": \"a\", \"task\": \"x\"}}\n{line}\n"),
        )
        .unwrap();
        let out = tmp.path().join("router-out");
        fails_with(
            &[
                "train-router",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &["labels.jsonl:2", "an adapter name"],
        );
    }
    // --router given something that is not a router: a missing folder, an adapter, a folder
    // without router.json; each says what a router is.
    let adapter = fixtures("smollm2/adapters").and_then(|a| {
        std::fs::read_dir(a)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.is_dir())
    });
    let routed = |router: &str, says: &[&str]| {
        fails_with(
            &["generate", "-m", m, "--prompt", "hi", "--router", router],
            says,
        )
    };
    routed("no/such/router", &["not a directory", "train-router --out"]);
    routed(
        tmp.path().to_str().unwrap(),
        &["no router.json", "train-router --data"],
    );
    if let Some(a) = adapter {
        routed(
            a.to_str().unwrap(),
            &["PEFT LoRA adapter", "--adapter NAME=DIR"],
        );
    }
    // Training data of one label, dev data named but empty, an extension of 0 steps.
    let one = tmp.path().join("one.jsonl");
    std::fs::write(
        &one,
        "{\"instruction\": \"a\", \"task\": \"x\"}\n".repeat(3),
    )
    .unwrap();
    let two = tmp.path().join("two.jsonl");
    std::fs::write(
        &two,
        "{\"instruction\": \"a\", \"task\": \"x\"}\n{\"instruction\": \"b\", \"task\": \"y\"}\n",
    )
    .unwrap();
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let train = ["train-router", "--out", "no/out", "--data"];
    let (one, two, empty) = (
        one.to_str().unwrap(),
        two.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    fails_with(
        &args(&train, &[one]),
        &["one label", "\"x\" in all 3 examples", "--extend"],
    );
    fails_with(
        &args(&train, &[two, "--dev", empty]),
        &["--dev", "empty.jsonl", "no dev examples"],
    );
    fails_with(
        &args(&train, &[two, "--extend", "r", "--extend-steps", "0"]),
        &["--extend-steps", "0"],
    );
    if !cfg!(feature = "router-wgpu") {
        // Refused before the data is read (this data does not exist).
        fails_with(
            &args(&train, &["no/data", "--device", "wgpu"]),
            &["--device", "router-wgpu"],
        );
    }
    // The same training file twice (its examples counted twice, and copies in the dev split).
    let twice = tempfile::tempdir().unwrap();
    let data = twice.path().join("a.jsonl");
    std::fs::write(&data, "{\"text\": \"hi\", \"label\": \"a\"}\n").unwrap();
    let dup = data.to_str().unwrap();
    fails_with(
        &["train-router", "--data", dup, dup, "--out", "no/out"],
        &["a.jsonl is read twice", "name each file or folder once"],
    );
    // A line with a key twice (one label of two would be trained) or an empty text.
    for (line, want) in [
        (
            "{\"instruction\": \"hi\", \"task\": \"a\", \"task\": \"b\"}",
            "key \"task\" is given twice",
        ),
        (
            "{\"instruction\": \"  \", \"task\": \"a\"}",
            "field \"instruction\" is empty",
        ),
    ] {
        let bad = twice.path().join("bad.jsonl");
        std::fs::write(
            &bad,
            format!("{{\"instruction\": \"x\", \"task\": \"a\"}}\n{line}\n"),
        )
        .unwrap();
        fails_with(
            &[
                "train-router",
                "--data",
                bad.to_str().unwrap(),
                "--out",
                "no/out",
            ],
            &["bad.jsonl:2", want],
        );
    }
    // Dev data that is training data: dev figures (and early stopping) that say nothing.
    fails_with(
        &[
            "train-router",
            "--data",
            dup,
            "--dev",
            dup,
            "--out",
            "no/out",
        ],
        &["--dev", "a.jsonl: also training data"],
    );
    // A folder's dev.jsonl also named as training data: said as such (not as --dev).
    let folder = twice.path().join("task");
    std::fs::create_dir(&folder).unwrap();
    for split in ["train", "dev"] {
        std::fs::write(
            folder.join(format!("{split}.jsonl")),
            "{\"instruction\": \"hi\", \"task\": \"a\"}\n",
        )
        .unwrap();
    }
    let folder_dev = folder.join("dev.jsonl");
    fails_with(
        &[
            "train-router",
            "--data",
            folder.to_str().unwrap(),
            folder_dev.to_str().unwrap(),
            "--out",
            "no/out",
        ],
        &["dev.jsonl: named as training data, and the dev split of a --data folder"],
    );
    // A pipe or a device is not read as data (/dev/zero had been "no such file").
    fails_with(
        &["train-router", "--data", "/dev/zero", "--out", "no/out"],
        &["/dev/zero: not a regular file or a folder"],
    );
    // eval reads its data through the same rule: a file twice weighs every figure double.
    fails_with(
        &["eval", "--backend", "cpu", "-m", m, "--data", dup, dup],
        &["a.jsonl is read twice"],
    );
    // eval --label-map to an adapter not loaded, whatever the modes read.
    if let Some(tasks) = dlp_tests::shared("data/tasks") {
        let boolq = tasks.join("boolq/dev.jsonl");
        fails_with(
            &[
                "eval",
                "--backend",
                "cpu",
                "-m",
                m,
                "--data",
                boolq.to_str().unwrap(),
                "--modes",
                "base",
                "--limit",
                "1",
                "--label-map",
                "boolq=nope",
            ],
            &["--label-map boolq=nope: no adapter `nope` is loaded"],
        );
    }
    // eval-router takes what generate's routing takes.
    let eval_router = ["eval-router", "--router", "no/router", "--data", "no/data"];
    for (flags, want) in [
        (&["--p", "1.5"][..], "--p 1.5"),
        (&["--p", "nan"][..], "--p NaN"),
        (&["--top-k", "0"][..], "--top-k 0"),
        (
            &["--family", "a=boolq,piqa", "--family", "b=boolq"][..],
            "`boolq` is already in family `a`",
        ),
    ] {
        fails_with(&args(&eval_router, flags), &[want]);
    }
    // Router hyper-parameters are checked before any data is read (burn would panic on these).
    for (flag, value, want) in [
        ("--dropout", "1.5", "--dropout must be in [0, 1), got 1.5"),
        (
            "--hidden",
            "384,0",
            "--hidden must be widths from 1 to 16384, got 0 at position 2",
        ),
        (
            "--hidden",
            "100000000",
            "--hidden must be widths from 1 to 16384",
        ),
        (
            "--embed-dim",
            "1000000",
            "--embed-dim must be from 1 to 4096, got 1000000",
        ),
        ("--lr", "-1", "--lr must be finite and > 0, got -1"),
        (
            "--dev-fraction",
            "0",
            "--dev-fraction must be in (0, 1), got 0",
        ),
    ] {
        let arg = format!("{flag}={value}");
        fails_with(
            &[
                "train-router",
                "--data",
                "no/such/data",
                "--out",
                "no/out",
                &arg,
            ],
            &[want],
        );
    }
}

/// A `--data` folder without the split a command reads is named (eval, eval-router and
/// train-router had dropped it silently and gone on with the other tasks); a task folder
/// without it, in a folder of tasks, gets a note.
#[test]
fn data_folders_without_the_split_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let line = "{\"instruction\": \"Is it?\", \"output\": \"the correct answer is true\", \
                \"answer\": \"true\", \"kind\": \"mcq\", \"task\": \"boolq\"}\n";
    let (dev, train) = (tmp.path().join("tasks/a"), tmp.path().join("tasks/b"));
    for (dir, file) in [(&dev, "dev.jsonl"), (&train, "train.jsonl")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), line).unwrap();
    }
    // Not a task folder (no .jsonl): no note.
    std::fs::create_dir_all(tmp.path().join("tasks/images")).unwrap();
    let (dev, train) = (dev.to_str().unwrap(), train.to_str().unwrap());
    fails_with(
        &["eval", "--modes", "base", "--data", dev, train],
        &[
            "--data",
            "tasks/b: no dev.jsonl",
            "it holds train.jsonl",
            "--split",
        ],
    );
    fails_with(
        &["train-router", "--out", "no/out", "--data", dev, train],
        &[
            "tasks/a: no train.jsonl",
            "it holds dev.jsonl",
            "train.jsonl",
        ],
    );
    fails_with(
        &["eval-router", "--router", "no/router", "--data", train],
        &["tasks/b: no dev.jsonl"],
    );
    // A folder of tasks: the ones without the split are noted (the run then fails for want of
    // a model here, after the note).
    let tasks = tmp.path().join("tasks");
    let out = run(&[
        "eval-router",
        "--router",
        "no/router",
        "--data",
        tasks.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: --data: 1 task folder(s) without dev.jsonl left out:")
            && err.contains("tasks/b")
            && !err.contains("images"),
        "{err}"
    );
}
