//! `scripts/gpu-check.sh`'s run stage (`scripts/gpu_check.py`) on the CPU: what the rare GPU run
//! depends on (the three files the device tool returns, the speed table, the probes, the
//! profile tables), checked here by `scripts/gpu_check_selftest.py` with this `dlp-run`.

use std::path::Path;
use std::process::Command;

use dlp_tests::fixtures;

#[test]
fn the_gpu_run_script_runs_on_the_cpu() {
    let Some(tiny) = fixtures("tiny-llama") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let out = Command::new("python3")
        .arg(root.join("scripts/gpu_check_selftest.py"))
        .arg(env!("CARGO_BIN_EXE_dlp-run"))
        .current_dir(root)
        .env("DLP_FIXTURES", tiny.parent().expect("the fixtures folder"))
        .output()
        .expect("python3, which runs the GPU run's script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gpu_check_selftest.py:\n{text}");
    assert!(
        text.contains("ok   the probes found bf16c itself failing"),
        "{text}"
    );
}
