//! RoPE frequency scaling against transformers' own computation (`ROPE_INIT_FUNCTIONS`):
//! inverse frequencies and the cos/sin factor for linear and YaRN configs (Qwen2.5's and
//! Qwen3's long-context settings, betas, no truncation, explicit and DeepSeek-style factors),
//! LongRoPE (Phi-3's and Phi-3.5's forms, both factor sets), Llama 3's and none, from
//! `data/rope_vectors.json` (made by `data/make_rope_vectors.py`).
//! End to end (logits of models with YaRN and linear scaling, HF and GGUF): the golden runs'
//! `tiny_qwen2_yarn`, `tiny_qwen2_yarn_gguf` and `tiny_llama_linear`.

#[allow(dead_code)]
#[path = "gguf/writer.rs"]
mod writer;

use std::path::Path;

use dlp_engine::config::RopeScaling;
use dlp_engine::rope_table::{cos_sin_table, inv_freq};
use dlp_engine::ModelConfig;
use serde_json::Value;
use writer::{Writer, M};

#[test]
fn frequencies_and_factor_are_transformers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rope_vectors.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 15);
    let mut kinds = Vec::new();
    for case in &cases {
        let cfg = ModelConfig::from_hf_json(&case["config"], Path::new("config.json")).unwrap();
        let what = format!("{}", case["config"]["rope_scaling"]);
        kinds.push(match cfg.rope_scaling {
            None => "none",
            Some(RopeScaling::Llama3(_)) => "llama3",
            Some(RopeScaling::Linear { .. }) => "linear",
            Some(RopeScaling::Yarn(_)) => "yarn",
            Some(RopeScaling::LongRope(_)) => "longrope",
            Some(RopeScaling::Dynamic { .. }) => "dynamic",
        });
        let values = |k: &str| -> Vec<f64> {
            (case[k].as_array().unwrap().iter())
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        // LongRoPE's short set up to the original context, its long set past it; the others
        // the same at any length.
        let original = case["original"].as_u64().unwrap_or(1 << 20) as usize;
        let mut sets = vec![(original, values("inv_freq"))];
        if case.get("long_inv_freq").is_some() {
            sets.push((original + 1, values("long_inv_freq")));
        }
        for (positions, want) in sets {
            let got = inv_freq(&cfg, positions);
            assert_eq!(got.len(), want.len(), "{what}");
            // transformers computes them in f32 (powers and the blend: up to 4.4e-7 relative);
            // here in f64.
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs(),
                    "{what} at {positions} positions: frequency {i}: {g} vs {w}"
                );
            }
        }
        let got = inv_freq(&cfg, 2);
        let factor = cfg
            .rope_scaling
            .as_ref()
            .map_or(1.0, |s| s.attention_factor());
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
            count("llama3"),
            count("longrope")
        ),
        (1, 2, 7, 1, 4)
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
    let ones = vec![1.0; 8];
    for (scaling, want) in [
        (
            serde_json::json!({"type": "ntk", "factor": 2.0}),
            "rope scaling type `ntk` (supported: default, llama3, linear, yarn, longrope, dynamic)",
        ),
        (
            serde_json::json!({"type": "dynamic"}),
            "rope scaling `dynamic` needs field `factor`",
        ),
        (
            serde_json::json!({"type": "dynamic", "factor": -6}),
            "rope scaling `dynamic`: `factor` is -6; expected a finite number > 0",
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
            "rope scaling `longrope` needs field `short_factor`",
        ),
        (
            serde_json::json!({"rope_type": "longrope", "short_factor": "x", "long_factor": []}),
            "field `short_factor`: expected a list of numbers, found \"x\"",
        ),
        (
            // Heads of 16: 8 frequencies.
            serde_json::json!({"rope_type": "longrope", "short_factor": ones, "long_factor": [1.0]}),
            "LongRoPE `long_factor` has 1 values; expected one per rotated frequency, 8",
        ),
        (
            serde_json::json!({"rope_type": "longrope", "short_factor": [1, 1, 1, 1, 1, 1, 1, 0], "long_factor": ones}),
            "LongRoPE `short_factor` holds 0; expected finite numbers > 0",
        ),
        (
            serde_json::json!({"rope_type": "longrope", "short_factor": ones, "long_factor": ones, "attention_factor": -1}),
            "field `attention_factor`: expected a finite number > 0, found -1",
        ),
        (
            serde_json::json!({"rope_type": "longrope", "short_factor": ones, "long_factor": ones, "original_max_position_embeddings": 1}),
            "original_max_position_embeddings is 1; expected a number > 1",
        ),
    ] {
        let e = with(scaling.clone());
        assert!(e.contains(want), "{scaling}: {e}");
    }
}

