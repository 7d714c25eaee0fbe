//! `train-router --extend` end to end through the command line.

use super::*;

/// `train-router --extend`: a router trained on two demo labels gets the third in seconds;
/// `eval-router` reads the extended router unchanged; a label it has, an empty file and a
/// router without feature statistics are clear errors.
#[test]
fn train_router_extend_end_to_end() {
    let Some(d) = fixtures("smollm2") else { return };
    let demo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../router/demo");
    let tmp = tempfile::tempdir().unwrap();
    let split = |name: &str, keep: &dyn Fn(&str) -> bool| {
        let text = std::fs::read_to_string(demo.join(name)).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
        let p = tmp.path().join(format!("{}-{name}", lines.len()));
        std::fs::write(&p, lines.join("\n")).unwrap();
        p
    };
    let is_new = |l: &str| l.contains("\"mlp_r16\"");
    let (old_train, new_train) = (
        split("train.jsonl", &|l| !is_new(l)),
        split("train.jsonl", &is_new),
    );
    let old_dev = split("dev.jsonl", &|l| !is_new(l));
    let tokenizer = d.join("tokenizer/tokenizer.json");
    let (base, ext) = (tmp.path().join("base"), tmp.path().join("ext"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let small = [
        "--embed-dim",
        "32",
        "--hidden",
        "64,64,32",
        "--epochs",
        "6",
        "--quiet",
    ];
    succeeds(
        &[
            &[
                "train-router",
                "--data",
                &s(&old_train),
                "--dev",
                &s(&old_dev),
                "--tokenizer",
                &s(&tokenizer),
                "--out",
                &s(&base),
            ][..],
            &small[..],
        ]
        .concat(),
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("router.json")).unwrap()).unwrap();
    assert_eq!(cfg["feature_stats"], "router-stats.safetensors");
    assert_eq!(cfg["trainings"][0]["kind"], "scratch");
    let base_dev = cfg["dev"].clone();
    assert!(base_dev["examples"].as_u64().unwrap() > 0, "{base_dev}");

    let out = succeeds(&[
        "train-router",
        "--extend",
        &s(&base),
        "--data",
        &s(&new_train),
        "--out",
        &s(&ext),
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("added 1 label(s): mlp_r16"), "{text}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ext.join("router.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["labels"],
        serde_json::json!(["all_r4", "qv_r8", "mlp_r16"])
    );
    assert_eq!(cfg["trainings"][1]["kind"], "extend");
    // The dev figures are the extended router's (or none), not a copy of the two-label one's.
    assert_ne!(cfg["dev"], base_dev, "{}", cfg["dev"]);
    assert_eq!(
        cfg["trainings"][1]["labels"],
        serde_json::json!(["mlp_r16"])
    );
    // `inspect` reads a router folder as one (it had looked for a model's config.json).
    let out = run(&["inspect", &s(&ext)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "DLP router",
        "labels (3): all_r4, qv_r8, mlp_r16",
        "then 32 -> 64 -> 64 -> 32 -> 3",
        "training (scratch)",
        "training (extend)",
        "labels mlp_r16",
        "extendable (train-router --extend): yes",
        "layers.0.weight",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // Without its statistics file it is not extendable, and says why (it had said yes).
    std::fs::rename(
        ext.join("router-stats.safetensors"),
        tmp.path().join("stats"),
    )
    .unwrap();
    let out = run(&["inspect", &s(&ext)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("extendable (train-router --extend): no (router-stats.safetensors:"),
        "{text}"
    );
    std::fs::rename(
        tmp.path().join("stats"),
        ext.join("router-stats.safetensors"),
    )
    .unwrap();
    // An empty file given by name is said to be empty (it was sent to --split).
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &["eval-router", "--router", &s(&ext), "--data", &s(&empty)],
        &["empty.jsonl: no records (empty files)"],
    );
    let json = tmp.path().join("eval.json");
    succeeds(&[
        "eval-router",
        "--router",
        &s(&ext),
        "--data",
        demo.join("dev.jsonl").to_str().unwrap(),
        "--json",
        &s(&json),
    ]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // Plumbing, not quality (a router of two labels has a thin body; the 14-task experiment
    // measures quality): three labels, the new one reachable, every true label in the top-p set.
    assert_eq!(m["labels"].as_array().unwrap().len(), 3, "{m}");
    assert!(m["per_task_top1"]["mlp_r16"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(m["topp_containment"].as_f64().unwrap(), 1.0, "{m}");
    // Output paths are checked before the evaluation runs.
    let dev = demo.join("dev.jsonl");
    let (ext_arg, dev_arg) = (s(&ext), dev.to_str().unwrap());
    let eval_fails = |extra: &[&str], says: &[&str]| {
        let head = ["eval-router", "--router", &ext_arg, "--data", dev_arg];
        fails_with(&[&head[..], extra].concat(), says);
    };
    for (flag, bad, says) in [
        (
            "--png",
            tmp.path().join("confusion.txt"),
            "name a .png file",
        ),
        (
            "--json",
            tmp.path().join("no/such/eval.json"),
            "does not exist",
        ),
    ] {
        eval_fails(&[flag, &s(&bad)], &[flag, says]);
    }
    // The data it reads is no output (it was replaced by the metrics): a copy, kept whole.
    let copy = tmp.path().join("dev-copy.jsonl");
    std::fs::copy(&dev, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    fails_with(
        &[
            "eval-router",
            "--router",
            &ext_arg,
            "--data",
            &s(&copy),
            "--json",
            &s(&copy),
        ],
        &["--json", "which this run reads"],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    // Families are told apart by name: one named after a label it leaves out (gsm8k=addsub,...
    // without gsm8k had scored gsm8k's own picks as family hits), or two of one name, refused.
    eval_fails(
        &["--family", "all_r4=qv_r8"],
        &["--family all_r4", "a router label no family lists"],
    );
    eval_fails(
        &["--family", "x=qv_r8", "--family", "x=all_r4"],
        &["a family named `x` is already given"],
    );
    // A family may bear a label's name where another family lists that label.
    let head = ["eval-router", "--router", &ext_arg, "--data", dev_arg];
    succeeds(
        &[
            &head[..],
            &["--family", "all_r4=mlp_r16", "--family", "g=all_r4"],
        ]
        .concat(),
    );
    // Every limit of the selected set is in the label and the JSON (a --top-k run had read as
    // plain top-p).
    let out = succeeds(&[&head[..], &["--top-k", "1", "--json", &s(&json)]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("top-p(p=0.9, top-k 1) containment"), "{text}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(m["top_k"], 1, "{m}");
    assert!(m["max_adapters"].is_null(), "{m}");
    // Another tokenizer than the router's is refused (its ids index other rows: every figure
    // fell without a word).
    if let Some(compat) = fixtures("compat") {
        let other = tmp.path().join("other-tokenizer");
        std::fs::create_dir(&other).unwrap();
        for f in ["router.json", "router.safetensors"] {
            std::fs::copy(ext.join(f), other.join(f)).unwrap();
        }
        std::fs::copy(
            compat.join("templates/tokenizer.json"),
            other.join("tokenizer.json"),
        )
        .unwrap();
        fails_with(
            &["eval-router", "--router", &s(&other), "--data", dev_arg],
            &["tokenizer.json", "not the tokenizer it was trained with"],
        );
        // A folder with the weights but no router.json is said to be a router missing it.
        std::fs::remove_file(other.join("router.json")).unwrap();
        fails_with(
            &["inspect", &s(&other)],
            &["router.json: missing", "a router needs both"],
        );
    }
    // An extension measured on its new label's dev data alone says so, in its output and in
    // `inspect` (the figures had read as the whole router's); the scratch training's own
    // settings are refused beside --extend (they were taken and ignored).
    let (new_dev, ext2) = (split("dev.jsonl", &is_new), tmp.path().join("ext2"));
    let extend = [
        "train-router",
        "--extend",
        &s(&base),
        "--data",
        &s(&new_train),
    ];
    let out = succeeds(
        &[
            &extend[..],
            &["--dev", &s(&new_dev), "--out", &s(&ext2), "--quiet"],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("texts of mlp_r16 only; eval-router gives the whole router's"),
        "{text}"
    );
    let out = run(&["inspect", &s(&ext2)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("texts of mlp_r16 only"));
    fails_with(
        &[
            &extend[..],
            &["--epochs", "3", "--out", &s(&tmp.path().join("ext3"))],
        ]
        .concat(),
        &["--epochs", "cannot be used with", "--extend"],
    );

    fails_with(
        &[
            "train-router",
            "--extend",
            &s(&ext),
            "--data",
            &s(&new_train),
            "--out",
            &s(&tmp.path().join("x")),
        ],
        &["mlp_r16", "already one of the router's"],
    );
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(
        &[
            "train-router",
            "--extend",
            &s(&base),
            "--data",
            &s(&empty),
            "--out",
            &s(&tmp.path().join("x")),
        ],
        &["no examples", "empty.jsonl"],
    );
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("router.json")).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("feature_stats");
    std::fs::write(base.join("router.json"), old.to_string()).unwrap();
    fails_with(
        &[
            "train-router",
            "--extend",
            &s(&base),
            "--data",
            &s(&new_train),
            "--out",
            &s(&tmp.path().join("x")),
        ],
        &["no feature statistics", "retrain it once"],
    );

    // A NaN weight: refused at load, naming the tensor (it routed every sentence uniformly).
    let weights = ext.join("router.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let t = tensors
        .iter_mut()
        .find(|t| t.0 == "layers.1.weight")
        .unwrap();
    t.2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            let v =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data);
            (n.clone(), v.unwrap())
        })
        .collect();
    std::fs::write(&weights, safetensors::serialize(views, None).unwrap()).unwrap();
    eval_fails(
        &[],
        &["layers.1.weight has a non-finite value (NaN) at element 0"],
    );
}

/// `train-router --tokenizer model.gguf`: the GGUF's vocabulary is rebuilt as the router's
/// tokenizer.json, which reads text as the model does; labels without dev examples are named.
#[test]
fn train_router_reads_a_gguf_vocabulary_and_names_labels_without_dev() {
    let Some(d) = fixtures("smollm2") else { return };
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../router/demo");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    succeeds(&[
        "train-router",
        "--data",
        &s(&demo.join("train.jsonl")),
        "--dev",
        &s(&demo.join("dev.jsonl")),
        "--tokenizer",
        &s(&gguf),
        "--out",
        &s(&out),
        "--embed-dim",
        "16",
        "--hidden",
        "16,16,16",
        "--epochs",
        "1",
        "--quiet",
    ]);
    let ids = |model: &std::path::Path| {
        let text = "Natalia sold 48 clips in April, and half as many in May. Ünïcödé 🙂";
        let o = succeeds(&["tokenize", "-m", &s(model), "--text", text]);
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(ids(&out.join("tokenizer.json")), ids(&gguf));
    // Dev files for some labels only: the others are named (early stopping and calibration
    // had judged the router on one label without a word).
    let data = tmp.path().join("data");
    for (task, splits) in [("apples", &["train", "dev"][..]), ("trains", &["train"])] {
        std::fs::create_dir_all(data.join(task)).unwrap();
        let lines: Vec<String> = (0..12)
            .map(|i| format!(r#"{{"task": "{task}", "instruction": "{task} number {i}"}}"#))
            .collect();
        for split in splits {
            std::fs::write(
                data.join(task).join(format!("{split}.jsonl")),
                lines.join("\n"),
            )
            .unwrap();
        }
    }
    // A small router trained on `data` into `out`: its stderr (it must succeed).
    let train_small = |data: &std::path::Path, out: &str| {
        let o = run(&[
            "train-router",
            "--data",
            &s(data),
            "--tokenizer",
            &s(&gguf),
            "--out",
            &s(&tmp.path().join(out)),
            "--embed-dim",
            "8",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--quiet",
        ]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        err
    };
    let err = train_small(&data, "r2");
    assert!(
        err.contains("warning: no dev examples for label(s) trains:"),
        "{err}"
    );
    // Without dev files, a label too small to hold one example out is named as such.
    let one = tmp.path().join("one.jsonl");
    let mut lines: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"task": "apples", "instruction": "apples number {i}"}}"#))
        .collect();
    lines.push(r#"{"task": "pears", "instruction": "pears once"}"#.into());
    std::fs::write(&one, lines.join("\n")).unwrap();
    let err = train_small(&one, "r4");
    assert!(
        err.contains("no dev examples for label(s) pears: ")
            && err.contains("too few training examples to hold one out"),
        "{err}"
    );
    // Its dev figures say which labels they cover (they had read as every label's).
    let cfg = std::fs::read_to_string(tmp.path().join("r4/router.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(
        cfg["dev"]["labels"],
        serde_json::json!(["apples"]),
        "{}",
        cfg["dev"]
    );
    // A text file named .gguf is said not to be one (it was read as a tokenizer.json).
    let fake = tmp.path().join("model.gguf");
    std::fs::write(&fake, "not a model").unwrap();
    let r3 = tmp.path().join("r3");
    fails_with(
        &[
            "train-router",
            "--data",
            &s(&data),
            "--tokenizer",
            &s(&fake),
            "--out",
            &s(&r3),
        ],
        &["model.gguf: named .gguf, but it is not a GGUF file"],
    );
}

/// `train-router --out`: never a file or a link to nothing; a folder holding a router or other
/// files only with --overwrite; a new one only where it can be made (checked before the data
/// is read: "no/data" does not exist).
#[test]
fn train_router_out_is_a_new_or_empty_folder_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.jsonl");
    std::fs::write(&file, "{\"text\": \"hi\", \"label\": \"a\"}\n").unwrap();
    let holds = tmp.path().join("holds");
    std::fs::create_dir(&holds).unwrap();
    std::fs::write(holds.join("train.jsonl"), "").unwrap();
    let router = tmp.path().join("router");
    std::fs::create_dir(&router).unwrap();
    std::fs::write(router.join("router.json"), "{}").unwrap();
    let under_file = file.join("sub/router");
    let dangling = tmp.path().join("dangling");
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("gone"), &dangling).unwrap();
    for (out, want) in [
        (
            file.to_str().unwrap(),
            &["--out", "a.jsonl", "is a file"][..],
        ),
        #[cfg(unix)]
        (
            dangling.to_str().unwrap(),
            &["--out", "is a link to nothing"],
        ),
        (
            holds.to_str().unwrap(),
            &["--out", "is not empty", "train.jsonl", "--overwrite"],
        ),
        (
            router.to_str().unwrap(),
            &["--out", "already holds a router", "--overwrite"],
        ),
        // A folder to be made is checked before the training, not when it is saved.
        (
            under_file.to_str().unwrap(),
            &["--out", "a.jsonl is not a folder"],
        ),
        #[cfg(target_os = "linux")]
        (
            "/proc/dlp-no-such/router",
            &["--out", "cannot create a folder in /proc"],
        ),
    ] {
        fails_with(&["train-router", "--data", "no/data", "--out", out], want);
    }
    let router_s = router.to_str().unwrap();
    fails_with(
        &[
            "train-router",
            "--extend",
            router_s,
            "--data",
            "no/data",
            "--out",
            router_s,
        ],
        &["already holds a router", "--overwrite extends it in place"],
    );
    // A folder holding only what an interrupted save left (a process id no system gives) is
    // empty: the same command again runs (it had been refused as "not empty").
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(cut.join(".dlp-tmp-999999999")).unwrap();
    std::fs::write(cut.join(".dlp-tmp-999999999/router.json"), "{}").unwrap();
    #[cfg(target_os = "linux")]
    fails_with(
        &[
            "train-router",
            "--data",
            "no/data",
            "--out",
            cut.to_str().unwrap(),
        ],
        &["no/data"],
    );
    // With --overwrite the folder passes, and the data is read next.
    fails_with(
        &[
            "train-router",
            "--data",
            "no/data",
            "--out",
            router.to_str().unwrap(),
            "--overwrite",
        ],
        &["no/data"],
    );
}

/// Dev texts that also occur in the training data are noted, with how many under another
/// label (a copy of the training file as --dev had been taken without a word).
#[test]
fn dev_texts_seen_in_training_are_noted() {
    let Some(d) = fixtures("smollm2") else { return };
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../router/demo");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy.jsonl");
    std::fs::copy(demo.join("train.jsonl"), &copy).unwrap();
    let n = std::fs::read_to_string(&copy).unwrap().lines().count();
    let (train, tok) = (demo.join("train.jsonl"), d.join("tokenizer/tokenizer.json"));
    let out_dir = tmp.path().join("r");
    let head = [
        "train-router",
        "--data",
        train.to_str().unwrap(),
        "--dev",
        copy.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = succeeds(&[&head[..], &TINY_ROUTER[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("note: {n} of {n} dev texts also occur in the training data ({n} under the same label, 0 under another)")),
        "{err}"
    );
}
