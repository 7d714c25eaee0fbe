//! RoPE frequency scaling against transformers' own computation (`ROPE_INIT_FUNCTIONS`):
//! inverse frequencies and the cos/sin factor for linear and YaRN configs (Qwen2.5's and
//! Qwen3's long-context settings, betas, no truncation, explicit and DeepSeek-style factors),
//! Llama 3's and none, from `data/rope_vectors.json` (made by `data/make_rope_vectors.py`).
//! End to end (logits of models with YaRN and linear scaling, HF and GGUF): the golden runs'
//! `tiny_qwen2_yarn`, `tiny_qwen2_yarn_gguf` and `tiny_llama_linear`.

use std::path::Path;

use dlp_engine::config::RopeScaling;
use dlp_engine::rope_table::{cos_sin_table, inv_freq};
use dlp_engine::ModelConfig;
use serde_json::Value;

#[test]
fn frequencies_and_factor_are_transformers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rope_vectors.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 11);
    let mut kinds = Vec::new();
    for case in &cases {
        let cfg = ModelConfig::from_hf_json(&case["config"], Path::new("config.json")).unwrap();
        let what = format!("{}", case["config"]["rope_scaling"]);
        kinds.push(match cfg.rope_scaling {
            None => "none",
            Some(RopeScaling::Llama3(_)) => "llama3",
            Some(RopeScaling::Linear { .. }) => "linear",
            Some(RopeScaling::Yarn(_)) => "yarn",
        });
        let want: Vec<f64> = (case["inv_freq"].as_array().unwrap().iter())
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = inv_freq(&cfg);
        assert_eq!(got.len(), want.len(), "{what}");
        // transformers computes them in f32 (powers and the blend: up to 4.4e-7 relative); here
        // in f64.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs(),
                "{what}: frequency {i}: {g} vs {w}"
            );
        }
        let factor = cfg.rope_scaling.map_or(1.0, |s| s.attention_factor());
        let want_factor = case["attention_factor"].as_f64().unwrap();
        assert!(
            (factor - want_factor).abs() < 1e-12,
            "{what}: {factor} vs {want_factor}"
        );
        // The table carries the factor on both cos and sin.
        let t = cos_sin_table(&cfg, 2);
        let half = got.len();
        let (c, s) = (t[2 * half] as f64, t[2 * half + 1] as f64);
        assert!(
            (c - got[0].cos() * factor).abs() < 1e-6 && (s - got[0].sin() * factor).abs() < 1e-6
        );
    }
    let count = |k: &str| kinds.iter().filter(|&&x| x == k).count();
    assert_eq!(
        (
            count("none"),
            count("linear"),
            count("yarn"),
            count("llama3")
        ),
        (1, 2, 7, 1)
    );
}

#[test]
fn unusable_scaling_is_named() {
    let base = serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256});
    let with = |scaling: Value| {
        let mut c = base.clone();
        c["rope_scaling"] = scaling;
        ModelConfig::from_hf_json(&c, Path::new("config.json"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    for (scaling, want) in [
        (
            serde_json::json!({"type": "dynamic", "factor": 2.0}),
            "rope scaling type `dynamic` (dynamic NTK",
        ),
        (
            serde_json::json!({"rope_type": "linear"}),
            "rope scaling `linear` needs field `factor`",
        ),
        (
            serde_json::json!({"rope_type": "linear", "factor": 0}),
            "`factor` is 0; expected a finite number > 0",
        ),
        (
            serde_json::json!({"rope_type": "yarn", "factor": "4"}),
            "field `factor`: expected a number",
        ),
        (
            serde_json::json!({"rope_type": "yarn", "factor": 4, "truncate": "no"}),
            "field `truncate`: expected true or false",
        ),
        (
            serde_json::json!({"rope_type": "yarn", "factor": 4, "beta_fast": -1}),
            "`beta_fast` is -1",
        ),
        (
            serde_json::json!({"rope_type": "longrope", "factor": 4}),
            "`longrope` (Phi-3's)",
        ),
    ] {
        let e = with(scaling.clone());
        assert!(e.contains(want), "{scaling}: {e}");
    }
}
