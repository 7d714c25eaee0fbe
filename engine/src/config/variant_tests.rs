//! Unit tests of [`super`]: the Llama variants whose configs differ from LlamaConfig only in
//! defaults and in what they read (Seed-OSS, GLM, GLM-4, ERNIE 4.5, Ministral,
//! EXAONE 3, InternLM3, Helium), each checked against its
//! transformers 5.25 config class.

use std::path::Path;

use super::{Arch, ModelConfig};

/// Seed-OSS as SeedOssConfig reads it (checked against transformers 5.25): q/k/v biases by
/// default, an o_proj bias only with `attention_out_bias`, 128-wide heads where `head_dim` is
/// absent (hidden / heads where it is null), a 524288-token context; no windows.
#[test]
fn seed_oss_reads_as_transformers_seedossconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p).unwrap();
    let v = serde_json::json!({"model_type": "seed_oss", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 256, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"]});
    let c = read(&v);
    assert_eq!(c.arch, Arch::SeedOss);
    assert_eq!((c.head_dim, c.max_position_embeddings), (128, 524_288));
    assert!(c.qkv_bias && !c.o_bias && !c.mlp_bias && c.pre_norms() && !c.qk_norm);
    assert_eq!(c.attention_window, [None, None]);
    let mut other = v.clone();
    other["head_dim"] = serde_json::Value::Null;
    other["attention_bias"] = false.into();
    other["attention_out_bias"] = true.into();
    other["mlp_bias"] = true.into();
    let c = read(&other);
    assert_eq!(c.head_dim, 16);
    assert!(!c.qkv_bias && c.o_bias && c.mlp_bias);
}

/// GLM and GLM-4 as GlmConfig and Glm4Config read them (checked against transformers 5.25):
/// 128-wide heads and two key/value heads where absent, RoPE on half of each head in adjacent
/// pairs unless `partial_rotary_factor` (top level or in the RoPE settings) says otherwise, q/k/v
/// biases by default and never on o_proj or the MLP, eps 1.5625e-7, a 131072-token context,
/// GLM-4's ends where none are named; norms around both sub-blocks in GLM-4 alone; a null
/// `head_dim` refused (GlmAttention fails on it).
#[test]
fn glm_reads_as_transformers_glmconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "glm4", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 151_552, "mlp_bias": true});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Glm4);
    assert_eq!((c.head_dim, c.num_kv_heads, c.rotary_dim), (128, 2, 64));
    assert!(c.rope_interleaved && c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(
        (c.rms_norm_eps, c.max_position_embeddings),
        (1.5625e-7, 131_072)
    );
    assert_eq!(c.eos_token_ids, [151_329, 151_336, 151_338]);
    assert!(c.pre_norms() && c.post_norms() && !c.qk_norm && c.gemma.is_none());
    let names = c.norm_names();
    assert_eq!(
        [names.attn_in, names.ffn_in, names.attn_out, names.ffn_out],
        [
            "input_layernorm",
            "post_attention_layernorm",
            "post_self_attn_layernorm",
            "post_mlp_layernorm"
        ]
    );
    let mut glm = v.clone();
    glm["model_type"] = "glm".into();
    glm["head_dim"] = 32.into();
    glm["attention_bias"] = false.into();
    glm["eos_token_id"] = 7.into();
    glm["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e4,
        "partial_rotary_factor": 0.75});
    let c = read(&glm).unwrap();
    assert_eq!((c.arch, c.head_dim, c.rotary_dim), (Arch::Glm, 32, 24));
    assert!(c.rope_interleaved && !c.qkv_bias && !c.post_norms());
    assert_eq!(c.eos_token_ids, [7]);
    assert_eq!(c.norm_names().ffn_in, "post_attention_layernorm");
    glm["partial_rotary_factor"] = 1.0.into();
    glm["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e4});
    assert_eq!(read(&glm).unwrap().rotary_dim, 32);
    // A top-level null: GlmConfig's 0.5 never reaches the RoPE settings, whole heads rotate;
    // a null in the RoPE settings fails in transformers.
    glm["partial_rotary_factor"] = serde_json::Value::Null;
    assert_eq!(read(&glm).unwrap().rotary_dim, 32);
    glm["rope_parameters"]["partial_rotary_factor"] = serde_json::Value::Null;
    let e = read(&glm).unwrap_err().to_string();
    assert!(
        e.contains("`partial_rotary_factor`: expected a number in (0, 1], found null"),
        "{e}"
    );
    glm["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e4});
    glm["num_key_value_heads"] = serde_json::Value::Null;
    let e = read(&glm).unwrap_err().to_string();
    assert!(
        e.contains("field `num_key_value_heads`: expected a positive integer"),
        "{e}"
    );
    glm["num_key_value_heads"] = 4.into();
    glm["head_dim"] = serde_json::Value::Null;
    let e = read(&glm).unwrap_err().to_string();
    assert!(
        e.contains("field `head_dim`: expected a positive integer"),
        "{e}"
    );
}

/// ERNIE 4.5 dense as Ernie4_5Config reads it (checked against transformers 5.25): 128-wide
/// heads and two key/value heads where absent (hidden / heads where `head_dim` is null), RoPE
/// over whole heads in adjacent pairs, `use_bias` on every projection (no `attention_bias` or
/// `mlp_bias` read), tied by default, eps 1e-5, a 131072-token context, RoPE base 500000 where
/// none is given, a null key/value head count as every head's; a partial rotary factor
/// refused (its attention rotates whole heads).
#[test]
fn ernie4_5_reads_as_transformers_ernie4_5config() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "ernie4_5", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256, "attention_bias": true, "mlp_bias": true});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Ernie45);
    assert_eq!((c.head_dim, c.num_kv_heads, c.rotary_dim), (128, 2, 128));
    assert!(c.rope_interleaved && c.tie_word_embeddings);
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias && c.pre_norms() && !c.post_norms());
    assert_eq!((c.rms_norm_eps, c.max_position_embeddings), (1e-5, 131_072));
    // Ernie4_5Config's `default_theta`; a null key/value head count is every head's.
    assert_eq!(c.rope_theta, 500_000.0);
    let mut nulls = v.clone();
    nulls["num_key_value_heads"] = serde_json::Value::Null;
    assert_eq!(read(&nulls).unwrap().num_kv_heads, 4);
    let mut other = v.clone();
    other["use_bias"] = true.into();
    other["head_dim"] = serde_json::Value::Null;
    other["tie_word_embeddings"] = false.into();
    let c = read(&other).unwrap();
    assert_eq!(c.head_dim, 16);
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias && !c.tie_word_embeddings);
    other["partial_rotary_factor"] = 0.5.into();
    let e = read(&other).unwrap_err().to_string();
    assert!(
        e.contains("supported for Phi-3, Phi, StableLM, GPT-NeoX, Nemotron and GLM models only"),
        "{e}"
    );
}

