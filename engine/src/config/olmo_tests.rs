//! OLMo (the first) as transformers 5.25's OlmoConfig reads it: OLMo-1B-hf's config (no clamp,
//! tied), a config of OLMo-1.7-7B's shape (`clip_qkv` 8), and what is refused.

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Activation, Arch};

/// allenai/OLMo-1B-hf's config.json as the Hub has it.
fn olmo_1b() -> Value {
    json!({"architectures": ["OlmoForCausalLM"], "model_type": "olmo", "attention_bias": false,
        "attention_dropout": 0.0, "clip_qkv": null, "eos_token_id": 50279, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 2048, "num_attention_heads": 16, "num_hidden_layers": 16,
        "num_key_value_heads": 16, "pad_token_id": 1, "rope_scaling": null, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "torch_dtype": "float32", "use_cache": true,
        "vocab_size": 50304})
}

/// LayerNorms without weights (the residual stream kept centered), epsilon 1e-5 whatever the
/// file says (OlmoLayerNorm's own), no clamp where `clip_qkv` is null or absent.
#[test]
fn olmo_1b_config() {
    let c = read(&olmo_1b()).unwrap();
    assert_eq!(c.arch, Arch::Olmo);
    assert!(c.arch.unweighted_norms() && c.layer_norms() && c.pre_norms() && !c.post_norms());
    assert!(!c.arch.norm_bias() && !c.qk_norm && !c.qkv_bias && !c.parallel_block());
    assert_eq!((c.rms_norm_eps, c.clip_qkv), (1e-5, None));
    assert_eq!(
        (
            c.activation,
            c.head_dim,
            c.tie_word_embeddings,
            c.context_limit()
        ),
        (Activation::Silu, 128, true, 2048)
    );
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.as_slice()),
        (None, &[50279][..])
    );
    // Keys OlmoConfig does not have, or OlmoMLP does not read, change nothing; its end id
    // where the file names none.
    let mut v = olmo_1b();
    v["rms_norm_eps"] = json!(1e-6);
    v["mlp_bias"] = json!(true);
    let o = v.as_object_mut().unwrap();
    o.remove("clip_qkv");
    o.remove("eos_token_id");
    let c = read(&v).unwrap();
    assert_eq!(
        (c.rms_norm_eps, c.clip_qkv, c.mlp_bias),
        (1e-5, None, false)
    );
    assert_eq!(c.eos_token_ids, [50_279]);
    // OlmoAttention takes a null head_dim as the width, and fails.
    v["head_dim"] = json!(null);
    refused(&v, "field `head_dim`");
}

/// OLMo 1.7's clamp: `clip_qkv` read as a limit; refused where it is not a number > 0.
#[test]
fn olmo_clip_qkv() {
    let mut v = olmo_1b();
    for (k, x) in [
        ("hidden_size", json!(4096)),
        ("intermediate_size", json!(11008)),
        ("num_attention_heads", json!(32)),
        ("num_key_value_heads", json!(32)),
        ("num_hidden_layers", json!(32)),
        ("max_position_embeddings", json!(4096)),
        ("tie_word_embeddings", json!(false)),
        ("clip_qkv", json!(8.0)),
    ] {
        v[k] = x;
    }
    let c = read(&v).unwrap();
    assert_eq!((c.clip_qkv, c.tie_word_embeddings), (Some(8.0), false));
    for bad in [json!(0.0), json!(-8.0), json!("8"), json!(1e39)] {
        v["clip_qkv"] = bad;
        refused(&v, "`clip_qkv` is");
    }
    // Another family's `clip_qkv` is not read (transformers reads it for OLMo alone).
    let mut other = olmo_1b();
    other["model_type"] = json!("llama");
    other["clip_qkv"] = json!(8.0);
    assert_eq!(read(&other).unwrap().clip_qkv, None);
}