/// Where transformers finds the settings: `rope_scaling` over `rope_parameters`, a
/// `rope_theta` inside them over the top-level one, a top-level
/// `original_max_position_embeddings` (Phi-3's form) over theirs, `truncate: null` as false;
/// settings that are not one object are refused.
#[test]
fn config_forms_are_read_as_transformers_reads_them() {
    let yarn = |c: &Value| match ModelConfig::from_hf_json(c, Path::new("config.json")) {
        Ok(cfg) => match cfg.rope_scaling {
            Some(RopeScaling::Yarn(y)) => Ok((cfg.rope_theta, y)),
            other => Err(format!("{other:?}")),
        },
        Err(e) => Err(e.to_string()),
    };
    let mut c = serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256, "max_position_embeddings": 1024, "rope_theta": 10000.0,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
            "rope_theta": 50000.0, "truncate": null}});
    let (theta, y) = yarn(&c).unwrap();
    assert_eq!(
        (theta, y.original_max_position_embeddings, y.truncate),
        (50000.0, 64.0, false)
    );
    c["original_max_position_embeddings"] = 200.into();
    c["rope_parameters"] = serde_json::json!({"rope_type": "linear", "factor": 2.0});
    let (_, y) = yarn(&c).unwrap();
    assert_eq!(y.original_max_position_embeddings, 200.0);
    // The context it stretches to, as vLLM allows (original x factor), where that is longer.
    let cfg = ModelConfig::from_hf_json(&c, Path::new("config.json")).unwrap();
    assert_eq!(
        (cfg.max_position_embeddings, cfg.context_limit()),
        (1024, 1024)
    );
    c["original_max_position_embeddings"] = 4096.into();
    let cfg = ModelConfig::from_hf_json(&c, Path::new("config.json")).unwrap();
    assert_eq!(cfg.context_limit(), 16384);
    // An empty `rope_scaling` is unset (transformers: `rope_scaling or rope_parameters`).
    let mut empty = c.clone();
    (empty["rope_scaling"], empty["rope_parameters"]) =
        (serde_json::json!({}), c["rope_scaling"].clone());
    assert_eq!(
        yarn(&empty).unwrap().1.original_max_position_embeddings,
        4096.0
    );
    // Without RoPE settings, a top-level original context is not read at all.
    let mut plain = c.clone();
    plain["rope_scaling"] = Value::Null;
    plain["rope_parameters"] = Value::Null;
    plain["original_max_position_embeddings"] = "x".into();
    let cfg = ModelConfig::from_hf_json(&plain, Path::new("config.json")).unwrap();
    assert_eq!(
        (cfg.rope_scaling.clone(), cfg.context_limit()),
        (None, 1024)
    );
    for (key, value, want) in [
        (
            "rope_scaling",
            serde_json::json!("yarn"),
            "`rope_scaling`: expected an object",
        ),
        (
            "rope_scaling",
            serde_json::json!([1]),
            "`rope_scaling`: expected an object",
        ),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": null, "type": "yarn", "factor": 4}),
            "`rope_type`: expected a string",
        ),
        (
            "rope_scaling",
            serde_json::json!({"full_attention": {"rope_type": "yarn", "factor": 4}}),
            "per layer type (full_attention)",
        ),
    ] {
        let mut c = c.clone();
        c[key] = value;
        let e = yarn(&c).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
}

