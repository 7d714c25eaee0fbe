//! Routed generation (`--router`, `--route-by sentence`) end to end on SmolLM2 with the
//! fixture adapters and a router trained on the demo labels.

use std::path::PathBuf;

use dlp_tests::fixtures;

use super::{fails_with, run, succeeds};

/// `--router DIR --route-by sentence`: a router trained on the demo labels (named after the
/// SmolLM2 fixture adapters) gives each sentence of a two-topic prompt its own mixture, and
/// routing problems are clear errors.
#[test]
fn routed_generation_by_sentence() {
    let Some(d) = fixtures("smollm2") else { return };
    let demo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../router/demo");
    let tmp = tempfile::tempdir().unwrap();
    let router = tmp.path().join("router");
    let (r, tokenizer) = (router.to_str().unwrap(), d.join("tokenizer/tokenizer.json"));
    succeeds(&[
        "train-router",
        "--data",
        demo.join("train.jsonl").to_str().unwrap(),
        "--dev",
        demo.join("dev.jsonl").to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        r,
    ]);
    let gguf = d.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let adapter = |n: &str| format!("{n}={}", d.join("adapters").join(n).display());
    let (qv, all, mlp) = (adapter("qv_r8"), adapter("all_r4"), adapter("mlp_r16"));
    let prompt =
        "How long should I bake sourdough bread? Which telescope can photograph Saturn's rings?";
    let mut args = vec![
        "generate",
        "--backend",
        "cpu",
        "-m",
        gguf.to_str().unwrap(),
        "--adapter",
        &qv,
        "--adapter",
        &all,
        "--adapter",
        &mlp,
        "--router",
        r,
        "--chat",
        "--max-tokens",
        "4",
        "--json",
        "--prompt",
        prompt,
    ];
    let sentence = [
        args.clone(),
        vec!["--route-by", "sentence", "--show-routing"],
    ]
    .concat();
    let out = succeeds(&sentence);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let res = &v["results"][0];
    let routing = res["routing"].as_array().unwrap();
    assert_eq!(routing.len(), 2, "{res}");
    assert!(routing[0]["text"].as_str().unwrap().contains("sourdough"));
    assert_eq!(routing[0]["mixture"][0][0], "qv_r8", "{res}");
    assert_eq!(routing[1]["mixture"][0][0], "all_r4", "{res}");
    let second = routing[1]["first_token"].as_u64().unwrap();
    assert!(second > 0 && second < res["prompt_tokens"].as_u64().unwrap());
    assert_eq!(res["segments"][1]["first_token"].as_u64(), Some(second));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("route [0] prompt").count(), 2, "{err}");
    // Streamed with stdout and stderr in one file (`> log 2>&1`): each decision on a line of
    // its own, also those made mid-answer (they were glued to the answer's text).
    let log = tmp.path().join("both.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut streamed = sentence.clone();
    streamed.retain(|a| *a != "--json");
    let at = streamed.iter().position(|a| *a == "--max-tokens").unwrap();
    streamed[at + 1] = "48";
    // An answer whose second sentence goes on in its first one's line.
    let at = streamed.iter().position(|a| *a == "--prompt").unwrap();
    streamed[at + 1] = "Write two sentences about the sun.";
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dlp-run"))
        .args(&streamed)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let both = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{both}");
    assert!(both.contains("route [0] generated"), "{both}");
    for l in both.lines().filter(|l| l.contains("route [")) {
        assert!(
            l.starts_with("route ["),
            "a decision glued to the answer: {l:?}"
        );
    }
    assert!(
        !both.contains("\n\nroute ["),
        "a blank line before a decision: {both}"
    );
    // The answer went on in the line of the decision (the model wrote no line break there):
    // without that, this run could not tell a glued decision from one on its own line.
    let lines: Vec<&str> = both.lines().collect();
    let mid_line = (lines.windows(2))
        .any(|w| w[0].starts_with("route [0] generated") && w[1].starts_with(' '));
    assert!(mid_line, "no decision made mid-line: {both}");
    // A line with its own mixture keeps it for its whole answer (the router had taken over
    // its generated sentences); answers are headed by their line.
    let lines = tmp.path().join("p.jsonl");
    let line = serde_json::json!({"prompt": "Tell me a short story about a dragon.", "mix": {"mlp_r16": 0.5}});
    std::fs::write(&lines, format!("{line}\n{line}\n")).unwrap();
    let mut own = streamed.clone();
    let at = own.iter().position(|a| *a == "--prompt").unwrap();
    own.splice(at..at + 2, ["--prompts", lines.to_str().unwrap()]);
    let out = run(&own);
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("route ["), "{err}");
    assert!(
        text.contains("=== [1] ") && text.contains("p.jsonl:2 ==="),
        "{text}"
    );
    // (The answer has sentences the router would have routed: else this could not fail.)
    let answer = text.split("=== [1]").next().unwrap_or_default();
    assert!(answer.matches(". ").count() >= 2, "{text}");
    // A one-line file streams its answer under the same header (it had none).
    std::fs::write(&lines, format!("{line}\n")).unwrap();
    let out = succeeds(&own);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("=== [0] ") && text.contains("p.jsonl:1 ===\n"),
        "{text}"
    );
    // A sentence opened by the limit's last token is not routed: nothing runs under that
    // mixture (it had been reported as a segment).
    let routed_at = |max: &str| {
        let mut a = sentence.clone();
        let at = a.iter().position(|x| *x == "--max-tokens").unwrap();
        a[at + 1] = max;
        let at = a.iter().position(|x| *x == "--prompt").unwrap();
        a[at + 1] = "Tell me a short story about a dragon.";
        let out = succeeds(&a);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = &v["results"][0];
        let firsts: Vec<u64> = (r["routing"].as_array().unwrap().iter())
            .filter(|d| d["source"] == "generated")
            .map(|d| d["first_token"].as_u64().unwrap())
            .collect();
        (
            firsts,
            r["prompt_tokens"].as_u64().unwrap(),
            r["segments"].clone(),
        )
    };
    let (firsts, prompt_len, _) = routed_at("48");
    let first = *firsts.first().expect("a generated sentence routed");
    let last = (first - prompt_len + 1).to_string();
    let (cut, _, segments) = routed_at(&last);
    assert!(!cut.contains(&first), "{cut:?} {segments}");
    // One token more, and that sentence runs: routed (so the check above can fail).
    let (more, _, _) = routed_at(&(first - prompt_len + 2).to_string());
    assert!(more.contains(&first), "{more:?}");
    // A template that trims the user's text still shows its sentences (it had routed the
    // whole request as one piece).
    let trim = tmp.path().join("trim.jinja");
    std::fs::write(
        &trim,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n\
         {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let padded = format!("  {prompt}\n");
    let mut trimmed = sentence.clone();
    let at = trimmed.iter().position(|a| *a == "--prompt").unwrap();
    trimmed[at + 1] = &padded;
    trimmed.extend(["--chat-template", trim.to_str().unwrap()]);
    let out = run(&trimmed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("route [0] prompt").count(), 2, "{err}");
    // The user's sentences are found in the user's turn, not in a later message repeating
    // them (an answer quoting the question had taken the sentence boundaries).
    let convo = tmp.path().join("c.jsonl");
    let line = |answer: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": answer}]})
    };
    let quoting = format!("You asked: {prompt}");
    std::fs::write(
        &convo,
        format!("{}\n{}\n", line(&quoting), line("Let me see.")),
    )
    .unwrap();
    let mut two = sentence.clone();
    let at = two.iter().position(|a| *a == "--prompt").unwrap();
    two.splice(at..at + 2, ["--prompts", convo.to_str().unwrap()]);
    let out = succeeds(&two);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prompt_firsts = |r: &serde_json::Value| -> Vec<u64> {
        (r["routing"].as_array().unwrap().iter())
            .filter(|d| d["source"] == "prompt")
            .map(|d| d["first_token"].as_u64().unwrap())
            .collect()
    };
    let (a, b) = (
        prompt_firsts(&v["results"][0]),
        prompt_firsts(&v["results"][1]),
    );
    assert_eq!(a.len(), 2, "{v}");
    assert_eq!(a, b, "{v}");
    // Per request: one decision over the whole prompt.
    let out = succeeds(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["routing"].as_array().unwrap().len(), 1);
    // A router label with no loaded adapter.
    args.drain(5..7);
    fails_with(&args, &["qv_r8", "no loaded adapter"]);
}
