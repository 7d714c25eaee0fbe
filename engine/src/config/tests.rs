//! Unit tests of [`super`]: fields of the wrong type, attention windows.

use super::windows::attention_windows;
use super::*;

/// A field of the wrong type is an error naming it, not its default: a string
/// `rms_norm_eps` became 1e-6 and moved the logits, an `eos_token_id` of `["a"]` became
/// none and generation never stopped. llama3 RoPE values the formula divides by are checked.
#[test]
fn fields_of_the_wrong_type_are_refused() {
    let base = serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 256, "eos_token_id": 2});
    let p = Path::new("config.json");
    let ok = ModelConfig::from_hf_json(&base, p).unwrap();
    assert_eq!(ok.eos_token_ids, [2]);
    let llama3 = |k: &str, v: f64| {
        let mut r = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        r[k] = v.into();
        r
    };
    assert!(ModelConfig::from_hf_json(
        &{
            let mut c = base.clone();
            c["rope_parameters"] = llama3("factor", 8.0);
            c
        },
        p
    )
    .unwrap()
    .rope_scaling
    .is_some());
    for (field, value, want) in [
        (
            "rms_norm_eps",
            serde_json::json!("x"),
            "`rms_norm_eps`: expected a number",
        ),
        (
            "rope_theta",
            serde_json::json!(true),
            "`rope_theta`: expected a number",
        ),
        (
            "tie_word_embeddings",
            serde_json::json!("yes"),
            "expected true or false",
        ),
        ("mlp_bias", serde_json::json!(1), "expected true or false"),
        (
            "bos_token_id",
            serde_json::json!("x"),
            "`bos_token_id`: expected a token id",
        ),
        (
            "eos_token_id",
            serde_json::json!(-1),
            "`eos_token_id`: expected a token id",
        ),
        ("eos_token_id", serde_json::json!(["a"]), "found \"a\""),
        ("eos_token_id", serde_json::json!(2.5), "found 2.5"),
        ("rope_parameters", llama3("factor", 0.0), "factor 0"),
        ("rope_parameters", llama3("factor", -8.0), "factor -8"),
        (
            "rope_parameters",
            llama3("high_freq_factor", 1.0),
            "high_freq_factor > low_freq_factor",
        ),
        (
            "rope_parameters",
            llama3("original_max_position_embeddings", 0.0),
            "expected all finite and > 0",
        ),
        (
            "max_position_embeddings",
            serde_json::json!(0),
            "max_position_embeddings (GGUF: *.context_length) = 0 must be at least 2",
        ),
    ] {
        let mut c = base.clone();
        c[field] = value;
        let e = ModelConfig::from_hf_json(&c, p).unwrap_err().to_string();
        assert!(e.contains(want), "{field}: {e}");
    }
}

#[test]
fn end_ids_outside_the_vocabulary_are_dropped() {
    let p = Path::new("config.json");
    assert_eq!(end_ids_in_vocab(p, &[2, 1 << 20, 7, 10], 10), [2, 7]);
    assert_eq!(end_ids_in_vocab(p, &[], 10), Vec::<u32>::new());
}