/// Ministral as MinistralConfig reads it (checked against transformers 5.25): a window of 4096
/// where `sliding_window` is absent (an explicit null is none), in every layer unless
/// `layer_types` says otherwise; eight key/value heads and a 131072-token context by default;
/// no default head width (MinistralAttention fails without one). MistralConfig's window,
/// key/value heads and context have the same defaults; a null head count is every head's.
#[test]
fn ministral_reads_as_transformers_ministralconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "ministral", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 8, "num_hidden_layers": 3,
        "vocab_size": 256, "head_dim": 16});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Ministral);
    assert_eq!((c.num_kv_heads, c.max_position_embeddings), (8, 131_072));
    assert_eq!(c.attention_window, [Some(4096); 3]);
    assert!(!c.qkv_bias && !c.rope_interleaved && c.pre_norms() && !c.post_norms());
    let mut typed = v.clone();
    typed["sliding_window"] = 6.into();
    typed["layer_types"] =
        serde_json::json!(["sliding_attention", "full_attention", "sliding_attention"]);
    assert_eq!(
        read(&typed).unwrap().attention_window,
        [Some(6), None, Some(6)]
    );
    typed["sliding_window"] = serde_json::Value::Null;
    typed["layer_types"] = serde_json::Value::Null;
    assert_eq!(read(&typed).unwrap().attention_window, [None; 3]);
    // MistralConfig's defaults: the window, eight key/value heads, a 131072-token context.
    let mut mistral = v.clone();
    mistral["model_type"] = "mistral".into();
    let c = read(&mistral).unwrap();
    assert_eq!(c.attention_window, [Some(4096); 3]);
    assert_eq!((c.num_kv_heads, c.max_position_embeddings), (8, 131_072));
    mistral["num_key_value_heads"] = serde_json::Value::Null;
    mistral["num_attention_heads"] = 4.into();
    assert_eq!(read(&mistral).unwrap().num_kv_heads, 4);
    let mut headless = v.clone();
    headless.as_object_mut().unwrap().remove("head_dim");
    let e = read(&headless).unwrap_err().to_string();
    assert!(
        e.contains("field `head_dim`: expected a positive integer"),
        "{e}"
    );
}

