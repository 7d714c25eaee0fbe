//! Running the `dlp-run` binary from the command-line test crates (`cli`, `eval`).

use std::process::{Command, Output};

/// Runs `dlp-run ARGS`; a panic in its stderr fails the test whatever the exit.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dlp-run"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "dlp-run {args:?} panicked: {err}"
    );
    out
}

/// [`run`], which must succeed (its stderr shown where it does not).
pub fn succeeds(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "dlp-run {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
