//! The `dlp-run` binary end to end: the `score` / `tokenize` contracts that outside checks
//! use, and clear non-zero exits (never panics) on bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

use dlp_tests::fixtures;

#[path = "cli/bad_data.rs"]
mod bad_data;
#[path = "cli/bad_input.rs"]
mod bad_input;
#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/elsewhere.rs"]
mod elsewhere;
#[path = "cli/flags.rs"]
mod flags;
#[path = "cli/gpu_check.rs"]
mod gpu_check;
#[path = "cli/outputs.rs"]
mod outputs;
#[path = "cli/router.rs"]
mod router;
#[path = "cli/routing.rs"]
mod routing;

#[path = "common/run.rs"]
mod run_cmd;
use run_cmd::{run, succeeds};

/// train-router's flags for a router trained in a blink (what the test checks is not its
/// quality).
const TINY_ROUTER: [&str; 7] = [
    "--embed-dim",
    "16",
    "--hidden",
    "16",
    "--epochs",
    "1",
    "--quiet",
];

/// [`run`] with `input` on standard input.
fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlp-run"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Written from another thread: a child that fails early may never read it all.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "dlp-run {args:?} panicked: {err}"
    );
    out
}

/// `head` followed by `rest`: a command line built from a shared prefix.
fn args<'a>(head: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    [head, rest].concat()
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dlp-run {args:?} should fail");
    for n in needles {
        assert!(
            err.contains(n),
            "dlp-run {args:?}: stderr {err:?} lacks {n:?}"
        );
    }
}