/// EXAONE 3 as ExaoneConfig reads it (checked against transformers 5.25): its Hub keys
/// `num_layers`, `layer_norm_epsilon` and `activation_function` (winning over the Llama names
/// where a file has both, as transformers sets them last); eight key/value heads, eps 1e-5, RoPE
/// base 500000, a 4096-token context and `[|endofturn|]` (361) as the end where absent.
#[test]
fn exaone_reads_as_transformers_exaoneconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "exaone", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 16, "num_layers": 3,
        "vocab_size": 512, "layer_norm_epsilon": 1e-3, "activation_function": "silu"});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Exaone);
    assert_eq!((c.num_layers, c.rms_norm_eps, c.head_dim), (3, 1e-3, 4));
    assert_eq!(
        (c.num_kv_heads, c.rope_theta, c.max_position_embeddings),
        (8, 5e5, 4096)
    );
    assert_eq!(c.eos_token_ids, [361]);
    assert!(!c.qkv_bias && !c.rope_interleaved && !c.tie_word_embeddings);
    let mut both = v.clone();
    both["num_hidden_layers"] = 5.into();
    both["rms_norm_eps"] = 1e-6.into();
    both["eos_token_id"] = serde_json::Value::Null;
    let c = read(&both).unwrap();
    assert_eq!((c.num_layers, c.rms_norm_eps), (3, 1e-3));
    assert!(c.eos_token_ids.is_empty());
    both["activation_function"] = "gelu".into();
    let e = read(&both).unwrap_err().to_string();
    assert!(e.contains("hidden_act `gelu`"), "{e}");
}

/// InternLM3 as InternLM3Config reads it (checked against transformers 5.25): `qkv_bias` and
/// `bias` for Llama's `attention_bias` (q/k/v/o) and `mlp_bias`, refused unequal; 128-wide heads
/// and two key/value heads where absent (hidden / heads where `head_dim` is null), eps 1e-5, a
/// 32768-token context; its dynamic NTK scaling read as default RoPE within that context.
#[test]
fn internlm3_reads_as_transformers_internlm3config() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "internlm3", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256, "qkv_bias": true, "bias": true, "attention_bias": false,
        "rope_scaling": {"rope_type": "dynamic", "factor": 6.0}});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::InternLM3);
    assert_eq!((c.head_dim, c.num_kv_heads, c.rms_norm_eps), (128, 2, 1e-5));
    assert_eq!(
        (c.max_position_embeddings, c.context_limit()),
        (32768, 32768)
    );
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias && !c.tie_word_embeddings);
    let mut other = v.clone();
    other["head_dim"] = serde_json::Value::Null;
    other["bias"] = false.into();
    let e = read(&other).unwrap_err().to_string();
    assert!(
        e.contains(
            "InternLM3 with `qkv_bias` (`attention_bias`) true and `bias` (`mlp_bias`) false"
        ),
        "{e}"
    );
    other["qkv_bias"] = false.into();
    let c = read(&other).unwrap();
    assert_eq!(c.head_dim, 16);
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
}