/// Sliding windows as transformers reads them per architecture: Qwen2 only with
/// `use_sliding_window` (its sliding layers attend to everything without it), Llama never
/// (LlamaConfig ignores `layer_types`), Mistral on every layer.
#[test]
fn sliding_windows_follow_transformers_per_architecture() {
    let path = std::path::Path::new("config.json");
    let types = serde_json::json!(["full_attention", "sliding_attention"]);
    let cfg = |on: bool| serde_json::json!({"use_sliding_window": on, "sliding_window": 6, "layer_types": types});
    let windows =
        |v: &serde_json::Value, arch| attention_windows(v, arch, &[true; 2], path).unwrap();
    assert_eq!(windows(&cfg(true), Arch::Qwen2), [None, Some(6)]);
    assert_eq!(windows(&cfg(false), Arch::Qwen2), [None, None]);
    assert_eq!(windows(&cfg(true), Arch::Llama), [None, None]);
    let mistral = serde_json::json!({"sliding_window": 5});
    assert_eq!(windows(&mistral, Arch::Mistral), [Some(5), Some(5)]);
    // Without layer_types: Qwen2's windows from max_window_layers on, when on.
    let qwen = |on: bool| serde_json::json!({"use_sliding_window": on, "sliding_window": 4, "max_window_layers": 1});
    assert_eq!(windows(&qwen(true), Arch::Qwen2), [None, Some(4)]);
    assert_eq!(windows(&qwen(false), Arch::Qwen2), [None, None]);
    // Qwen2Config's defaults where the keys are absent: window 4096 from layer 28 on.
    let on = serde_json::json!({"use_sliding_window": true});
    let w = attention_windows(&on, Arch::Qwen2, &[true; 30], path).unwrap();
    assert_eq!(w[27], None);
    assert_eq!(w[28..], [Some(4096), Some(4096)]);
    // Qwen3Config reads them as Qwen2Config does.
    assert_eq!(windows(&cfg(true), Arch::Qwen3), [None, Some(6)]);
    assert_eq!(windows(&cfg(false), Arch::Qwen3), [None, None]);
    assert_eq!(windows(&qwen(true), Arch::Qwen3), [None, Some(4)]);
    assert_eq!(
        attention_windows(&on, Arch::Qwen3, &[true; 30], path).unwrap(),
        w
    );
}

