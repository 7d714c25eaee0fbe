//! Skipped tests, counted. A test that cannot run here (no fixture, no GPU, no AMX, no
//! libnvrtc, no Python client) calls [`skip`]: it prints `SKIPPED [kind] test: why`, appends
//! the same to the file named by `DLP_SKIP_LOG` (scripts/test.sh lists them all at the end, so
//! a partial run is never mistaken for a full one), and returns. When the run requires the
//! check (`require_var` set to `1`, as `.ci/run` sets `DLP_REQUIRE_FIXTURES` and others), it
//! panics instead.
//!
//! Log lines are `kind<TAB>test<TAB>why`, one per skip.

use std::io::Write;

/// Kinds of reasons, the groups of the summary.
pub mod kind {
    /// A fixture or shared data folder is missing.
    pub const FIXTURES: &str = "fixtures missing";
    /// No CUDA device (or driver).
    pub const CUDA: &str = "no CUDA GPU";
    /// No wgpu adapter (no Vulkan/Metal/DX12 device, no lavapipe).
    pub const WGPU: &str = "no wgpu adapter";
    /// No libnvrtc to compile the CUDA kernels with.
    pub const NVRTC: &str = "no libnvrtc";
    /// The CPU or OS lacks AMX-BF16.
    pub const AMX: &str = "no AMX-BF16 on this CPU";
    /// The CPU lacks AVX-512.
    pub const AVX512: &str = "no AVX-512 on this CPU";
    /// An x86-64 CPU without AVX2 + FMA + F16C (before 2013).
    pub const AVX2: &str = "no AVX2 on this CPU";
    /// The kernel cannot give transparent huge pages now.
    pub const HUGE_PAGES: &str = "no transparent huge pages";
    /// No Python with the `openai` package (`DLP_PYTHON`).
    pub const PYTHON: &str = "no Python openai client";
}

/// The running test's name: libtest names each test's thread after it; the binary's name
/// (without cargo's hash) says which test target.
fn test_name() -> String {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("?").to_string();
    format!("{bin}::{thread}")
}

/// Whether environment variable `var` is `1`.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Records that the current test skipped its checks for a reason of `kind` (see [`kind`]);
/// panics instead when `require_var` names a variable set to `1`.
pub fn skip(kind: &str, why: &str, require_var: Option<&str>) {
    if let Some(var) = require_var.filter(|v| required(v)) {
        panic!("{why}; {var}=1 makes this a failure");
    }
    let test = test_name();
    let why = why.replace(['\t', '\n'], " ");
    eprintln!("SKIPPED [{kind}] {test}: {why}");
    if let Some(path) = std::env::var_os("DLP_SKIP_LOG") {
        // One write per line with O_APPEND: lines of parallel tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{kind}\t{test}\t{why}\n").as_bytes());
        }
    }
}
