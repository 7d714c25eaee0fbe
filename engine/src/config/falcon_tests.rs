//! Falcon as transformers 5.25's FalconConfig and FalconDecoderLayer read it: the Hub's
//! Falcon-7B, Falcon-40B and Falcon2-11B configs, and the layouts refused.

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Activation, Arch};

/// tiiuae/falcon-7b's config.json (transformers 4.27's keys).
fn falcon_7b() -> Value {
    json!({"alibi": false, "apply_residual_connection_post_layernorm": false,
        "architectures": ["FalconForCausalLM"], "attention_dropout": 0.0, "bias": false,
        "bos_token_id": 11, "eos_token_id": 11, "hidden_dropout": 0.0, "hidden_size": 4544,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "falcon",
        "multi_query": true, "new_decoder_architecture": false, "num_attention_heads": 71,
        "num_hidden_layers": 32, "parallel_attn": true, "torch_dtype": "bfloat16",
        "use_cache": true, "vocab_size": 65024})
}

/// Falcon-7B: 71 heads of 64 over one key/value head (`multi_query`), one norm read by attention
/// and the feed-forward side by side, an MLP 4 x hidden, the exact GELU, no biases, tied, RoPE
/// over whole heads at 10000, 2048 positions, `<|endoftext|>` (11) ends.
#[test]
fn falcon_7b_reads_as_falconconfig() {
    let c = read(&falcon_7b()).unwrap();
    assert_eq!(c.arch, Arch::Falcon);
    assert_eq!(
        (c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim),
        (71, 1, 64, 64)
    );
    assert_eq!(c.intermediate_size, 4 * 4544);
    assert!(c.parallel_block() && !c.parallel_norms && c.layer_norms());
    assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.arch.gated_mlp());
    assert!(c.tie_word_embeddings && c.attention_window.iter().all(Option::is_none));
    assert_eq!(c.activation, Activation::GeluErf);
    assert_eq!((c.rope_theta, c.rms_norm_eps), (1e4, 1e-5));
    assert_eq!(
        (c.max_position_embeddings, c.eos_token_ids.as_slice()),
        (2048, &[11][..])
    );
    let names = c.norm_names();
    assert_eq!(names.attn_in, "input_layernorm");
}

/// Falcon-40B (`new_decoder_architecture`, 8 key/value heads, `ln_attn` and `ln_mlp`) and
/// Falcon2-11B (the same with `num_ln_in_parallel_attn` 1: one norm, a RoPE base of its own);
/// without `multi_query` or the new architecture, a key/value head per head; `n_embed`,
/// `ffn_hidden_size`, `bias` and `activation` as read.
#[test]
fn falcon_layouts_read_as_falcondecoderlayer() {
    let mut v = falcon_7b();
    v["hidden_size"] = 8192.into();
    v["num_attention_heads"] = 128.into();
    v["num_kv_heads"] = 8.into();
    v["new_decoder_architecture"] = true.into();
    v["num_hidden_layers"] = 60.into();
    let c = read(&v).unwrap();
    assert_eq!((c.num_kv_heads, c.head_dim), (8, 64));
    assert!(c.parallel_block() && c.parallel_norms);
    let names = c.norm_names();
    assert_eq!((names.attn_in, names.ffn_in), ("ln_attn", "ln_mlp"));
    // Falcon2-11B.
    v["num_ln_in_parallel_attn"] = 1.into();
    v["rope_theta"] = 500042.into();
    v["max_position_embeddings"] = 8192.into();
    let c = read(&v).unwrap();
    assert!(c.parallel_block() && !c.parallel_norms);
    assert_eq!((c.rope_theta, c.max_position_embeddings), (500042.0, 8192));
    assert_eq!(c.norm_names().attn_in, "input_layernorm");
    // Neither multi-query nor new: a key/value head per head, sequential without parallel_attn.
    let mut v = falcon_7b();
    v["multi_query"] = false.into();
    v["parallel_attn"] = false.into();
    v["bias"] = true.into();
    v["activation"] = "gelu_pytorch_tanh".into();
    v["ffn_hidden_size"] = 1000.into();
    v["n_embed"] = 142.into();
    v["tie_word_embeddings"] = false.into();
    let c = read(&v).unwrap();
    assert_eq!((c.hidden_size, c.num_kv_heads, c.head_dim), (142, 71, 2));
    assert!(!c.parallel_block() && !c.parallel_norms && !c.tie_word_embeddings);
    assert!(c.qkv_bias && c.o_bias && c.mlp_bias);
    assert_eq!(
        (c.intermediate_size, c.activation),
        (1000, Activation::GeluTanh)
    );
    // Nulls are false, as Python tests them: multi_query null is no multi-query.
    let mut v = falcon_7b();
    v["multi_query"] = Value::Null;
    assert_eq!(read(&v).unwrap().num_kv_heads, 71);
    // Without either, a count that repeats each key/value head once runs (transformers'
    // repeat by 71 / 36 = 1); with multi-query alone, the count is not read at all.
    v["num_kv_heads"] = 36.into();
    assert_eq!(read(&v).unwrap().num_kv_heads, 71);
    let mut v = falcon_7b();
    v["num_kv_heads"] = 0.into();
    assert_eq!(read(&v).unwrap().num_kv_heads, 1);
}

/// ALiBi and the layouts FalconDecoderLayer builds and then fails on are refused, naming the
/// keys; so are key/value heads that do not fit and widths that do not divide.
#[test]
fn falcon_refusals_name_their_keys() {
    let mut v = falcon_7b();
    v["alibi"] = true.into();
    refused(&v, "`alibi` true");
    let mut v = falcon_7b();
    v["new_decoder_architecture"] = true.into();
    v["parallel_attn"] = false.into();
    refused(&v, "`new_decoder_architecture` without `parallel_attn`");
    let mut v = falcon_7b();
    v["num_ln_in_parallel_attn"] = 2.into();
    refused(
        &v,
        "`num_ln_in_parallel_attn` 2 needs `new_decoder_architecture`",
    );
    let mut v = falcon_7b();
    v["new_decoder_architecture"] = true.into();
    v["num_ln_in_parallel_attn"] = 3.into();
    refused(&v, "field `num_ln_in_parallel_attn` = 3");
    v["num_ln_in_parallel_attn"] = 1.into();
    v["num_kv_heads"] = 2.into();
    refused(&v, "num_kv_heads 2 must divide num_attention_heads 71");
    let mut v = falcon_7b();
    v["multi_query"] = false.into();
    v["num_kv_heads"] = 1.into();
    refused(
        &v,
        "num_kv_heads 1 without multi_query or new_decoder_architecture",
    );
    let mut v = falcon_7b();
    v["hidden_size"] = 4545.into();
    refused(
        &v,
        "hidden_size 4545 must be a multiple of num_attention_heads 71",
    );
    let mut v = falcon_7b();
    v["activation"] = "relu".into();
    refused(&v, "activation `relu`");
    v["activation"] = Value::Null;
    refused(&v, "field `activation`");
    let mut v = falcon_7b();
    v["layer_norm_epsilon"] = Value::Null;
    refused(&v, "field `layer_norm_epsilon`");
    let mut v = falcon_7b();
    v["head_dim"] = 32.into();
    refused(
        &v,
        "Falcon's attention heads are hidden_size / num_attention_heads = 64",
    );
    let mut v = falcon_7b();
    v["parallel_attn"] = "yes".into();
    refused(&v, "field `parallel_attn`: expected true or false");
}
