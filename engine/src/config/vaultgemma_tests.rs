//! VaultGemma as transformers 5.25's VaultGemmaConfig reads it: a config of VaultGemma 1B's
//! shape (every layer full attention), VaultGemmaConfig's defaults for a sparse one, and where
//! its norms sit.

use serde_json::{json, Value};

use super::test_read::read;
use super::{Activation, Arch};

/// A config of google/vaultgemma-1b's shape: Gemma 2's keys, every layer `full_attention` (the
/// model card: "full attention for all layers"), its unused window 512.
fn vaultgemma_1b() -> Value {
    json!({"architectures": ["VaultGemmaForCausalLM"], "model_type": "vaultgemma",
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "bos_token_id": 2,
        "eos_token_id": 1, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 1152, "intermediate_size": 6912, "max_position_embeddings": 1024,
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 4,
        "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "sliding_window": 512, "layer_types": vec!["full_attention"; 26], "vocab_size": 256000})
}

/// Gemma 2's scale, caps, embedding factor and `1 + w` norms; no norms after the sub-blocks,
/// the feed-forward's input norm under Gemma 2's name; no window where `layer_types` lists
/// none.
#[test]
fn vaultgemma_1b_config() {
    let c = read(&vaultgemma_1b()).unwrap();
    assert_eq!(c.arch, Arch::VaultGemma);
    assert!(c.arch.is_gemma() && c.pre_norms() && !c.post_norms() && !c.sandwich_norms());
    let names = c.norm_names();
    assert_eq!(
        (names.attn_in, names.ffn_in),
        ("input_layernorm", "pre_feedforward_layernorm")
    );
    assert_eq!(
        (c.activation, c.head_dim, c.qk_norm, c.tie_word_embeddings),
        (Activation::GeluTanh, 256, false, true)
    );
    assert_eq!(c.softcaps(), (Some(50.0), Some(30.0)));
    assert_eq!(c.attention_scale(), 1.0 / 16.0);
    assert_eq!(c.embed_scale(), Some((1152f32).sqrt()));
    assert!(c.attention_window.iter().all(Option::is_none));
    assert_eq!(c.context_limit(), 1024);
    // VaultGemmaConfig has no `use_bidirectional_attention` (its attention is causal).
    let mut v = vaultgemma_1b();
    v["use_bidirectional_attention"] = json!(true);
    assert!(read(&v).is_ok());
}

/// Without `layer_types`, VaultGemmaConfig's default: the window in every other layer from the
/// first, as Gemma 2's; its other defaults (the 2B shape, caps 50 and 30) for a sparse config.
#[test]
fn vaultgemma_defaults() {
    let mut v = vaultgemma_1b();
    v.as_object_mut().unwrap().remove("layer_types");
    let c = read(&v).unwrap();
    let sliding: Vec<usize> = (0..26)
        .filter(|&i| c.attention_window[i] == Some(512))
        .collect();
    assert_eq!(sliding, (0..26).step_by(2).collect::<Vec<_>>());
    let c = read(&json!({"model_type": "vaultgemma"})).unwrap();
    assert_eq!(
        (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads),
        (2304, 26, 8, 4)
    );
    assert_eq!(c.softcaps(), (Some(50.0), Some(30.0)));
    assert_eq!(c.attention_window[0], Some(4096));
}
