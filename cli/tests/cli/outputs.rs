//! Output files: a run never replaces what it reads, two outputs never share a file, and a
//! symlink or a FIFO at the output path is written through, not replaced by a regular file.

use std::os::unix::fs::FileTypeExt;

use super::*;

#[test]
fn outputs_keep_inputs_links_and_devices() {
    let Some(tiny) = fixtures("tiny-llama") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // A copy of an adapter, so that a failure of the check cannot damage the fixtures.
    let adapter = tmp.path().join("qv");
    std::fs::create_dir(&adapter).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(tiny.join("adapters/qv_r8").join(f), adapter.join(f)).unwrap();
    }
    let weights = adapter.join("adapter_model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let m = tiny.to_str().unwrap();
    let spec = format!("qv={}", adapter.display());
    let score = |out: &std::path::Path| {
        run(&[
            "score",
            "--backend",
            "cpu",
            "-m",
            m,
            "--adapter",
            &spec,
            "--mix",
            "qv=1",
            "--ids",
            "1,2,3",
            "--out",
            out.to_str().unwrap(),
        ])
    };

    // The adapter's own file, named directly and through `..`: refused, the file unchanged.
    let round_about = tmp.path().join("qv/../qv/adapter_model.safetensors");
    for out in [&weights, &round_about] {
        let o = score(out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("which this run reads"), "{err}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    // A name of another format (a reader would take the safetensors for it): refused before
    // the run, nothing written.
    for name in ["logits.gguf", "logits.JSON"] {
        let out = tmp.path().join(name);
        let o = score(&out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains("the file is written as safetensors") && err.contains(name),
            "{err}"
        );
        assert!(!out.exists());
    }
    // A llama.cpp LoRA GGUF given as the adapter: the file itself is an input (named without
    // `.gguf`, which the format check would refuse first; it is read as GGUF by its magic).
    let gguf = tmp.path().join("arcee-lora");
    let lora = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/gguf-lora/tiny-arcee.all_r8.f32.gguf");
    std::fs::copy(&lora, &gguf).unwrap();
    let arcee =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-arcee");
    let o = run(&[
        "score",
        "--backend",
        "cpu",
        "-m",
        arcee.to_str().unwrap(),
        "--adapter",
        &format!("a={}", gguf.display()),
        "--mix",
        "a=1",
        "--ids",
        "1,2,3",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("which this run reads"),
        "{err}"
    );
    assert_eq!(std::fs::read(&gguf).unwrap(), std::fs::read(&lora).unwrap());
    // A new file in the adapter's folder replaces nothing: allowed.
    let beside = adapter.join("logits.safetensors");
    assert!(score(&beside).status.success());
    // In the model's folder too, and again once it exists: the loader reads model.safetensors
    // or the index's shards, not every .safetensors file there; a shard stays refused.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(&tiny).unwrap() {
        let (path, name) = (e.as_ref().unwrap().path(), e.unwrap().file_name());
        if path.is_file() && !name.to_string_lossy().starts_with("golden") {
            std::fs::copy(&path, model.join(name)).unwrap();
        }
    }
    let score_model = |out: &std::path::Path| {
        let ids = ["score", "--backend", "cpu", "--ids", "1,2,3", "--out"];
        run(&[
            &ids[..],
            &[out.to_str().unwrap(), "-m", model.to_str().unwrap()],
        ]
        .concat())
    };
    for _ in 0..2 {
        let o = score_model(&model.join("logits.safetensors"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = score_model(&model.join("model-00003-of-00014.safetensors"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("which this run reads"));
    let (shape, want) = read_logits(&beside);
    assert_eq!(shape[0], 3);

    // A symlink: the target gets the logits, the link stays a link.
    let target = tmp.path().join("target.safetensors");
    std::fs::write(&target, b"old").unwrap();
    let link = tmp.path().join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(score(&link).status.success());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_logits(&target).1, want);
    // A dangling symlink: its target is created, as `>` would.
    let (missing, dangling) = (
        tmp.path().join("new.safetensors"),
        tmp.path().join("dangling"),
    );
    std::os::unix::fs::symlink("new.safetensors", &dangling).unwrap();
    assert!(score(&dangling).status.success());
    assert_eq!(read_logits(&missing).1, want);
    // A second logits file beside the adapter's own: allowed again (only read files count).
    assert!(score(&beside).status.success());

    // A FIFO: its reader gets the logits, and it stays a FIFO.
    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    assert!(score(&fifo).status.success());
    let got = reader.join().unwrap();
    assert_eq!(got, std::fs::read(&beside).unwrap());
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // Two outputs naming one file: refused before the run.
    let same = tmp.path().join("same.png");
    let same = same.to_str().unwrap();
    fails_with(
        &["bench", "-m", m, "--json", same, "--plot", same],
        &["--plot and --json name the same file"],
    );
}

/// Standard output that cannot be written (a full disk: /dev/full) is an error naming it,
/// never a panic or an exit 0 with the answer lost; the report's files are written first.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_an_error_after_the_files() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let full = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dlp-run"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "dlp-run {args:?} exited 0: {err}");
        assert!(!err.contains("panicked"), "dlp-run {args:?}: {err}");
        err
    };
    let m = gguf.to_str().unwrap();
    for gen in [&["--max-tokens", "3"][..], &["--max-tokens", "3", "--json"]] {
        let args = [
            &["generate", "--backend", "cpu", "-m", m, "-p", "hi"][..],
            gen,
        ]
        .concat();
        let err = full(&args);
        assert!(err.contains("to standard output: No space left"), "{err}");
    }
    let err = full(&["tokenize", "-m", m, "--text", "hi"]);
    assert!(err.contains("writing to standard output"), "{err}");
    // A router's evaluation: its JSON and PNG are written, then the table's error.
    let tmp = tempfile::tempdir().unwrap();
    let demo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../router/demo");
    let router = tmp.path().join("router");
    let (train, dev) = (demo.join("train.jsonl"), demo.join("dev.jsonl"));
    let tokenizer = d.join("tokenizer/tokenizer.json");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let head = [
        "train-router",
        "--data",
        &s(&train),
        "--tokenizer",
        &s(&tokenizer),
        "--out",
        &s(&router),
    ];
    succeeds(&[&head[..], &TINY_ROUTER[..]].concat());
    let (json, png) = (tmp.path().join("e.json"), tmp.path().join("c.png"));
    let err = full(&[
        "eval-router",
        "--router",
        &s(&router),
        "--data",
        &s(&dev),
        "--json",
        &s(&json),
        "--png",
        &s(&png),
    ]);
    assert!(err.contains("writing to standard output"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v["top1"].is_number(), "{v}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}