/// Helium as HeliumConfig reads it (checked against transformers 5.25): RoPE in adjacent
/// pairs, `attention_bias` on q/k/v only, 128-wide heads and 20 key/value heads where absent,
/// eps 1e-8, RoPE base 100000; a null head width or count refused (its strict config takes
/// none), and so are heads that do not fill hidden_size (its o_proj is hidden x hidden).
#[test]
fn helium_reads_as_transformers_heliumconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "helium", "hidden_size": 2560,
        "intermediate_size": 160, "num_attention_heads": 20, "num_hidden_layers": 2,
        "vocab_size": 256, "attention_bias": true, "mlp_bias": true});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Helium);
    assert_eq!(
        (c.head_dim, c.num_kv_heads, c.rms_norm_eps),
        (128, 20, 1e-8)
    );
    assert_eq!((c.rope_theta, c.max_position_embeddings), (1e5, 4096));
    assert!(c.rope_interleaved && c.qkv_bias && !c.o_bias && c.mlp_bias);
    for (key, want) in [
        ("head_dim", "field `head_dim`: expected a positive integer"),
        (
            "num_key_value_heads",
            "field `num_key_value_heads`: expected a positive integer",
        ),
    ] {
        let mut null = v.clone();
        null[key] = serde_json::Value::Null;
        let e = read(&null).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let mut narrow = v.clone();
    narrow["head_dim"] = 64.into();
    let e = read(&narrow).unwrap_err().to_string();
    assert!(
        e.contains("num_attention_heads 20 x head_dim 64 must be hidden_size 2560"),
        "{e}"
    );
}

