//! Flags that conflict, repeat or leave a result short: refused with the flag named, or the
//! shortfall said.

use super::{args, fails_with, run, run_with_stdin};
use dlp_tests::fixtures;

#[test]
fn conflicting_repeated_and_cut_short_flags_are_named() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = gguf.to_str().unwrap();
    let qv = format!("qv={}", d.join("adapters/qv_r8").display());
    let gen_cpu = ["generate", "--backend", "cpu", "-m", m];
    let qv_cpu = args(&gen_cpu, &["--adapter", &qv]);
    fails_with(
        &args(&qv_cpu, &["--mix", "qv=0.5,", "--prompt", "hi"]),
        &["--mix `qv=0.5,`: an empty entry"],
    );
    // Router flags with --mix (which the router's flags conflict with) are refused, not
    // ignored: the requirement of --router had fallen with --router's conflict.
    fails_with(
        &args(
            &qv_cpu,
            &["--mix", "qv=1", "--route-p", "5", "--prompt", "hi"],
        ),
        &["--route-p", "cannot be used with", "--mix"],
    );
    // An adapter folder that does not exist is said not to exist.
    fails_with(
        &args(
            &gen_cpu,
            &["--adapter", "x=/no/such/adapter", "--prompt", "hi"],
        ),
        &["adapter `x`: /no/such/adapter does not exist"],
    );
    // A PEFT folder without its config is named as one (not as a model lacking config.json).
    let no_cfg = tempfile::tempdir().unwrap();
    std::fs::write(no_cfg.path().join("adapter_model.safetensors"), b"x").unwrap();
    fails_with(
        &["inspect", no_cfg.path().to_str().unwrap()],
        &["adapter_config.json: missing"],
    );
    // A negative number is the flag's value, refused by the flag's name.
    fails_with(
        &args(&gen_cpu, &["--top-k", "-1", "--prompt", "hi"]),
        &["invalid value '-1' for '--top-k"],
    );
    let bench = ["bench", "--backend", "cpu", "-m", m, "--adapter", &qv];
    fails_with(
        &args(&bench, &["--fused", "1,1", "--quick"]),
        &["--fused: K 1 is given twice"],
    );
    // A format the token limit cut is said, though the run succeeds (as a server's would).
    let cut = run(&args(
        &gen_cpu,
        &[
            "--prompt",
            "Pick:",
            "--max-tokens",
            "1",
            "--choice",
            "absolutely not",
            "--choice",
            "definitely yes",
        ],
    ));
    let err = String::from_utf8_lossy(&cut.stderr);
    assert!(cut.status.success(), "{err}");
    assert!(
        err.contains("ended the answer before its output format was complete"),
        "{err}"
    );
}

/// `-` reads standard input: `--prompt -` (less a byte-order mark and one final newline)
/// generates what the same text given as `--prompt` does, `--prompts -` reads JSONL,
/// `tokenize --chat-json -` a chat; an empty or non-UTF-8 input is refused naming standard
/// input.
#[test]
fn a_dash_reads_standard_input() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = gguf.to_str().unwrap();
    let gen = [
        "generate",
        "--backend",
        "cpu",
        "-m",
        m,
        "--max-tokens",
        "6",
        "--temperature",
        "0",
    ];
    let stdout = |out: std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let stderr = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let prompt = "The capital of France is";
    let text = stdout(run(&args(&gen, &["--prompt", prompt])));
    assert!(!text.trim().is_empty());
    let dash = args(&gen, &["--prompt", "-"]);
    let piped = run_with_stdin(&dash, format!("{prompt}\n").as_bytes());
    assert_eq!(stdout(piped), text);
    let bom = run_with_stdin(&dash, format!("\u{feff}{prompt}\r\n").as_bytes());
    assert_eq!(stdout(bom), text);
    let line = format!("{{\"prompt\": \"{prompt}\"}}\n");
    let jsonl = stdout(run_with_stdin(
        &args(&gen, &["--prompts", "-", "--json"]),
        line.as_bytes(),
    ));
    let v: serde_json::Value = serde_json::from_str(&jsonl).expect("one JSON object");
    let generated = v["results"][0]["text"].as_str().expect("results[0].text");
    assert_eq!(generated.trim_end(), text.trim_end(), "{jsonl}");
    let chat = run_with_stdin(
        &["tokenize", "-m", m, "--chat-json", "-"],
        br#"[{"role": "user", "content": "Hello there"}]"#,
    );
    assert!(stdout(chat).contains("Hello there"));
    // Errors name standard input, not a file called `-`.
    let bad = run_with_stdin(
        &args(&gen, &["--prompts", "-"]),
        b"{\"prompt\": \"a\xff\"}\n",
    );
    let err = stderr(bad);
    assert!(err.contains("standard input:1: not UTF-8 text"), "{err}");
    let err = stderr(run_with_stdin(
        &["tokenize", "-m", m, "--chat-json", "-"],
        b"{",
    ));
    assert!(err.contains("standard input: not valid JSON"), "{err}");
    let err = stderr(run_with_stdin(&dash, b"\n"));
    assert!(err.contains("--prompt -: standard input is empty"), "{err}");
}

/// Without --model and $DLP_MODEL, the default model is also found under $DLP_FIXTURES (where
/// train-router's default tokenizer is), from any working folder; where none is found, the
/// error lists every place looked at.
#[test]
fn the_default_model_is_found_under_dlp_fixtures() {
    let Some(d) = fixtures("smollm2") else { return };
    let root = d.parent().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let tokenize = |fixtures: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dlp-run"))
            .args(["tokenize", "--text", "Hello"])
            .current_dir(elsewhere.path())
            .env_remove("DLP_MODEL")
            .env("DLP_FIXTURES", fixtures)
            .output()
            .unwrap()
    };
    let o = tokenize(root);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!o.stdout.is_empty());
    let o = tokenize(elsewhere.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    for n in [
        "no default model found",
        "$DLP_MODEL",
        "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ] {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    assert!(err.contains(&*elsewhere.path().to_string_lossy()), "{err}");
}

/// `inspect` describes a model it cannot run (its config's type, classes and sizes, its
/// weights) and says why, as it does for such a GGUF; a folder without `config.json` is refused.
#[test]
fn inspect_describes_a_model_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let tiny =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-hunyuan");
    std::fs::copy(
        tiny.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let config = r#"{"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"],
        "text_config": {"model_type": "qwen3_5_text", "num_hidden_layers": 24, "hidden_size": 1024,
        "vocab_size": 248320}}"#;
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let out = super::run(&["inspect", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "config.json: model_type qwen3_5, architectures [\"Qwen3_5ForConditionalGeneration\"]\n",
        "text_config: model_type qwen3_5_text, 24 layers, hidden 1024, vocabulary 248320",
        "not loadable as a model: ",
        "unknown architecture: model_type `qwen3_5`",
        "parameters: 94592 (0.1 M)",
    ] {
        assert!(text.contains(needle), "no {needle:?} in {text}");
    }
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    fails_with(&["inspect", dir.path().to_str().unwrap()], &["config.json"]);
}