fn read_logits(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    (
        t.shape().to_vec(),
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}

#[test]
fn score_matches_the_reference_in_both_modes() {
    let Some(d) = fixtures("tiny-llama") else {
        return;
    };
    let golden = std::fs::read(d.join("golden.safetensors")).unwrap();
    let g = safetensors::SafeTensors::deserialize(&golden).unwrap();
    let ids: Vec<String> = g
        .tensor("p1.mix3.input_ids")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect();
    let want: Vec<f32> = g
        .tensor("p1.mix3.logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["prefill", "decode"] {
        let out = tmp.path().join(format!("{mode}.safetensors"));
        let a = |n: &str| format!("{n}={}", d.join("adapters").join(n).display());
        let o = run(&[
            "score",
            "--backend",
            "cpu",
            "--model",
            d.to_str().unwrap(),
            "--adapter",
            &a("qv_r8"),
            "--adapter",
            &a("all_r4_rslora"),
            "--adapter",
            &a("mlp_pattern"),
            "--mix",
            "qv_r8=0.5,all_r4_rslora=0.3,mlp_pattern=0.2",
            "--ids",
            &ids.join(","),
            "--out",
            out.to_str().unwrap(),
            "--mode",
            mode,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (shape, got) = read_logits(&out);
        assert_eq!(shape, vec![ids.len(), 256]);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 2e-3, "{mode}: max |diff| {worst}");
    }
}

#[test]
fn tokenize_and_chat_template() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let o = run(&[
        "tokenize",
        "--model",
        gguf.to_str().unwrap(),
        "--text",
        "The capital of France is",
    ]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[504,3575,282,4649,314]"
    );
    // Text that starts with a hyphen is the flag's value (a negative number, a list item),
    // not "unexpected argument '-5'"; so are stop strings and prompts.
    let o = succeeds(&[
        "tokenize",
        "-m",
        gguf.to_str().unwrap(),
        "--text",
        "-5 apples",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[29,37,13855]");
    let o = succeeds(&[
        "generate",
        "-m",
        gguf.to_str().unwrap(),
        "--prompt",
        "- item one",
        "--stop",
        "---",
        "--max-tokens",
        "2",
    ]);
    assert!(!o.stdout.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("m.json");
    std::fs::write(&f, r#"[{"role": "user", "content": "What is 2+2?"}]"#).unwrap();
    let o = run(&[
        "tokenize",
        "--model",
        gguf.to_str().unwrap(),
        "--chat-json",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// `dlp-run inspect --backends` lists every backend and what `auto` picks; a software wgpu
/// adapter (lavapipe in CI) is listed but never picked by `auto`.
#[test]
fn inspect_backends_lists_what_auto_picks() {
    let out = run(&["inspect", "--backends"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "cpu: always available",
        "wgpu:",
        "cuda:",
        "--backend auto picks:",
    ] {
        assert!(text.contains(needle), "no {needle:?} in {text}");
    }
    let hardware_wgpu = text.lines().any(|l| {
        l.trim_start().starts_with("wgpu:") && !l.contains("software") && !l.contains("no adapter")
    });
    if !hardware_wgpu {
        assert!(
            !text.contains("auto picks: wgpu"),
            "auto picked a software adapter: {text}"
        );
    }
}

/// `inspect` on a model prints the config as dlp-run reads it in a few lines (it was a Debug
/// dump, a line per layer's window).
#[test]
fn inspect_prints_the_model_config() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "compat/tiny-qwen2-sw",
            &[
                "Qwen2: 2 layers, hidden 64",
                "4 query heads, 2 key/value heads, head width 16",
                "sliding windows (layer:window) 1:",
                "biases: q/k/v yes, o no, MLP no",
                "end ids [2]",
            ],
        ),
        // Qwen3 (this repository's fixture): heads wider than hidden / heads, normed q and k.
        (
            "tiny-qwen3",
            &[
                "Qwen3: 2 layers, hidden 64",
                "head width 32, each head's query and key RMS-normed before RoPE;",
                "biases: q/k/v no, o no, MLP no",
            ],
        ),
        // OLMo 3 in the Hub's layout: YaRN and base 10000 in the full-attention layer, the
        // sliding layers at Olmo3Config's 500000, unscaled.
        (
            "tiny-olmo3",
            &[
                "Olmo3: 4 layers, hidden 64",
                "sliding windows (layer:window) 0:6 2:6 3:6",
                "RoPE theta 10000, YaRN scaling (factor 4, original context 64",
                "sliding layers' RoPE theta 500000 (unscaled)",
                "norms: none before attention or the feed-forward",
            ],
        ),
        // GLM-4 in the Hub's layout: half of each head rotated, in adjacent pairs; norms around
        // both sub-blocks.
        (
            "tiny-glm4",
            &[
                "Glm4: 3 layers, hidden 64",
                "RoPE theta 10000 on the first 12 of each head's 24 dimensions in adjacent pairs;",
                "biases: q/k/v yes, o no, MLP no",
                "norms: before attention and the feed-forward, and each one's output normed",
            ],
        ),
        // Cohere 2: LayerNorms, parallel blocks, its logits' factor; a NoPE full-attention layer.
        (
            "tiny-cohere2",
            &[
                "Cohere2: 4 layers, hidden 64",
                "sliding windows (layer:window) 0:6 1:6 2:6",
                "in adjacent pairs; NoPE layers (no rotation) 3; LayerNorm epsilon 0.00001",
                "Cohere: LayerNorms (no bias); attention and the feed-forward side by side on one normed input, both added to the residual; logits x 1.5",
            ],
        ),
        // A GGUF as Llama 3.1's are written: its RoPE scaling as rope_freqs.weight.
        (
            "tiny-llama-gguf",
            &[
                "Llama: 1 layers, hidden 256",
                "frequencies divided by rope_freqs.weight (32 factors, 1 to 8)",
                "lm_head tied to the embedding: no",
            ],
        ),
    ];
    for (fixture, needles) in cases {
        let Some(d) = fixtures(fixture) else {
            continue;
        };
        // A GGUF fixture's model is its file.
        let gguf = d.join("model.gguf");
        let d = if gguf.exists() { gguf } else { d };
        let out = run(&["inspect", &d.to_string_lossy()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for needle in needles {
            assert!(text.contains(needle), "no {needle:?} in {text}");
        }
        assert!(!text.contains("None"), "{text}");
    }
    // A llama.cpp LoRA GGUF: what it adapts, not "not loadable as a model".
    let lora = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/gguf-lora/tiny-phi3.stacked_r4.f16.gguf");
    let out = run(&["inspect", &lora.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "llama.cpp LoRA adapter for `phi3` models",
        "adapter.lora.alpha = 8 (scale alpha / r): scale 2 at r 4",
        "ranks: {4}",
        "pairs: 8 on attn_output, attn_qkv, ffn_down, ffn_up",
        "load it with --adapter NAME=PATH",
    ] {
        assert!(text.contains(needle), "no {needle:?} in {text}");
    }
}

/// What a Vulkan driver prints while the adapter opens (Mesa's `XDG_RUNTIME_DIR is invalid`,
/// twice, on a headless machine) is not shown by default; with -vv it is, as a log line.
#[test]
fn wgpu_driver_messages_only_with_verbose() {
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let generate = |verbose: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dlp-run"))
            .args(verbose)
            .args([
                "generate",
                "--backend",
                "wgpu",
                "--max-tokens",
                "2",
                "-p",
                "hi",
                "-m",
            ])
            .arg(&gguf)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = generate(&[]);
    if !ok && err.contains("no wgpu adapter") {
        dlp_tests::skip_unless_required("no wgpu adapter", "DLP_REQUIRE_WGPU");
        return;
    }
    assert!(ok, "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    let (ok, err) = generate(&["-vv"]);
    assert!(ok, "{err}");
    // Only a driver that prints (Mesa's) has something to show.
    if let Some(at) = err.find("XDG_RUNTIME_DIR") {
        assert!(
            err[..at].contains("the Vulkan driver said while opening the adapter"),
            "{err}"
        );
    }
}

/// One BOS rule for every path (`compat/bos`): an HF tokenizer's post-processor BOS goes in
/// front of a raw prompt only, a rendered chat gets exactly what its template writes
/// (transformers); a GGUF follows llama.cpp's add_bos (the llama-bpe group turns it on unless
/// the metadata key says otherwise). Ids compared exactly; the chat text too.
#[test]
fn compat_bos_rules() {
    let Some(dir) = fixtures("compat/bos") else {
        return;
    };
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let model = dir.join(c["model"].as_str().unwrap());
        let m = model.to_str().unwrap();
        let ids = |out: Output| -> Vec<u32> {
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let want: Vec<u32> = serde_json::from_value(c["expected_ids"].clone()).unwrap();
        if c["kind"] == "chat" {
            let f = tmp.path().join(format!("{name}.json"));
            std::fs::write(&f, c["messages"].to_string()).unwrap();
            let text = run(&["tokenize", "-m", m, "--chat-json", f.to_str().unwrap()]);
            assert_eq!(
                String::from_utf8_lossy(&text.stdout),
                c["expected_text"].as_str().unwrap(),
                "{name}: text"
            );
            let got = ids(run(&[
                "tokenize",
                "-m",
                m,
                "--chat-json",
                f.to_str().unwrap(),
                "--prompt-ids",
            ]));
            assert_eq!(got, want, "{name}: {}", c["rule"]);
        } else {
            let got = ids(run(&[
                "tokenize",
                "-m",
                m,
                "--text",
                c["text"].as_str().unwrap(),
                "--prompt-ids",
            ]));
            assert_eq!(got, want, "{name}: {}", c["rule"]);
        }
    }
}

/// `--chat-template FILE` replaces the model's template; `tokenize --chat-json` takes what
/// `apply_chat_template` takes (an object with tools and add_generation_prompt).
#[test]
fn chat_template_override_and_request_object() {
    let Some(d) = fixtures("smollm2") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t.jinja");
    std::fs::write(&t, "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{% if tools %}{{ tools|length }} tools{% endif %}{% if add_generation_prompt %}>{% endif %}").unwrap();
    let f = tmp.path().join("req.json");
    std::fs::write(&f, r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}], "add_generation_prompt": false}"#).unwrap();
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = run(&[
        "tokenize",
        "-m",
        gguf.to_str().unwrap(),
        "--chat-template",
        t.to_str().unwrap(),
        "--chat-json",
        f.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[user:hi]1 tools");
    std::fs::write(&f, r#"{"messages": [{"content": "no role"}]}"#).unwrap();
    fails_with(
        &[
            "tokenize",
            "-m",
            gguf.to_str().unwrap(),
            "--chat-json",
            f.to_str().unwrap(),
        ],
        &["req.json", "role"],
    );
}