/// An aliased key of the wrong type, or null (transformers' strict classes refuse both), is
/// named as the file names it.
#[test]
fn aliased_keys_are_named_as_the_file_names_them() {
    let p = Path::new("config.json");
    for (model_type, key, value, want) in [
        ("exaone", "layer_norm_epsilon", serde_json::json!("1e-5"), "field `layer_norm_epsilon` (read as `rms_norm_eps`): expected a number, found \"1e-5\""),
        ("exaone", "layer_norm_epsilon", serde_json::Value::Null, "field `layer_norm_epsilon` (read as `rms_norm_eps`): expected a number, found null"),
        ("exaone", "num_layers", serde_json::json!(-2), "field `num_layers` (read as `num_hidden_layers`): expected a non-negative integer"),
        ("exaone", "activation_function", serde_json::json!(1), "field `activation_function` (read as `hidden_act`): expected a string"),
        ("internlm3", "qkv_bias", serde_json::json!("yes"), "field `qkv_bias` (read as `attention_bias`): expected true or false"),
    ] {
        let mut v = serde_json::json!({"model_type": model_type, "hidden_size": 64,
            "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": 256});
        v[key] = value;
        let e = ModelConfig::from_hf_json(&v, p).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// Cohere and Cohere 2 as CohereConfig and Cohere2Config read them (checked against
/// transformers 5.25): `layer_norm_eps` for the norms (an `rms_norm_eps` key left unread),
/// LayerNorms and parallel blocks, RoPE in adjacent pairs, `logit_scale` 0.0625, tied, an
/// 8192-token context, RoPE base 500000 (Cohere) or 10000 (Cohere 2), `<|END_OF_TURN_TOKEN|>`
/// (255001) as the end where absent, no MLP biases; Cohere's `use_qk_norm` (Command R+'s) as
/// per-head query/key LayerNorms, a non-boolean one and a null `head_dim` refused. Cohere 2's sliding layers (all but each `sliding_window_pattern`-th,
/// default 4, with a 4096 window) alone rotate; a null window refused (Cohere2Model fails).
#[test]
fn cohere_reads_as_transformers_cohereconfig() {
    let p = Path::new("config.json");
    let read = |v: &serde_json::Value| ModelConfig::from_hf_json(v, p);
    let v = serde_json::json!({"model_type": "cohere", "hidden_size": 64,
        "intermediate_size": 160, "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": 256_000, "rms_norm_eps": 1e-3, "attention_bias": true, "mlp_bias": true});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Cohere);
    assert!(c.layer_norms() && c.parallel_block() && c.rope_interleaved && c.tie_word_embeddings);
    assert_eq!(
        (c.rms_norm_eps, c.logit_scale, c.rope_theta),
        (1e-5, Some(0.0625), 5e5)
    );
    assert_eq!((c.max_position_embeddings, c.head_dim), (8192, 16));
    assert_eq!(c.eos_token_ids, [255_001]);
    assert!(c.qkv_bias && c.o_bias && !c.mlp_bias);
    let mut other = v.clone();
    other["layer_norm_eps"] = 1e-3.into();
    other["logit_scale"] = 0.25.into();
    let c = read(&other).unwrap();
    assert_eq!((c.rms_norm_eps, c.logit_scale), (1e-3, Some(0.25)));
    assert!(!c.qk_norm && !c.qk_norm_per_head);
    other["use_qk_norm"] = true.into();
    let c = read(&other).unwrap();
    assert!(c.qk_norm && c.qk_norm_per_head && c.rope_interleaved);
    assert_eq!(
        (c.qk_norm_widths(), c.qk_norm_weight_rows()),
        ((16, 16), (4, 4))
    );
    other["use_qk_norm"] = "yes".into();
    let e = read(&other).unwrap_err().to_string();
    assert!(e.contains("`use_qk_norm`"), "{e}");
    other["use_qk_norm"] = false.into();
    other["logit_scale"] = serde_json::Value::Null;
    let e = read(&other).unwrap_err().to_string();
    assert!(
        e.contains("field `logit_scale`: expected a finite number"),
        "{e}"
    );
    let mut null_width = v.clone();
    null_width["head_dim"] = serde_json::Value::Null;
    let e = read(&null_width).unwrap_err().to_string();
    assert!(
        e.contains("field `head_dim`: expected a positive integer"),
        "{e}"
    );

    let mut v2 = v.clone();
    v2["model_type"] = "cohere2".into();
    v2["num_hidden_layers"] = 6.into();
    v2["use_qk_norm"] = true.into(); // Cohere2Attention reads none.
    let c = read(&v2).unwrap();
    assert!(!c.qk_norm);
    assert_eq!((c.arch, c.rope_theta), (Arch::Cohere2, 1e4));
    let w = Some(4096);
    assert_eq!(c.attention_window, [w, w, w, None, w, w]);
    assert_eq!(c.rope_layers, [true, true, true, false, true, true]);
    v2["sliding_window_pattern"] = 3.into();
    v2["sliding_window"] = 6.into();
    let c = read(&v2).unwrap();
    assert_eq!(
        c.attention_window,
        [Some(6), Some(6), None, Some(6), Some(6), None]
    );
    v2["sliding_window"] = serde_json::Value::Null;
    let e = read(&v2).unwrap_err().to_string();
    assert!(
        e.contains("`sliding_window` is null, but Cohere 2 needs one"),
        "{e}"
    );
    v2["sliding_window"] = 6.into();
    v2["sliding_window_pattern"] = 0.into();
    let e = read(&v2).unwrap_err().to_string();
    assert!(
        e.contains("field `sliding_window_pattern`: expected a positive integer"),
        "{e}"
    );
}
