//! Flags that conflict, repeat or leave a result short: refused with the flag named, or the
//! shortfall said.

use super::{args, fails_with, run};
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
