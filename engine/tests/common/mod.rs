//! Helpers shared by the engine's integration tests.

use std::path::PathBuf;

/// Path of the SmolLM2 GGUF inside the fixtures.
#[allow(dead_code)] // not every test file uses it
pub const GGUF: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$DLP_FIXTURES/<rel>` (default `../shared/fixtures` beside the workspace), or `None` with a
/// printed reason; panics instead when `DLP_REQUIRE_FIXTURES=1`.
pub fn fixture(rel: &str) -> Option<PathBuf> {
    let root = std::env::var_os("DLP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
                .join("../../shared/fixtures")
        });
    let p = root.join(rel);
    if p.exists() {
        return Some(p);
    }
    let why = format!(
        "fixture {} not found (set DLP_FIXTURES to the fixtures folder)",
        p.display()
    );
    dlp_skip::skip(dlp_skip::kind::FIXTURES, &why, Some("DLP_REQUIRE_FIXTURES"));
    None
}

/// A fresh per-process scratch directory under the system temp dir.
#[allow(dead_code)] // not every test file uses it
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dlp-gguf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
