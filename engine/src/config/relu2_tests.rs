//! Arcee, Nemotron and Jais 2, the squared-ReLU families, as transformers 5.25's ArceeConfig,
//! NemotronConfig and Jais2Config read them: configs of AFM-4.5B's, Minitron-8B's and
//! Jais-2-8B's shapes, each class's defaults, and what their modules fail on.

use std::path::Path;

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Activation, Arch, ModelConfig, RopeScaling};

/// A config of AFM-4.5B's shape (`arcee`): GQA, 128-wide heads, YaRN x20 from 4096.
fn afm() -> Value {
    json!({"architectures": ["ArceeForCausalLM"], "model_type": "arcee",
        "attention_bias": false, "bos_token_id": 128000, "eos_token_id": 128001,
        "head_dim": 128, "hidden_act": "relu2", "hidden_size": 2560,
        "intermediate_size": 18432, "max_position_embeddings": 65536, "mlp_bias": false,
        "num_attention_heads": 20, "num_hidden_layers": 36, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "rope_scaling": {"rope_type": "yarn", "factor": 20.0,
            "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0},
        "vocab_size": 128004})
}

/// A config of Minitron-8B's shape (`nemotron`): 48 heads of 128 in a hidden of 4096, RoPE on
/// half of each head, `norm_eps`.
fn minitron() -> Value {
    json!({"architectures": ["NemotronForCausalLM"], "model_type": "nemotron",
        "bos_token_id": 2, "eos_token_id": 3, "head_dim": 128, "hidden_act": "relu2",
        "hidden_size": 4096, "intermediate_size": 16384, "max_position_embeddings": 4096,
        "norm_eps": 1e-05, "num_attention_heads": 48, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "partial_rotary_factor": 0.5, "rope_theta": 10000,
        "tie_word_embeddings": false, "vocab_size": 256000})
}

fn with(mut v: Value, key: &str, x: Value) -> Value {
    v[key] = x;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// AFM-4.5B: Llama's attention and RMSNorms, an ungated squared-ReLU feed-forward, YaRN.
#[test]
fn afm_reads_as_arceeconfig() {
    let c = read(&afm()).unwrap();
    assert_eq!(c.arch, Arch::Arcee);
    assert_eq!(
        (c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim),
        (20, 4, 128, 128)
    );
    assert!(!c.arch.gated_mlp() && !c.layer_norms() && !c.parallel_block());
    assert_eq!(c.activation, Activation::Relu2);
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Yarn { .. })));
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.tie_word_embeddings);
    assert_eq!(
        (c.rms_norm_eps, c.eos_token_ids.as_slice()),
        (1e-5, &[128_001][..])
    );
    // ArceeConfig's defaults: relu2, eps 1e-5, eos 128001, a key/value head per head.
    let bare = [
        "hidden_act",
        "rms_norm_eps",
        "eos_token_id",
        "num_key_value_heads",
    ]
    .iter()
    .fold(afm(), |v, k| without(v, k));
    let c = read(&bare).unwrap();
    assert_eq!(c.activation, Activation::Relu2);
    assert_eq!(
        (c.rms_norm_eps, c.eos_token_ids.as_slice()),
        (1e-5, &[128_001][..])
    );
    assert_eq!(c.num_kv_heads, 20);
    // ArceeMLP runs ACT2FN of `hidden_act`: the exact GELU is one this engine has.
    let gelu = read(&with(afm(), "hidden_act", json!("gelu"))).unwrap();
    assert_eq!(gelu.activation, Activation::GeluErf);
}

/// What ArceeConfig takes and the engine does not: another activation, a null one (ACT2FN
/// fails), RoPE on part of a head (Llama's attention fails on the shorter tables).
#[test]
fn arcee_refusals() {
    refused(
        &with(afm(), "hidden_act", json!("silu")),
        "hidden_act `silu`",
    );
    refused(
        &with(afm(), "hidden_act", json!(null)),
        "field `hidden_act`",
    );
    refused(
        &with(afm(), "partial_rotary_factor", json!(0.5)),
        "partial_rotary_factor 0.5",
    );
    // ArceeConfig's `validate_architecture`, whatever `head_dim` says.
    refused(
        &with(afm(), "num_attention_heads", json!(24)),
        "hidden_size 2560 must be a multiple of num_attention_heads 24",
    );
}