/// GGUF metadata as llama.cpp reads it: a factor without a type is linear (the old
/// `rope.scale_linear` too), `none` or a factor of 1 is none; YaRN takes the original context
/// and `attn_factor`; what llama.cpp would apply and this engine does not is refused.
#[test]
fn gguf_metadata_is_read_as_llama_cpp_reads_it() {
    use dlp_engine::loader::gguf::GgufFile;
    let dir = std::env::temp_dir().join(format!("dlp-rope-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_with = |extra: Vec<(&str, M)>, tensors: Vec<writer::Tensor>| {
        let mut kv: Vec<(String, M)> = vec![
            ("general.architecture".into(), M::Str("llama")),
            ("llama.embedding_length".into(), M::U32(64)),
            ("llama.feed_forward_length".into(), M::U32(160)),
            ("llama.block_count".into(), M::U32(1)),
            ("llama.attention.head_count".into(), M::U32(4)),
            ("llama.attention.head_count_kv".into(), M::U32(2)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                M::F32(1e-6),
            ),
            ("llama.context_length".into(), M::U32(512)),
            ("llama.vocab_size".into(), M::U32(256)),
        ];
        kv.extend(extra.into_iter().map(|(k, v)| (format!("llama.{k}"), v)));
        let w = Writer {
            version: 3,
            kv,
            tensors,
        };
        let p = dir.join("rope.gguf");
        std::fs::write(&p, w.bytes()).unwrap();
        GgufFile::open(&p)
            .and_then(|g| g.config())
            .map(|c| c.rope_scaling)
    };
    let config = |extra: Vec<(&str, M)>| config_with(extra, Vec::new());
    let linear = Some(RopeScaling::Linear { factor: 2.0 });
    assert_eq!(
        config(vec![("rope.scaling.factor", M::F32(2.0))]).unwrap(),
        linear
    );
    assert_eq!(
        config(vec![("rope.scale_linear", M::F32(2.0))]).unwrap(),
        linear
    );
    let none = vec![
        ("rope.scaling.type", M::Str("none")),
        ("rope.scaling.factor", M::F32(2.0)),
    ];
    assert_eq!(config(none).unwrap(), None);
    let yarn = config(vec![
        ("rope.scaling.type", M::Str("yarn")),
        ("rope.scaling.factor", M::F32(4.0)),
        ("rope.scaling.original_context_length", M::U32(128)),
        ("rope.scaling.attn_factor", M::F32(0.5)),
    ]);
    match yarn.unwrap() {
        Some(RopeScaling::Yarn(y)) => {
            assert_eq!(y.original_max_position_embeddings, 128.0);
            assert!((y.attention_factor - 0.5 * (0.1 * 4f64.ln() + 1.0)).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    // Llama 3's scaling as rope_freqs.weight beside another scaling: refused, not one dropped.
    let freqs = writer::Tensor {
        name: "rope_freqs.weight".into(),
        dims: vec![8],
        ty: 0,
        data: [1f32; 8].iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let e = config_with(vec![("rope.scaling.factor", M::F32(2.0))], vec![freqs])
        .unwrap_err()
        .to_string();
    assert!(e.contains("one RoPE scaling at a time"), "{e}");
    for (extra, want) in [
        (
            vec![("rope.scaling.type", M::Str("foo"))],
            "rope scaling type `foo` in GGUF",
        ),
        (
            vec![("rope.scaling.attn_factor", M::F32(0.5))],
            "read only as a finite factor > 0 on YaRN's",
        ),
        (
            vec![
                ("rope.scaling.type", M::Str("yarn")),
                ("rope.scaling.factor", M::F32(4.0)),
                ("rope.scaling.attn_factor", M::F32(0.0)),
            ],
            "read only as a finite factor > 0 on YaRN's",
        ),
        (
            vec![("rope.scaling.factor", M::F32(-2.0))],
            "expected a finite number >= 0",
        ),
    ] {
        let e = config(extra).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A phi3 GGUF's LongRoPE (factor tensors) beside a position scaling factor, which llama.cpp
/// would apply on top: refused, not dropped. (The file's LongRoPE alone: the golden runs'
/// `tiny_phi3_longrope_gguf`.)
#[test]
fn gguf_longrope_beside_a_scaling_factor_is_refused() {
    use dlp_engine::loader::gguf::GgufFile;
    let dir = std::env::temp_dir().join(format!("dlp-longrope-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let factors = |name: &str| writer::Tensor {
        name: name.into(),
        dims: vec![8],
        ty: 0,
        data: [1.5f32; 8].iter().flat_map(|f| f.to_le_bytes()).collect(),
    };
    let config = |factor: f32| {
        let kv: Vec<(String, M)> = [
            ("general.architecture", M::Str("phi3")),
            ("phi3.embedding_length", M::U32(64)),
            ("phi3.feed_forward_length", M::U32(160)),
            ("phi3.block_count", M::U32(1)),
            ("phi3.attention.head_count", M::U32(4)),
            ("phi3.attention.layer_norm_rms_epsilon", M::F32(1e-5)),
            ("phi3.context_length", M::U32(512)),
            ("phi3.vocab_size", M::U32(256)),
            ("phi3.rope.scaling.factor", M::F32(factor)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let tensors = vec![
            factors("rope_factors_short.weight"),
            factors("rope_factors_long.weight"),
        ];
        let p = dir.join(format!("lr-{factor}.gguf"));
        let w = Writer {
            version: 3,
            kv,
            tensors,
        };
        std::fs::write(&p, w.bytes()).unwrap();
        GgufFile::open(&p)
            .and_then(|g| g.config())
            .map(|c| c.rope_scaling)
    };
    assert!(matches!(config(1.0), Ok(Some(RopeScaling::LongRope(_)))));
    let e = config(4.0).unwrap_err().to_string();
    assert!(
        e.contains("`phi3.rope.scaling.factor` 4 beside LongRoPE's factor tensors"),
        "{e}"
    );
}

/// Dynamic NTK (InternLM3's configs): transformers rotates as default RoPE up to
/// `max_position_embeddings` (`_compute_dynamic_ntk_parameters` at that length leaves the base
/// as it is), so the table is the default one and the context ends there, not stretched by the
/// factor as a linear or YaRN scaling's is.
#[test]
fn dynamic_ntk_is_default_rope_within_the_context() {
    let mut v = serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256, "max_position_embeddings": 512, "rope_theta": 5e7});
    let plain = ModelConfig::from_hf_json(&v, Path::new("config.json")).unwrap();
    v["rope_scaling"] = serde_json::json!({"rope_type": "dynamic", "factor": 6.0});
    let dynamic = ModelConfig::from_hf_json(&v, Path::new("config.json")).unwrap();
    assert!(matches!(dynamic.rope_scaling, Some(RopeScaling::Dynamic { factor }) if factor == 6.0));
    assert_eq!(inv_freq(&dynamic, 512), inv_freq(&plain, 512));
    assert_eq!(dynamic.context_limit(), 512);
    v["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 6.0});
    let linear = ModelConfig::from_hf_json(&v, Path::new("config.json")).unwrap();
    assert_eq!(linear.context_limit(), 3072);
}
