//! The official `openai` Python client against the server, and the load tool
//! (`bench/serve_load.py`). They need a Python with the `openai` package: `DLP_PYTHON`
//! (scripts/test.sh makes a virtual environment with the pinned version and sets it).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{assets, bin, Server};

/// The Python to run, or None after a printed skip (a failure with `DLP_REQUIRE_PYTHON=1`).
fn python() -> Option<PathBuf> {
    match std::env::var_os("DLP_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            dlp_tests::skip_unless_required(
                "no DLP_PYTHON (a Python with the `openai` package; scripts/test.sh makes one)",
                "DLP_REQUIRE_PYTHON",
            );
            None
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Lists the models, gets a chat completion and a streamed one, a completion with `echo` +
/// `logprobs`, uses `model: "auto"` and `lora_mixture`, and structured output (`parse` with a
/// pydantic model, `json_object`, `guided_choice`), forced tool calls, and the Responses API;
/// greedy texts equal `dlp-run generate`, echoed log-probabilities equal `dlp-run score`
/// (tests/serve/openai_client.py).
#[test]
fn official_openai_client() {
    let Some(a) = assets() else { return };
    let Some(py) = python() else { return };
    let router = a.router().display().to_string();
    let mut args = a.model_args();
    args.extend(["--router".into(), router.clone()]);
    let s = Server::start(&args);
    let out = Command::new(py)
        .arg(repo().join("tests/serve/openai_client.py"))
        .args(["--base-url", &s.url("/v1")])
        .args(["--dlp-run", bin(), "--router", &router])
        .arg("--")
        .args(a.model_args())
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "openai_client.py failed:\n{o}\n{e}");
    eprintln!("{o}");
    assert!(o.contains("all checks passed"), "{o}");
}

/// The load tool: N streaming clients for a bounded time, 0 errors and 0 lost responses
/// (`DLP_SERVE_LOAD_CLIENTS` / `DLP_SERVE_LOAD_SECS`, default 16 clients for 60 s).
#[test]
fn load_tool_runs_clean() {
    let Some(a) = assets() else { return };
    let Some(py) = python() else { return };
    let mut args = a.model_args();
    args.extend(["--router".into(), a.router().display().to_string()]);
    let s = Server::start(&args);
    let clients = std::env::var("DLP_SERVE_LOAD_CLIENTS").unwrap_or("16".into());
    let secs = std::env::var("DLP_SERVE_LOAD_SECS").unwrap_or("60".into());
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("load.json");
    let out = Command::new(py)
        .arg(repo().join("bench/serve_load.py"))
        .args([
            "--base-url",
            &s.url("/v1"),
            "--clients",
            &clients,
            "--duration",
            &secs,
        ])
        .args(["--max-tokens", "32", "--json", report.to_str().unwrap()])
        .args(["--data", a.data.to_str().unwrap()])
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "serve_load.py failed:\n{o}\n{e}");
    eprintln!("{o}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let run = &v["runs"][0];
    assert_eq!(run["errors"], 0, "{v}");
    assert_eq!(run["lost"], 0, "{v}");
    assert!(run["requests"].as_u64().unwrap() > 0, "{v}");
    assert!(run["generated_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(s.metric("dlp_running_sequences"), 0.0);
}