/// SmolLM3 as SmolLM3Config reads it: `no_rope_layers` (1 = RoPE) over the interval, a NoPE
/// layer every `no_rope_layer_interval` (default 4) layers without the list, RoPE theta 2e6
/// and tied embeddings by default, windows in the NoPE layers with `use_sliding_window` (or
/// where `layer_types` says); what SmolLM3Config's typed fields refuse (a short list, entries
/// other than the integers 0 and 1, an interval that is no integer, or 0 where it is read, a
/// non-boolean `use_sliding_window`) is refused by name. Every other family rotates in every layer.
#[test]
fn smollm3_reads_as_transformers_smollm3config() {
    let p = Path::new("config.json");
    let base = serde_json::json!({"model_type": "smollm3", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 8, "vocab_size": 256});
    let read = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        ModelConfig::from_hf_json(&v, p)
    };
    let c = read(&|_| ()).unwrap();
    assert_eq!(c.arch, Arch::SmolLM3);
    let every4 = [true, true, true, false, true, true, true, false];
    assert_eq!(c.rope_layers, every4);
    assert_eq!(c.rope_theta, 2e6);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.attention_window, [None; 8]);
    let c = read(&|v| v["no_rope_layer_interval"] = 3.into()).unwrap();
    assert_eq!(
        c.rope_layers,
        [true, true, false, true, true, false, true, true]
    );
    let c = read(&|v| v["no_rope_layer_interval"] = u64::MAX.into()).unwrap();
    assert!(!c.rope_layers.contains(&false));
    // The list wins over the interval (even one of 0, which only the default reading divides
    // by); a longer list's tail is not read.
    let c = read(&|v| {
        v["no_rope_layers"] = serde_json::json!([0, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
        v["no_rope_layer_interval"] = 0.into();
    })
    .unwrap();
    assert_eq!(
        c.rope_layers,
        [false, true, true, true, true, true, true, false]
    );
    // Windows: SmolLM3Config's layer types (NoPE layers slide with use_sliding_window).
    let c = read(&|v| {
        v["use_sliding_window"] = true.into();
        v["sliding_window"] = 16.into();
    })
    .unwrap();
    let slid: Vec<_> = every4.iter().map(|&r| (!r).then_some(16)).collect();
    assert_eq!(c.attention_window, slid);
    let c = read(&|v| v["sliding_window"] = 16.into()).unwrap();
    assert_eq!(c.attention_window, [None; 8]);
    let c = read(&|v| {
        v["sliding_window"] = 16.into();
        v["layer_types"] = serde_json::json!(vec!["sliding_attention"; 8]);
    })
    .unwrap();
    assert_eq!(c.attention_window, [Some(16); 8]);
    for (f, want) in [
        (
            &(|v: &mut serde_json::Value| v["no_rope_layers"] = serde_json::json!([1, 1, 0]))
                as &dyn Fn(&mut serde_json::Value),
            "expected a list of at least 8 entries",
        ),
        (
            &|v| v["no_rope_layers"] = serde_json::json!([1, 1, 2, 1, 1, 1, 1, 1]),
            "`no_rope_layers`[2]: expected 1 (RoPE) or 0 (NoPE), found 2",
        ),
        (
            &|v| v["no_rope_layers"] = serde_json::json!("1110"),
            "field `no_rope_layers`",
        ),
        (
            &|v| v["no_rope_layer_interval"] = 0.into(),
            "`no_rope_layer_interval`: expected a positive integer",
        ),
        (
            &|v| v["no_rope_layer_interval"] = (-4).into(),
            "`no_rope_layer_interval`: expected a positive integer (a NoPE layer every that many layers), found -4",
        ),
        (
            &|v| v["layer_types"] = serde_json::json!(vec!["sliding_attention"; 8]),
            "layer_types[0] is sliding_attention but `sliding_window` is not set",
        ),
        // SmolLM3Config's typed fields: booleans, bad entries past the layers, a null or
        // string interval (beside a list too), a non-boolean `use_sliding_window` (it had
        // read as false).
        (
            &|v| v["no_rope_layers"] = serde_json::json!(vec![true; 8]),
            "`no_rope_layers`[0]: expected 1 (RoPE) or 0 (NoPE), found true",
        ),
        (
            &|v| v["no_rope_layers"] = serde_json::json!([1, 1, 1, 0, 1, 1, 1, 0, "x"]),
            "`no_rope_layers`[8]",
        ),
        (
            &|v| v["no_rope_layer_interval"] = serde_json::Value::Null,
            "`no_rope_layer_interval`: expected an integer",
        ),
        (
            &|v| {
                v["no_rope_layers"] = serde_json::json!(vec![1; 8]);
                v["no_rope_layer_interval"] = "4".into();
            },
            "`no_rope_layer_interval`: expected an integer (a NoPE layer every that many layers), found \"4\"",
        ),
        (
            &|v| v["use_sliding_window"] = 1.into(),
            "field `use_sliding_window`: expected true or false, found 1",
        ),
    ] {
        let e = read(f).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let mut llama = base.clone();
    llama["model_type"] = "llama".into();
    llama["no_rope_layers"] = serde_json::json!(vec![0; 8]);
    // LlamaConfig does not type `use_sliding_window` (transformers loads a 1 there).
    llama["use_sliding_window"] = 1.into();
    let c = ModelConfig::from_hf_json(&llama, p).unwrap();
    assert!(!c.rope_layers.contains(&false) && !c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 10000.0);
}

/// Qwen3: per-head query/key norms, biases only with `attention_bias`, and Qwen3Config's
/// `head_dim` of 128 where the config has none (not hidden / heads, as for the others).
#[test]
fn qwen3_reads_as_transformers_qwen3config() {
    let p = Path::new("config.json");
    let base = serde_json::json!({"model_type": "qwen3", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 256});
    let c = ModelConfig::from_hf_json(&base, p).unwrap();
    assert_eq!(c.arch, Arch::Qwen3);
    assert!(c.qk_norm && !c.qkv_bias && !c.o_bias);
    assert_eq!((c.head_dim, c.q_dim(), c.kv_dim()), (128, 512, 256));
    let mut v = base.clone();
    v["head_dim"] = 32.into();
    v["attention_bias"] = true.into();
    let c = ModelConfig::from_hf_json(&v, p).unwrap();
    assert!(c.qkv_bias && c.o_bias);
    assert_eq!(c.head_dim, 32);
    let mut v = base;
    v["model_type"] = "qwen2".into();
    let c = ModelConfig::from_hf_json(&v, p).unwrap();
    assert!(!c.qk_norm && c.qkv_bias);
    assert_eq!(c.head_dim, 16);
}

/// A config that is no object, one without `model_type`, and a llama3 RoPE value of the wrong
/// type are said as such (they read `model_type ``` and "needs field `factor`").
#[test]
fn missing_and_mistyped_fields_are_said_as_such() {
    let p = Path::new("config.json");
    let err = |v: serde_json::Value| ModelConfig::from_hf_json(&v, p).unwrap_err().to_string();
    assert!(err(serde_json::json!([])).contains("expected a JSON object"));
    let e = err(serde_json::json!({"hidden_size": 64}));
    assert!(e.contains("missing field `model_type`"), "{e}");
    let e = err(serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256, "rope_scaling": {"rope_type": "llama3", "factor": "8",
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}));
    assert!(
        e.contains("field `factor`: expected a number, found \"8\""),
        "{e}"
    );
}

/// `partial_rotary_factor` other than 1 is refused (it had been ignored: whole heads rotated,
/// logits of another model); 1, null or absent load.
#[test]
fn rotary_embeddings_on_part_of_a_head_are_refused() {
    let p = Path::new("config.json");
    let base = serde_json::json!({"model_type": "llama", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256});
    let with = |at: Option<&str>, x: serde_json::Value| {
        let mut c = base.clone();
        match at {
            Some(k) => {
                c[k] = serde_json::json!({"rope_type": "default", "partial_rotary_factor": x})
            }
            None => c["partial_rotary_factor"] = x,
        }
        ModelConfig::from_hf_json(&c, p)
    };
    for at in [None, Some("rope_parameters")] {
        let e = with(at, serde_json::json!(0.5)).unwrap_err().to_string();
        assert!(e.contains("partial_rotary_factor 0.5: rotary embeddings on part of each head are supported for Phi-3, Phi, StableLM, GPT-NeoX, Nemotron and GLM models only"), "{e}");
        for ok in [
            serde_json::json!(1.0),
            serde_json::json!(1),
            serde_json::Value::Null,
        ] {
            assert!(with(at, ok.clone()).is_ok(), "{at:?} {ok}");
        }
    }
}

/// Phi-3 as transformers' Phi3Config reads it: Phi-3-mini-4k's config (its window in every
/// layer, `layer_types` not read, the top-level original context beside plain RoPE); `su` and
/// `yarn` are LongRoPE there (not YaRN), and no other scaling is accepted.
#[test]
fn phi3_reads_as_transformers_phi3config() {
    let p = Path::new("config.json");
    let mini_4k = serde_json::json!({"model_type": "phi3", "architectures": ["Phi3ForCausalLM"],
        "hidden_size": 96, "intermediate_size": 256, "num_attention_heads": 4,
        "num_key_value_heads": 4, "num_hidden_layers": 3, "vocab_size": 32064,
        "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
        "rope_scaling": null, "rope_theta": 10000.0, "sliding_window": 2047,
        "attention_bias": false, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "bos_token_id": 1, "eos_token_id": 32000, "tie_word_embeddings": false});
    let c = ModelConfig::from_hf_json(&mini_4k, p).unwrap();
    assert_eq!(c.arch, Arch::Phi3);
    assert_eq!(c.attention_window, [Some(2047); 3]);
    assert!(c.rope_scaling.is_none() && !c.qkv_bias && !c.mlp_bias && !c.qk_norm);
    assert_eq!((c.head_dim, c.context_limit()), (24, 4096));
    // Keys Phi3Config does not read: its linears have no biases; `swish` is ACT2FN's SiLU.
    let mut v = mini_4k.clone();
    (v["attention_bias"], v["mlp_bias"]) = (true.into(), true.into());
    v["hidden_act"] = "swish".into();
    let c = ModelConfig::from_hf_json(&v, p).unwrap();
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    let mut v = mini_4k.clone();
    v["layer_types"] = serde_json::json!(["full_attention", "full_attention", "full_attention"]);
    assert_eq!(
        ModelConfig::from_hf_json(&v, p).unwrap().attention_window,
        [Some(2047); 3]
    );
    v["sliding_window"] = serde_json::Value::Null;
    assert_eq!(
        ModelConfig::from_hf_json(&v, p).unwrap().attention_window,
        [None; 3]
    );
    for (key, kind) in [
        ("rope_scaling", "longrope"),
        ("rope_scaling", "su"),
        ("rope_parameters", "yarn"),
        ("rope_parameters", "linear"),
    ] {
        let mut v = mini_4k.clone();
        let (short, long) = (vec![1.0; 12], vec![2.0; 12]);
        v[key] = serde_json::json!({"type": kind, "factor": 2.0,
            "short_factor": short, "long_factor": long});
        match ModelConfig::from_hf_json(&v, p) {
            Ok(c) => match c.rope_scaling {
                Some(RopeScaling::LongRope(l)) if kind != "linear" => {
                    assert_eq!((l.short_factor, l.long_factor), (short, long));
                    assert_eq!(l.original_max_position_embeddings, 4096.0);
                }
                other => panic!("{kind}: {other:?}"),
            },
            Err(e) => assert!(
                kind == "linear"
                    && e.to_string().contains(
                        "Phi-3 RoPE scaling type `linear`: transformers' Phi3Config accepts only `default` and LongRoPE"
                    ),
                "{kind}: {e}"
            ),
        }
    }
    let mut v = mini_4k.clone();
    v["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 250000.0});
    assert_eq!(
        ModelConfig::from_hf_json(&v, p).unwrap().rope_theta,
        250000.0
    );
    // Phi-4-mini: rotary embeddings on 3/4 of each head (int(24 * 0.75) = 18), read from the
    // settings over the top level; an odd part, or a part on another architecture, refused.
    v["rope_parameters"]["partial_rotary_factor"] = 0.75.into();
    v["partial_rotary_factor"] = 0.5.into();
    assert_eq!(ModelConfig::from_hf_json(&v, p).unwrap().rotary_dim, 18);
    v["rope_parameters"]["partial_rotary_factor"] = serde_json::Value::Null;
    assert_eq!(ModelConfig::from_hf_json(&v, p).unwrap().rotary_dim, 12);
    v["partial_rotary_factor"] = 0.3.into();
    let e = ModelConfig::from_hf_json(&v, p).unwrap_err().to_string();
    assert!(
        e.contains("rotates 7 dimensions; expected an even number > 0"),
        "{e}"
    );
    v["partial_rotary_factor"] = 1.5.into();
    let e = ModelConfig::from_hf_json(&v, p).unwrap_err().to_string();
    assert!(e.contains("expected a number in (0, 1], found 1.5"), "{e}");
    v["partial_rotary_factor"] = 0.5.into();
    v["model_type"] = "llama".into();
    let e = ModelConfig::from_hf_json(&v, p).unwrap_err().to_string();
    assert!(
        e.contains("supported for Phi-3, Phi, StableLM, GPT-NeoX, Nemotron and GLM models only"),
        "{e}"
    );
}

/// OLMo 2 as Olmo2Config reads it: norms after each sub-block and none before, the query and
/// key normed over whole projections, no MLP biases whatever `mlp_bias` says, RMSNorm epsilon
/// 1e-5 by default; `layer_types` is not read (no windows).
#[test]
fn olmo2_reads_as_transformers_olmo2config() {
    let p = Path::new("config.json");
    let v = serde_json::json!({"model_type": "olmo2", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 256, "mlp_bias": true, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"]});
    let c = ModelConfig::from_hf_json(&v, p).unwrap();
    assert_eq!(c.arch, Arch::Olmo2);
    assert!(c.qk_norm && !c.pre_norms() && c.post_norms() && !c.sandwich_norms());
    assert_eq!(c.qk_norm_widths(), (64, 32));
    assert!(!c.mlp_bias && !c.qkv_bias && !c.tie_word_embeddings);
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-5, 10000.0));
    assert_eq!(c.attention_window, [None, None]);
    let mut qwen3 = v.clone();
    qwen3["model_type"] = "qwen3".into();
    qwen3["head_dim"] = 16.into();
    let c = ModelConfig::from_hf_json(&qwen3, p).unwrap();
    assert!(c.pre_norms() && !c.post_norms());
    assert_eq!((c.qk_norm_widths(), c.rms_norm_eps), ((16, 16), 1e-6));
}

/// EXAONE 4 as Exaone4Config and Exaone4Attention read it (checked against transformers 5.25):
/// OLMo 2's norms with per-head query/key norms; no biases whatever the config says; with a
/// window, the sliding layers (all but every `sliding_window_pattern`-th, default 4) rotate and
/// the full-attention ones do not; without one, every layer rotates.
#[test]
fn exaone4_reads_as_transformers_exaone4config() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "exaone4", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 5, "vocab_size": 256, "attention_bias": true, "mlp_bias": true});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Exaone4);
    assert!(c.qk_norm && !c.pre_norms() && c.post_norms());
    assert_eq!(c.qk_norm_widths(), (16, 16));
    assert!(!c.mlp_bias && !c.qkv_bias && !c.o_bias && !c.tie_word_embeddings);
    assert_eq!((c.rms_norm_eps, c.max_position_embeddings), (1e-5, 2048));
    let w = Some(4096);
    assert_eq!(c.attention_window, [w, w, w, None, w]);
    assert_eq!(c.rope_layers, [true, true, true, false, true]);
    // A pattern of 2; layer_types over it; no window: every layer rotates.
    let mut two = v.clone();
    two["sliding_window_pattern"] = 2.into();
    two["sliding_window"] = 8.into();
    let c = read(&two).unwrap();
    assert_eq!(c.rope_layers, [true, false, true, false, true]);
    two["layer_types"] = serde_json::json!(vec!["full_attention"; 5]);
    let c = read(&two).unwrap();
    assert_eq!(
        (c.attention_window, c.rope_layers),
        (vec![None; 5], vec![false; 5])
    );
    two["sliding_window"] = serde_json::Value::Null;
    assert_eq!(read(&two).unwrap().rope_layers, [true; 5]);
    // Where Exaone4Config fails without `layer_types`: a string pattern (TypeError), a null
    // window (a pattern of 0, ZeroDivisionError).
    for (key, value) in [
        ("sliding_window_pattern", serde_json::json!("LLLG")),
        ("sliding_window", serde_json::Value::Null),
    ] {
        let mut bad = v.clone();
        bad[key] = value;
        let e = read(&bad).unwrap_err().to_string();
        assert!(
            e.contains("no `layer_types`, and `sliding_window_pattern` is"),
            "{e}"
        );
    }
}

