//! StableLM, StarCoder2 and Phi as their transformers config classes read them (checked
//! against transformers 5.25's StableLmConfig, Starcoder2Config and PhiConfig).

use super::test_read::read;
use super::{Activation, Arch};
use crate::LoraModule;

fn base(model_type: &str) -> serde_json::Value {
    serde_json::json!({"model_type": model_type, "hidden_size": 64, "intermediate_size": 160,
        "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 256})
}

/// StableLmConfig: `layer_norm_eps` (an `rms_norm_eps` key left unread), RoPE on a quarter of
/// each head, 32 key/value heads, q/k/v biases only with `use_qkv_bias`, sequential blocks
/// unless `use_parallel_residual`, SiLU-gated, untied; `qk_layernorm` (StableLM 2 12B's) as
/// per-head query/key LayerNorms beside the partial rotation; a null `partial_rotary_factor`
/// (its attention multiplies by it) refused.
#[test]
fn stablelm_reads_as_stablelmconfig() {
    let mut v = base("stablelm");
    v["num_attention_heads"] = 32.into();
    v["hidden_size"] = 512.into();
    v["rms_norm_eps"] = 1e-3.into();
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::StableLm);
    assert!(c.layer_norms() && c.arch.norm_bias() && c.arch.gated_mlp());
    assert!(!c.parallel_block() && !c.tie_word_embeddings);
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(
        (c.rms_norm_eps, c.num_kv_heads, c.head_dim, c.rotary_dim),
        (1e-5, 32, 16, 4)
    );
    assert_eq!((c.max_position_embeddings, c.rope_theta), (4096, 1e4));
    assert_eq!(c.activation, Activation::Silu);
    v["use_qkv_bias"] = true.into();
    v["use_parallel_residual"] = true.into();
    v["layer_norm_eps"] = 1e-6.into();
    v["partial_rotary_factor"] = 0.5.into();
    let c = read(&v).unwrap();
    assert!(c.qkv_bias && !c.o_bias && c.parallel_block());
    assert_eq!((c.rms_norm_eps, c.rotary_dim), (1e-6, 8));
    assert!(!c.qk_norm && !c.qk_norm_per_head);
    let mut qk = v.clone();
    qk["qk_layernorm"] = true.into();
    qk["num_key_value_heads"] = 8.into();
    let c = read(&qk).unwrap();
    assert!(c.qk_norm && c.qk_norm_per_head && c.rotary_dim < c.head_dim);
    assert_eq!(
        (c.qk_norm_widths(), c.qk_norm_weight_rows()),
        ((16, 16), (32, 8))
    );
    let mut bad = v.clone();
    bad["partial_rotary_factor"] = serde_json::Value::Null;
    let e = read(&bad).unwrap_err().to_string();
    assert!(e.contains("field `partial_rotary_factor`"), "{e}");
    // A top-level null beside a factor in the RoPE settings: the settings' (as transformers).
    bad["rope_parameters"] =
        serde_json::json!({"rope_type": "default", "partial_rotary_factor": 0.5});
    assert_eq!(read(&bad).unwrap().rotary_dim, 8);
    let mut bad = v.clone();
    bad["num_key_value_heads"] = serde_json::Value::Null;
    let e = read(&bad).unwrap_err().to_string();
    assert!(e.contains("field `num_key_value_heads`"), "{e}");
    let mut bad = v.clone();
    bad["head_dim"] = 32.into();
    let e = read(&bad).unwrap_err().to_string();
    assert!(
        e.contains("StableLM's attention heads are hidden_size / num_attention_heads = 16"),
        "{e}"
    );
    let mut bad = v;
    bad["hidden_act"] = "gelu".into();
    assert!(read(&bad).is_err());
}

/// Starcoder2Config: `norm_epsilon`, 2 key/value heads, biases on every projection unless
/// `use_bias` is false, an ungated GELU-tanh feed-forward without a gate module (the exact GELU
/// where `hidden_act` says `gelu`), tied, the window (none unless set) in every layer whatever
/// `layer_types` says; another activation refused.
#[test]
fn starcoder2_reads_as_starcoder2config() {
    let v = base("starcoder2");
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Starcoder2);
    assert!(c.layer_norms() && !c.parallel_block() && c.tie_word_embeddings);
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias && !c.arch.gated_mlp());
    assert!(!c.has_module(LoraModule::Gate) && c.has_module(LoraModule::Up));
    assert_eq!(c.activation, Activation::GeluTanh);
    assert_eq!(
        (c.num_kv_heads, c.rms_norm_eps, c.rotary_dim),
        (2, 1e-5, 16)
    );
    assert_eq!(c.attention_window, [None, None]);
    let mut v = v;
    v["use_bias"] = false.into();
    v["norm_epsilon"] = 1e-3.into();
    v["sliding_window"] = 6.into();
    v["layer_types"] = serde_json::json!(["full_attention", "full_attention"]);
    v["hidden_act"] = "gelu_new".into();
    let c = read(&v).unwrap();
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(
        (c.rms_norm_eps, c.attention_window.clone()),
        (1e-3, vec![Some(6); 2])
    );
    // The exact GELU too (ACT2FN's `gelu`); another activation refused.
    v["hidden_act"] = "gelu".into();
    assert_eq!(read(&v).unwrap().activation, Activation::GeluErf);
    v["hidden_act"] = "relu".into();
    let e = read(&v).unwrap_err().to_string();
    assert!(
        e.contains("hidden_act `relu`") && e.contains("tanh approximation"),
        "{e}"
    );
}

