//! Locating shared fixtures and data for router tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    // At run time first: cargo sets it for the test process, and a test binary reused from a
    // build cache made in another checkout would otherwise look in that checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("crate has a parent")
        .to_path_buf()
}

/// `$DLP_FIXTURES`, else `<workspace>/../shared/fixtures`.
pub fn fixtures() -> PathBuf {
    std::env::var_os("DLP_FIXTURES").map_or_else(
        || workspace_root().join("../shared/fixtures"),
        PathBuf::from,
    )
}

/// `$DLP_DATA`, else `<workspace>/../shared/data`.
pub fn data() -> PathBuf {
    std::env::var_os("DLP_DATA")
        .map_or_else(|| workspace_root().join("../shared/data"), PathBuf::from)
}

/// `path` if it exists; otherwise says why the test is skipped and returns None — or panics
/// when `DLP_REQUIRE_FIXTURES=1` (CI with fixtures must not skip silently).
pub fn require(path: PathBuf, test: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{test}: fixture {} not found (set DLP_FIXTURES / DLP_DATA)",
        path.display()
    );
    dlp_skip::skip(dlp_skip::kind::FIXTURES, &msg, Some("DLP_REQUIRE_FIXTURES"));
    None
}

/// The SmolLM2 tokenizer.json of the fixtures, if present.
pub fn smollm2_tokenizer(test: &str) -> Option<PathBuf> {
    require(fixtures().join("smollm2/tokenizer/tokenizer.json"), test)
}

/// A fresh, empty scratch directory under the system temp dir, removed when dropped (also
/// when the test fails).
pub fn scratch_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dlp-router-test-{name}-"))
        .tempdir()
        .expect("create scratch dir")
}
