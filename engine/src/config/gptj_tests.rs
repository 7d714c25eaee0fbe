//! GPT-J as transformers 5.25's GPTJConfig reads it: EleutherAI/gpt-j-6b's config, its Llama
//! aliases, and the rotations its attention fails on.

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Activation, Arch, ModelConfig};

/// `(hidden, heads, layers, context)` as read.
fn sizes(c: &ModelConfig) -> (usize, usize, usize, usize) {
    (
        c.hidden_size,
        c.num_heads,
        c.num_layers,
        c.max_position_embeddings,
    )
}

/// EleutherAI/gpt-j-6b's config.json (its keys that transformers reads).
fn gpt_j_6b() -> Value {
    json!({"activation_function": "gelu_new", "architectures": ["GPTJForCausalLM"],
        "bos_token_id": 50256, "eos_token_id": 50256, "layer_norm_epsilon": 1e-05,
        "model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_inner": null, "n_layer": 28,
        "n_positions": 2048, "rotary": true, "rotary_dim": 64, "tie_word_embeddings": false,
        "vocab_size": 50400})
}

/// GPT-J-6B: 16 heads of 256, RoPE in adjacent pairs on the first 64 dimensions of each at
/// base 10000 (whatever RoPE keys the file has), an MLP 4 x n_embd with biases, no attention
/// biases, a head bias, parallel blocks on one norm, GELU's tanh form, untied.
#[test]
fn gpt_j_6b_reads_as_gptjconfig() {
    let c = read(&gpt_j_6b()).unwrap();
    assert_eq!(c.arch, Arch::GptJ);
    assert_eq!(
        (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads),
        (4096, 28, 16, 16)
    );
    assert_eq!(
        (c.head_dim, c.rotary_dim, c.intermediate_size),
        (256, 64, 16384)
    );
    assert!(c.rope_interleaved && c.rope_scaling.is_none());
    assert_eq!((c.rope_theta, c.rms_norm_eps), (1e4, 1e-5));
    assert!(c.layer_norms() && c.parallel_block() && !c.parallel_norms);
    assert!(!c.qkv_bias && !c.o_bias && c.mlp_bias && c.arch.head_bias());
    assert!(!c.tie_word_embeddings && !c.arch.gated_mlp());
    assert_eq!(c.activation, Activation::GeluTanh);
    assert_eq!(
        (c.max_position_embeddings, c.eos_token_ids.as_slice()),
        (2048, &[50256][..])
    );
    assert_eq!(c.norm_names().attn_in, "ln_1");
    // RoPE keys are not GPT-J's: its rotation stays at base 10000, unscaled.
    let mut v = gpt_j_6b();
    v["rope_theta"] = 5e5.into();
    v["rope_scaling"] = json!({"rope_type": "linear", "factor": 4.0});
    let c = read(&v).unwrap();
    assert!(c.rope_theta == 1e4 && c.rope_scaling.is_none());
}

/// The Llama names stand in for GPT-J's (its `attribute_map`); `n_inner`, the activation and a
/// whole-head rotation as read.
#[test]
fn gptj_aliases_and_widths() {
    let v = json!({"model_type": "gptj", "hidden_size": 64, "num_attention_heads": 4,
        "num_hidden_layers": 2, "max_position_embeddings": 256, "vocab_size": 256,
        "rotary_dim": 16, "n_inner": 96, "activation_function": "gelu"});
    let c = read(&v).unwrap();
    assert_eq!(sizes(&c), (64, 4, 2, 256));
    assert_eq!((c.rotary_dim, c.intermediate_size), (16, 96));
    assert_eq!(c.activation, Activation::GeluErf);
    // Both names: the Llama one wins, as in transformers (its attribute_map sets it last).
    let mut both = v.clone();
    for (own, n) in [
        ("n_embd", 128),
        ("n_head", 8),
        ("n_layer", 4),
        ("n_positions", 512),
    ] {
        both[own] = n.into();
    }
    assert_eq!(sizes(&read(&both).unwrap()), (64, 4, 2, 256));
}

/// The rotations GPT-J's attention fails on, a null `rotary_dim` (GPTJConfig's typed field),
/// widths that do not divide, and missing keys are refused, naming GPT-J's keys.
#[test]
fn gptj_refusals_name_their_keys() {
    for r in [0, 7, 9, 512] {
        let mut v = gpt_j_6b();
        v["rotary_dim"] = r.into();
        refused(&v, &format!("field `rotary_dim` = {r}: expected an even number from 2 to the head's 256 dimensions"));
    }
    let mut v = gpt_j_6b();
    v["rotary_dim"] = Value::Null;
    refused(&v, "field `rotary_dim`: expected a positive even integer");
    let mut v = gpt_j_6b();
    v.as_object_mut().unwrap().remove("rotary_dim");
    v["n_embd"] = 512.into();
    v["n_head"] = 16.into();
    refused(
        &v,
        "field `rotary_dim` = 64: expected an even number from 2 to the head's 32",
    );
    let mut v = gpt_j_6b();
    v["n_embd"] = 4097.into();
    refused(&v, "n_embd 4097 must be a multiple of n_head 16");
    let mut v = gpt_j_6b();
    v.as_object_mut().unwrap().remove("n_layer");
    refused(&v, "missing field `n_layer`");
    let mut v = gpt_j_6b();
    v["activation_function"] = Value::Null;
    refused(&v, "field `activation_function`");
    v["activation_function"] = "relu".into();
    refused(&v, "activation_function `relu`");
    let mut v = gpt_j_6b();
    v["head_dim"] = 128.into();
    refused(
        &v,
        "GPT-J's attention heads are hidden_size / num_attention_heads = 256",
    );
}