/// PhiConfig in the Hub's layout (Phi-2's `config.json`: a top-level `partial_rotary_factor`
/// of 0.4, `num_key_value_heads` null, `rope_theta`): every key/value head, RoPE on 32 of 80
/// dimensions, parallel blocks, biases on every projection, untied, `gelu_new`, a 2048 context;
/// its `qk_layernorm` (one LayerNorm with a bias shared by the heads) refused.
#[test]
fn phi_reads_as_phiconfig() {
    let v = serde_json::json!({"model_type": "phi", "architectures": ["PhiForCausalLM"],
        "hidden_size": 2560, "intermediate_size": 10240, "num_attention_heads": 32,
        "num_key_value_heads": null, "num_hidden_layers": 32, "vocab_size": 51200,
        "partial_rotary_factor": 0.4, "rope_theta": 10000.0, "layer_norm_eps": 1e-5,
        "hidden_act": "gelu_new", "qk_layernorm": false, "tie_word_embeddings": false,
        "max_position_embeddings": 2048, "bos_token_id": 50256, "eos_token_id": 50256});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Phi);
    assert_eq!((c.num_kv_heads, c.head_dim, c.rotary_dim), (32, 80, 32));
    assert!(c.parallel_block() && c.layer_norms() && !c.arch.gated_mlp());
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias && !c.tie_word_embeddings);
    // PhiConfig's defaults: every key/value head, RoPE on half of each head, 2048 positions.
    let c = read(&base("phi")).unwrap();
    assert_eq!(
        (c.rotary_dim, c.max_position_embeddings, c.num_kv_heads),
        (8, 2048, 4)
    );
    assert_eq!(c.activation, Activation::GeluTanh);
    let mut qk = v.clone();
    qk["qk_layernorm"] = true.into();
    let e = read(&qk).unwrap_err().to_string();
    assert!(
        e.contains("Phi's `qk_layernorm`") && e.contains("not supported"),
        "{e}"
    );
}

/// GPTNeoXConfig in the Hub's layout (Pythia-70m's `config.json`: `rotary_pct`,
/// `rotary_emb_base`, `layer_norm_eps`): every key/value head, heads of hidden / heads, RoPE on a
/// quarter of each, parallel blocks with a norm each, biases everywhere, the exact GELU;
/// `use_parallel_residual` false and `attention_bias` false as read; GPT-NeoX-20B's
/// `gelu_fast`; a `head_dim` of another width refused.
#[test]
fn gpt_neox_reads_as_gptneoxconfig() {
    let v = serde_json::json!({"architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0,
        "eos_token_id": 0, "hidden_act": "gelu", "hidden_size": 512, "intermediate_size": 2048,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "gpt_neox",
        "num_attention_heads": 8, "num_hidden_layers": 6, "rotary_emb_base": 10000,
        "rotary_pct": 0.25, "tie_word_embeddings": false, "use_parallel_residual": true,
        "vocab_size": 50304});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::GptNeoX);
    assert_eq!((c.num_kv_heads, c.head_dim, c.rotary_dim), (8, 64, 16));
    assert_eq!((c.rope_theta, c.rms_norm_eps), (1e4, 1e-5));
    assert!(c.parallel_block() && c.parallel_norms && c.layer_norms());
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::GeluErf);
    let mut w = v.clone();
    w["use_parallel_residual"] = false.into();
    w["attention_bias"] = false.into();
    w["hidden_act"] = "gelu_fast".into();
    w["rotary_pct"] = 1.0.into();
    w["rotary_emb_base"] = 500.into();
    let c = read(&w).unwrap();
    assert!(!c.parallel_block() && !c.qkv_bias && !c.o_bias && c.mlp_bias);
    assert_eq!(
        (c.activation, c.rotary_dim, c.rope_theta),
        (Activation::GeluTanh, 64, 500.0)
    );
    w["head_dim"] = 32.into();
    let e = read(&w).unwrap_err().to_string();
    assert!(
        e.contains("GPT-NeoX's attention heads are hidden_size / num_attention_heads = 64"),
        "{e}"
    );
    let mut w = v;
    w["rotary_pct"] = serde_json::Value::Null;
    let e = read(&w).unwrap_err().to_string();
    assert!(e.contains("field `rotary_pct`"), "{e}");
}