/// EXAONE 4.5's `layer_types` may list its multi-token-prediction layers after the model's
/// (`num_nextn_predict_layers`, kept outside `text_config`): those entries are dropped, as vLLM
/// drops them; a list of any other length is refused.
#[test]
fn exaone4_5_layer_types_of_its_prediction_layers() {
    let p = Path::new("config.json");
    let mut types = vec!["sliding_attention"; 3];
    types.extend(["full_attention", "sliding_attention"]);
    let text = serde_json::json!({"model_type": "exaone4", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 4, "vocab_size": 256, "sliding_window": 8, "layer_types": types});
    let v = serde_json::json!({"model_type": "exaone4_5", "num_nextn_predict_layers": 1,
        "text_config": text});
    let c = ModelConfig::from_hf_json(&v, p).unwrap();
    let w = Some(8);
    assert_eq!(c.attention_window, [w, w, w, None]);
    let mut two = v.clone();
    two["num_nextn_predict_layers"] = 2.into();
    let e = ModelConfig::from_hf_json(&two, p).unwrap_err().to_string();
    assert!(
        e.contains(
            "expected a list of 4 strings (one per layer, or 6 with the 2 prediction layers')"
        ),
        "{e}"
    );
    // The prediction layer's entry is checked as the others.
    let mut odd = v.clone();
    odd["text_config"]["layer_types"][4] = "chunked_attention".into();
    let e = ModelConfig::from_hf_json(&odd, p).unwrap_err().to_string();
    assert!(e.contains("layer_types[4] = \"chunked_attention\""), "{e}");
}
