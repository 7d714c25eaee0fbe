//! Bad input on the command line: a non-zero exit with a message naming the flag, file or
//! field, never a panic.

use super::*;

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    fails_with(
        &[
            "generate",
            "--model",
            "no/such/model.gguf",
            "--prompt",
            "hi",
        ],
        &["no/such/model.gguf", "no such file"],
    );
    let Some(d) = fixtures("smollm2") else { return };
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = gguf.to_str().unwrap();
    let qv = format!("qv={}", d.join("adapters/qv_r8").display());
    let gen_cpu = ["generate", "--backend", "cpu", "-m", m];
    let score_cpu = ["score", "--backend", "cpu", "-m", m];
    let qv_cpu = args(&gen_cpu, &["--adapter", &qv]);
    // A folder that is no PEFT adapter, said once (an error chain had printed the OS error
    // twice; a missing adapter_config.json is now named before any read).
    let empty = tempfile::tempdir().unwrap();
    let adapter = format!("x={}", empty.path().display());
    let bad_adapter = args(&gen_cpu, &["--adapter", &adapter, "--prompt", "hi"]);
    fails_with(
        &bad_adapter,
        &["not a PEFT adapter folder: no adapter_config.json"],
    );
    let err = String::from_utf8_lossy(&run(&bad_adapter).stderr).into_owned();
    assert_eq!(err.matches("no adapter_config.json").count(), 1, "{err}");
    // A folder of llama.cpp GGUFs: which file to give.
    std::fs::write(empty.path().join("a.gguf"), b"GGUF").unwrap();
    fails_with(&bad_adapter, &["it holds 1 .gguf files: give one of them"]);
    fails_with(
        &args(&qv_cpu, &["--mix", "nope=1", "--prompt", "hi"]),
        &["--mix: mixture names adapter `nope`", "not loaded"],
    );
    fails_with(
        &args(&qv_cpu, &["--mix", "QV=1", "--prompt", "hi"]),
        &["adapter `QV`", "did you mean `qv`?"],
    );
    // No input: both ways to give one are named.
    fails_with(&gen_cpu, &["--prompt <TEXT>|--prompts <FILE.jsonl>"]);
    let comma = format!("a,b={}", d.join("adapters/qv_r8").display());
    fails_with(
        &args(&gen_cpu, &["--adapter", &comma, "--prompt", "hi"]),
        &["--adapter", "the name `a,b` must not contain `,` or `=`"],
    );
    fails_with(
        &args(&qv_cpu, &["--mix", "qv=3.5e38", "--prompt", "hi"]),
        &["--mix `qv=3.5e38`: the weight is past the largest a mixture may give, 100"],
    );
    // Context limits name the flag or the prompt's line (the engine says "request 1").
    fails_with(
        &args(
            &score_cpu,
            &["--ids", "1,2,3,4,5", "--max-context", "3", "--out", "x.st"],
        ),
        &["--ids: 5 tokens, the context holds 3 (--max-context"],
    );
    let lines = tempfile::tempdir().unwrap();
    let p2 = lines.path().join("p2.jsonl");
    std::fs::write(
        &p2,
        "{\"prompt\": \"hi\"}\n{\"prompt\": \"one two three four five six seven eight\"}\n",
    )
    .unwrap();
    fails_with(
        &args(
            &gen_cpu,
            &["--prompts", p2.to_str().unwrap(), "--max-context", "6"],
        ),
        &[
            "p2.jsonl:2: the prompt has",
            "the context holds 6 (--max-context",
        ],
    );
    // Sampling filters at the default greedy temperature run, with a note that they change
    // nothing.
    let out = run(&args(
        &gen_cpu,
        &[
            "--top-k",
            "5",
            "--seed",
            "3",
            "--max-tokens",
            "1",
            "-p",
            "hi",
        ],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: --top-k, --seed change nothing at --temperature 0"),
        "{err}"
    );
    // inspect on a device (or a FIFO, which had blocked forever) is refused at once.
    fails_with(
        &["inspect", "/dev/null"],
        &["/dev/null: not a regular file or a folder"],
    );
    // An empty chat template is named, not the prompt.
    fails_with(
        &args(
            &gen_cpu,
            &["--chat", "--chat-template", "/dev/null", "-p", "hi"],
        ),
        &["--prompt: the chat template rendered an empty prompt"],
    );
    fails_with(
        &args(&qv_cpu, &["--mix", "qv=100.5", "--prompt", "hi"]),
        &["--mix `qv=100.5`: the weight is past the largest"],
    );
    // A stream that does not end is refused at the limit, not read until memory runs out.
    fails_with(
        &args(&gen_cpu, &["--prompts", "/dev/zero"]),
        &["--prompts /dev/zero: more than 256 MiB", "read whole"],
    );
    fails_with(
        &args(&gen_cpu, &["--threads", "100000", "--prompt", "hi"]),
        &["--threads 100000: at most", "per core"],
    );
    fails_with(
        &args(&gen_cpu, &["--temperature", "-1", "--prompt", "hi"]),
        &["--temperature -1: must be finite and >= 0"],
    );
    fails_with(
        &[
            "generate",
            "--backend",
            "wgpu",
            "-m",
            m,
            "--lora-f16",
            "--prompt",
            "hi",
        ],
        &["--lora-f16 needs --backend cpu", "asked for is wgpu"],
    );
    fails_with(
        &[
            "generate",
            "--backend",
            "wgpu",
            "-m",
            m,
            "--cpu-amx",
            "--prompt",
            "hi",
        ],
        &["--cpu-amx needs --backend cpu", "asked for is wgpu"],
    );
    fails_with(
        &args(&gen_cpu, &["--cuda-bf16-weights", "--prompt", "hi"]),
        &[
            "--cuda-bf16-weights needs --backend cuda",
            "asked for is cpu",
        ],
    );
    for (flag, value) in [
        ("--cuda-bf16-compute", None),
        ("--cuda-lora-bf16", None),
        ("--cuda-experimental", Some("graphs")),
    ] {
        let mut a = vec!["generate", "--backend", "cpu", "-m", m, flag];
        a.extend(value);
        a.extend(["--prompt", "hi"]);
        fails_with(
            &a,
            &[&format!("{flag} needs --backend cuda"), "asked for is cpu"],
        );
    }
    // Under --backend auto, one backend's flags choose it; two backends' flags are refused.
    let gen_auto = ["generate", "-m", m, "--max-tokens", "2", "--prompt", "hi"];
    succeeds(&args(&gen_auto, &["--cpu-int8"]));
    fails_with(
        &args(&gen_auto, &["--cpu-int8", "--cuda-kv-bf16"]),
        &["--cpu-int8 is for --backend cpu and --cuda-kv-bf16 for --backend cuda"],
    );
    // A folder given as the model: the adapter it is, or the .gguf it holds, is named.
    fails_with(
        &[
            "generate",
            "--backend",
            "cpu",
            "-m",
            &d.join("adapters/qv_r8").to_string_lossy(),
            "--prompt",
            "hi",
        ],
        &["no config.json", "PEFT LoRA adapter", "--adapter NAME=DIR"],
    );
    let holder = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&gguf, holder.path().join("model.Q4_1.gguf")).unwrap();
        let dir = holder.path().to_string_lossy();
        fails_with(
            &["generate", "--backend", "cpu", "-m", &dir, "--prompt", "hi"],
            &["no config.json", "give the file", "model.Q4_1.gguf"],
        );
    }
    // A build without CUDA names the flag that asked for it, not a `--backend cuda` never given.
    #[cfg(not(feature = "cuda"))]
    {
        fails_with(
            &args(&gen_auto, &["--cuda-experimental", "fast"]),
            &[
                "--cuda-experimental is a flag of the CUDA backend",
                "--features cuda",
            ],
        );
        fails_with(
            &args(&gen_auto, &["--backend", "cuda"]),
            &["--backend cuda: this build has no CUDA backend"],
        );
    }
    fails_with(
        &[
            "generate",
            "--backend",
            "cuda",
            "-m",
            m,
            "--cuda-experimental",
            "decode-matvec,warp-speed",
            "--prompt",
            "hi",
        ],
        &[
            "warp-speed",
            "decode-matvec, fused-lora",
            "fused-norm, fused-rope, fused-kv-store, fused-shrink, dependent-launch, batch-lora, \
             inline-shrink, tiled-lora, inline-combine, rope-in-attention, fused-silu, norm-in-matvec, \
             kv-copy, expand-launch, lora-prefetch, device-argmax, device-sampling, packed-upload, \
             fast, all",
        ],
    );
    fails_with(
        &args(&qv_cpu, &["--mix", "qv=-1", "--prompt", "hi"]),
        &["--mix: mixture weight", "-1", ">= 0"],
    );
    fails_with(
        &args(&qv_cpu, &["--mix", "qv=nan", "--prompt", "hi"]),
        &["finite"],
    );
    fails_with(
        &["generate", "--backend", "cpu", "-m", m, "--prompt", ""],
        &["empty"],
    );
    fails_with(
        &args(
            &gen_cpu,
            &[
                "--max-context",
                "8",
                "--prompt",
                "one two three four five six seven eight nine ten",
            ],
        ),
        &["context"],
    );
    fails_with(
        &args(&gen_cpu, &["--adapter", "qv", "--prompt", "hi"]),
        &["NAME=PATH"],
    );
    fails_with(
        &args(&score_cpu, &["--ids", "1,x", "--out", "/dev/null"]),
        &["`x`"],
    );
    fails_with(
        &args(&score_cpu, &["--ids", "99999999", "--out", "/dev/null"]),
        &["outside the vocabulary"],
    );
    fails_with(
        &args(&gen_cpu, &["--top-p", "1.5", "--prompt", "hi"]),
        &["--top-p 1.5", "(0, 1]"],
    );
    let tiny = fixtures("tiny-llama").unwrap();
    let wrong = format!("x={}", tiny.join("adapters/qv_r8").display());
    fails_with(
        &args(&gen_cpu, &["--adapter", &wrong, "--prompt", "hi"]),
        &["adapter `x`", "shape"],
    );
    // An adapter that overflows the forward pass: an error, not an empty answer.
    let tmp = tempfile::tempdir().unwrap();
    let huge = format!(
        "huge={}",
        overflowing_adapter(&d.join("adapters/qv_r8"), tmp.path()).display()
    );
    let huge_cpu = args(&qv_cpu, &["--adapter", &huge]);
    fails_with(
        &args(
            &huge_cpu,
            &["--mix", "huge=1", "--max-tokens", "3", "--prompt", "hi"],
        ),
        &["--prompt: a NaN logit, or no finite logit", "mixture"],
    );
    // In a batch, the broken prompt is named by its line and the others are still answered.
    let jsonl = tmp.path().join("p.jsonl");
    std::fs::write(
        &jsonl,
        "{\"prompt\": \"hi\", \"mix\": \"qv=1\"}\n\n{\"prompt\": \"hi\", \"mix\": {\"huge\": 1}}\n",
    )
    .unwrap();
    let out = run(&args(
        &huge_cpu,
        &[
            "--prompts",
            jsonl.to_str().unwrap(),
            "--max-tokens",
            "3",
            "--json",
        ],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("p.jsonl:3: a NaN logit"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_ne!(results[0]["finish_reason"], "non_finite", "{v}");
    assert!(results[0]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(results[1]["finish_reason"], "non_finite", "{v}");
    // The largest --max-tokens runs to the context (prompt + max_tokens wrapped to a cache of
    // one token, which ended the answer after one with "context").
    let one = tmp.path().join("one.jsonl");
    std::fs::write(&one, "{\"prompt\": \"hi\"}\n").unwrap();
    let max = u64::MAX.to_string();
    let out = succeeds(&args(
        &qv_cpu,
        &[
            "--prompts",
            one.to_str().unwrap(),
            "--max-tokens",
            &max,
            "--min-tokens",
            "64",
            "--max-context",
            "24",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["finish_reason"], "context", "{v}");
    assert!(
        v["results"][0]["completion_tokens"].as_u64().unwrap() > 1,
        "{v}"
    );
    // The cut answer is not silent: a note names the prompt and the context.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "note: {}:1: the context (24 tokens",
            one.display()
        )),
        "{err}"
    );
    // Flags that would be silently ignored, and prompt-file errors that name their line.
    fails_with(
        &args(&gen_cpu, &["--system", "be brief", "--prompt", "hi"]),
        &["--system", "--chat"],
    );
    let lines = tmp.path().join("lines.jsonl");
    std::fs::write(
        &lines,
        "{\"prompt\": \"hi\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
    )
    .unwrap();
    let lines = lines.to_str().unwrap();
    fails_with(
        &args(
            &gen_cpu,
            &["--chat", "--system", "be brief", "--prompts", lines],
        ),
        &["lines.jsonl:2", "--system", "its own `messages`"],
    );
    let template = tmp.path().join("t.jinja");
    std::fs::write(&template, "{{ messages[0].content }}").unwrap();
    fails_with(
        &args(
            &gen_cpu,
            &[
                "--chat-template",
                template.to_str().unwrap(),
                "--prompt",
                "hi",
            ],
        ),
        &["--chat-template is used by --chat"],
    );
    let unknown = tmp.path().join("unknown.jsonl");
    std::fs::write(
        &unknown,
        "{\"prompt\": \"hi\"}\n{\"prompt\": \"hi\", \"mix\": {\"nope\": 1}}\n",
    )
    .unwrap();
    fails_with(
        &args(&qv_cpu, &["--prompts", unknown.to_str().unwrap()]),
        &["unknown.jsonl:2", "`nope`"],
    );
    let latin1 = tmp.path().join("latin1.jsonl");
    std::fs::write(
        &latin1,
        b"{\"prompt\": \"hi\"}\n{\"prompt\": \"caf\xe9\"}\n",
    )
    .unwrap();
    fails_with(
        &args(&gen_cpu, &["--prompts", latin1.to_str().unwrap()]),
        &["latin1.jsonl:2: not UTF-8"],
    );
    fails_with(
        &args(&gen_cpu, &["--stop", "", "--prompt", "hi"]),
        &["--stop", "must not be empty"],
    );
    // Sampling and structured-output flags, each named.
    for (flags, want) in [
        (
            &["--presence-penalty", "3"][..],
            &["--presence-penalty 3", "[-2, 2]"][..],
        ),
        (
            &["--frequency-penalty", "-2.5"][..],
            &["--frequency-penalty -2.5"][..],
        ),
        (
            &["--logit-bias", "5=101"][..],
            &["--logit-bias", "from -100 to 100"][..],
        ),
        (
            &["--logit-bias", "x=1"][..],
            &["--logit-bias", "not a token id"][..],
        ),
        (
            &["--logit-bias", "5=1", "--logit-bias", "5=2"][..],
            &["token 5 is given twice"][..],
        ),
        (
            &["--logit-bias", "99999999=1"][..],
            &["token 99999999", "outside"][..],
        ),
        (
            &["--json-schema", "no/schema.json"][..],
            &["--json-schema no/schema.json", "not a readable file"][..],
        ),
        (
            &[
                "--json-schema",
                "{\"type\": \"integer\", \"minimum\": 2, \"maximum\": 1}",
            ][..],
            &["--json-schema", "nsatisfiable"][..],
        ),
        (&["--regex", "(a"][..], &["--regex", "unclosed group"][..]),
        (
            &["--regex", "a", "--choice", "b"][..],
            &["cannot be used with"][..],
        ),
        (
            &["--choice", ""][..],
            &["--choice", "must not be empty"][..],
        ),
    ] {
        fails_with(
            &args(&gen_cpu, &[flags, &["--prompt", "hi"]].concat()),
            want,
        );
    }
    // A tokenizer of another model beside the weights (SmolLM2's 49,152 tokens, 256 rows).
    let mismatched = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&tiny).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), mismatched.path().join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(
        d.join("tokenizer/tokenizer.json"),
        mismatched.path().join("tokenizer.json"),
    )
    .unwrap();
    fails_with(
        &[
            "generate",
            "--backend",
            "cpu",
            "-m",
            mismatched.path().to_str().unwrap(),
            "--prompt",
            "a",
        ],
        &[
            "tokenizer.json",
            "49152 tokens",
            "256 rows",
            "another model",
        ],
    );
    // A synthetic adapter's rank must fit the model (rank 100000 was OOM-killed at 23 GB).
    for rank in ["0", "100000"] {
        fails_with(
            &[
                "bench",
                "--backend",
                "cpu",
                "-m",
                m,
                "--rank",
                rank,
                "--quick",
            ],
            &[&format!("--rank {rank}"), "from 1 to 192"],
        );
    }
    // Refused before anything is allocated: a token count past the context (a capacity
    // overflow panic before), adapters past free memory (killed by the kernel before).
    let bench_cpu = ["bench", "--backend", "cpu", "-m", m, "--quick"];
    let max = u64::MAX.to_string();
    fails_with(
        &args(
            &["bench", "--backend", "cpu", "-m", m],
            &["--new-tokens", &max],
        ),
        &["--new-tokens 18446744073709551615", "leave room for"],
    );
    fails_with(
        &args(&bench_cpu, &["--synthetic-adapters", "100000000"]),
        &["--synthetic-adapters 100000000", "GB of memory free"],
    );
    fails_with(
        &args(&bench_cpu, &["--only", "nope", "--synthetic-adapters", "3"]),
        &["--only: no scenario `nope`"],
    );
    // An output that cannot be written is refused before the run (after it, before).
    fails_with(
        &args(&bench_cpu, &["--json", "/proc/dlp-run-x.json"]),
        &["--json /proc/dlp-run-x.json: cannot write there"],
    );
}

/// A copy of the PEFT adapter in `src`, written under `dir`, with every A and B value times
/// 1e30: finite, so it loads, but its update overflows f32 in the forward pass.
fn overflowing_adapter(src: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    use safetensors::{tensor::TensorView, SafeTensors};
    let out = dir.join("overflowing");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(
        src.join("adapter_config.json"),
        out.join("adapter_config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let scaled: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            let data = t
                .data()
                .chunks_exact(4)
                .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) * 1e30).to_le_bytes())
                .collect();
            (name, t.shape().to_vec(), data)
        })
        .collect();
    let views = scaled.iter().map(|(name, shape, data)| {
        let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
        (name.clone(), view)
    });
    std::fs::write(
        out.join("adapter_model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    out
}