/// Minitron-8B: LayerNorms with biases, RoPE in halves on 64 of 128 dimensions, 48 x 128 = 6144
/// query rows in a hidden of 4096, squared ReLU, `norm_eps`, eos 3.
#[test]
fn minitron_reads_as_nemotronconfig() {
    let c = read(&minitron()).unwrap();
    assert_eq!(c.arch, Arch::Nemotron);
    assert_eq!(
        (c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim),
        (48, 8, 128, 64)
    );
    assert_eq!((c.q_dim(), c.hidden_size), (6144, 4096));
    assert!(c.layer_norms() && c.arch.norm_bias() && !c.rope_interleaved);
    assert!(!c.arch.gated_mlp() && !c.parallel_block());
    assert_eq!(c.activation, Activation::Relu2);
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.tie_word_embeddings);
    assert_eq!(
        (c.rms_norm_eps, c.eos_token_ids.as_slice()),
        (1e-5, &[3][..])
    );
    // `attention_bias` biases q, k, v and o (NemotronAttention), `mlp_bias` up and down.
    let biased = with(
        with(minitron(), "attention_bias", json!(true)),
        "mlp_bias",
        json!(true),
    );
    let c = read(&biased).unwrap();
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias);
    // NemotronConfig's defaults: half of each head rotated, eps 1e-5, eos 3; an RMSNorm key
    // is not its eps.
    let bare = [
        "partial_rotary_factor",
        "norm_eps",
        "eos_token_id",
        "head_dim",
    ]
    .iter()
    .fold(with(minitron(), "rms_norm_eps", json!(0.5)), |v, k| {
        without(v, k)
    });
    let c = read(&with(bare, "num_attention_heads", json!(32))).unwrap();
    assert_eq!((c.head_dim, c.rotary_dim), (128, 64));
    assert_eq!(
        (c.rms_norm_eps, c.eos_token_ids.as_slice()),
        (1e-5, &[3][..])
    );
    let eps = read(&with(minitron(), "norm_eps", json!(1e-6))).unwrap();
    assert_eq!(eps.rms_norm_eps, 1e-6);
}

/// Nulls NemotronConfig keeps and its modules then fail on: the rotated part, the key/value
/// heads, the activation.
#[test]
fn nemotron_refusals() {
    refused(
        &with(minitron(), "partial_rotary_factor", json!(null)),
        "partial_rotary_factor",
    );
    refused(
        &with(minitron(), "num_key_value_heads", json!(null)),
        "num_key_value_heads",
    );
    refused(
        &without(minitron(), "num_key_value_heads"),
        "missing field `num_key_value_heads`",
    );
    refused(
        &with(minitron(), "hidden_act", json!(null)),
        "field `hidden_act`",
    );
    refused(
        &with(minitron(), "partial_rotary_factor", json!(1.5)),
        "(0, 1]",
    );
}

/// A gated feed-forward with the squared ReLU, the exact GELU or xIELU is no family's: a Llama config
/// naming it is refused as it is read, and a configuration holding it (a GGUF's, built
/// otherwise) by the check every reader ends with.
#[test]
fn gated_relu2_is_refused() {
    let llama = json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100,
        "hidden_act": "relu2"});
    refused(&llama, "hidden_act `relu2`");
    let gated = read(&with(llama, "hidden_act", json!("silu"))).unwrap();
    for act in [Activation::Relu2, Activation::GeluErf, Activation::Xielu] {
        let c = ModelConfig {
            activation: act,
            ..gated.clone()
        };
        let e = c.validated(Path::new("m.gguf")).unwrap_err().to_string();
        assert!(
            e.contains("a gated feed-forward with the exact GELU, the squared ReLU or xIELU"),
            "{e}"
        );
    }
}

/// Jais2Config (Jais-2-8B's shape, the class's defaults): LayerNorms with biases, whole heads
/// rotated in halves, the squared ReLU ungated, biases on q/k/v/o and the feed-forward by
/// default, `layer_norm_eps` (an RMSNorm key is not its eps), an 8192-token context, eos 150024,
/// untied; a null activation refused.
#[test]
fn jais2_reads_as_jais2config() {
    let v = json!({"architectures": ["Jais2ForCausalLM"], "model_type": "jais2",
        "hidden_size": 3328, "intermediate_size": 26624, "num_attention_heads": 26,
        "num_hidden_layers": 32, "vocab_size": 150272, "rms_norm_eps": 0.5});
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Jais2);
    assert_eq!((c.num_kv_heads, c.head_dim, c.rotary_dim), (26, 128, 128));
    assert!(c.layer_norms() && c.arch.norm_bias() && !c.rope_interleaved);
    assert!(!c.arch.gated_mlp() && !c.parallel_block() && !c.tie_word_embeddings);
    assert_eq!(c.activation, Activation::Relu2);
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias);
    assert_eq!(
        (c.rms_norm_eps, c.max_position_embeddings, c.rope_theta),
        (1e-5, 8192, 1e4)
    );
    assert_eq!(c.eos_token_ids, [150_024]);
    let plain = with(
        with(v.clone(), "attention_bias", json!(false)),
        "mlp_bias",
        json!(false),
    );
    let c = read(&with(plain, "layer_norm_eps", json!(1e-6))).unwrap();
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(c.rms_norm_eps, 1e-6);
    refused(
        &with(v.clone(), "hidden_act", json!(null)),
        "field `hidden_act`",
    );
    refused(
        &with(v, "num_attention_heads", json!(24)),
        "hidden_size 3328 must be a multiple of num_attention_heads 24",
    );
}
