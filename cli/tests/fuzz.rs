//! The parser fuzz targets (`dlp-run fuzz`, feature `fuzz`): every failing input found so far
//! replays without a panic, and every target runs clean for a few seconds (the short CI run;
//! tests/fuzz/README.md has the long one).
#![cfg(feature = "fuzz")]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fuzz(args: &[&str]) -> std::process::Output {
    let fixtures = dlp_tests::fixtures("").unwrap();
    Command::new(env!("CARGO_BIN_EXE_dlp-run"))
        .arg("fuzz")
        .args([
            "--corpus",
            repo().join("tests/fuzz/corpus").to_str().unwrap(),
        ])
        .args(["--fixtures", fixtures.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn regressions_replay_without_a_panic() {
    if dlp_tests::fixtures("tiny-llama").is_none() {
        return;
    }
    let dir = repo().join("tests/fuzz/regressions");
    let mut n = 0;
    for t in std::fs::read_dir(&dir).unwrap().flatten() {
        let target = t.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(t.path()).unwrap().flatten() {
            let out = fuzz(&["--target", &target, "--replay", f.path().to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                f.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 5, "{n} regression inputs");
}

#[test]
fn every_target_runs_clean_briefly() {
    if dlp_tests::fixtures("tiny-llama").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let secs = std::env::var("DLP_FUZZ_SECONDS").unwrap_or_else(|_| "3".into());
    let out = fuzz(&[
        "--seconds",
        &secs,
        "--crashes",
        tmp.path().to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [
        "gguf",
        "safetensors-index",
        "config",
        "adapter",
        "tokenizer",
        "chat-template",
        "router",
        "prompts",
        "serve-request",
    ] {
        assert!(table.contains(t), "{t} missing:\n{table}");
    }
    eprintln!("{table}");
}
