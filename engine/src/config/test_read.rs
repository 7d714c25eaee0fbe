//! What the family config tests share: a config read as an HF `config.json`, and a refusal's
//! message checked.

use std::path::Path;

use serde_json::Value;

use super::ModelConfig;

/// `v` read as the `config.json` of an HF checkpoint.
pub(super) fn read(v: &Value) -> crate::Result<ModelConfig> {
    ModelConfig::from_hf_json(v, Path::new("config.json"))
}

/// Asserts that reading `v` fails with a message containing `want`.
pub(super) fn refused(v: &Value, want: &str) {
    let e = read(v).unwrap_err().to_string();
    assert!(e.contains(want), "{e}");
}
