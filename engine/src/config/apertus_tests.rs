//! Apertus as transformers 5.25's ApertusConfig reads it: a config of Apertus-8B's shape, the
//! class's defaults (its RoPE settings above all), and what its modules fail on.

use serde_json::{json, Value};

use super::test_read::read;
use super::{Activation, Arch, ModelConfig, RopeScaling};

/// Apertus-8B-Instruct-2509's config (transformers 4's layout: `rope_scaling` and a top-level
/// `rope_theta`).
fn apertus_8b() -> Value {
    json!({"architectures": ["ApertusForCausalLM"], "model_type": "apertus",
        "attention_bias": false, "bos_token_id": 1, "eos_token_id": 68, "hidden_act": "xielu",
        "hidden_size": 4096, "intermediate_size": 21504, "max_position_embeddings": 65536,
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pad_token_id": 3, "rms_norm_eps": 1e-05, "rope_theta": 12000000,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": false, "vocab_size": 131072})
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn llama3(c: &ModelConfig) -> (f64, f64, f64, f64) {
    match &c.rope_scaling {
        Some(RopeScaling::Llama3(l)) => (
            l.factor,
            l.low_freq_factor,
            l.high_freq_factor,
            l.original_max_position_embeddings,
        ),
        other => panic!("not Llama 3's scaling: {other:?}"),
    }
}

/// Apertus-8B: GQA, per-head query/key norms, an ungated xIELU feed-forward, Llama 3's RoPE
/// scaling at base 12e6, no biases.
#[test]
fn apertus_8b_reads_as_apertusconfig() {
    let c = read(&apertus_8b()).unwrap();
    assert_eq!(c.arch, Arch::Apertus);
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (32, 8, 128));
    assert_eq!(
        (c.activation, c.arch.gated_mlp()),
        (Activation::Xielu, false)
    );
    assert!(c.qk_norm && !c.rope_interleaved && c.rotary_dim == 128);
    assert_eq!(c.qk_norm_widths(), (128, 128));
    assert_eq!((c.rope_theta, llama3(&c)), (12e6, (8.0, 1.0, 4.0, 8192.0)));
    assert!(!(c.qkv_bias || c.o_bias || c.mlp_bias || c.tie_word_embeddings));
    assert_eq!((c.eos_token_ids.clone(), c.rms_norm_eps), (vec![68], 1e-5));
}

/// No RoPE settings (absent or null): ApertusConfig's own dict, whose base wins over a
/// top-level `rope_theta`; a `rope_scaling` without a base takes the top-level one or 12e6.
#[test]
fn rope_defaults_are_apertusconfigs() {
    let bare = without(without(apertus_8b(), "rope_scaling"), "rope_theta");
    for v in [
        bare.clone(),
        json!({"rope_theta": 5e5, "rope_scaling": null, "rope_parameters": null}),
    ] {
        let mut cfg = bare.clone();
        cfg.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        let c = read(&cfg).unwrap();
        assert_eq!((c.rope_theta, llama3(&c)), (12e6, (8.0, 1.0, 4.0, 8192.0)));
    }
    let mut no_base = apertus_8b();
    no_base["rope_theta"] = json!(5e5);
    assert_eq!(read(&no_base).unwrap().rope_theta, 5e5);
    let c = read(&without(no_base, "rope_theta")).unwrap();
    assert_eq!(c.rope_theta, 12e6);
    // An empty `rope_parameters` is set (ApertusConfig fills in only None): default RoPE at the
    // top-level base, else 12e6; an empty `rope_scaling` is not.
    let mut empty = apertus_8b();
    empty.as_object_mut().unwrap().remove("rope_scaling");
    empty["rope_parameters"] = json!({});
    let c = read(&empty).unwrap();
    assert!(c.rope_scaling.is_none() && c.rope_theta == 12e6);
    empty["rope_theta"] = json!(500.0);
    assert_eq!(read(&empty).unwrap().rope_theta, 500.0);
    let mut unset = without(apertus_8b(), "rope_theta");
    unset["rope_scaling"] = json!({});
    assert_eq!(llama3(&read(&unset).unwrap()), (8.0, 1.0, 4.0, 8192.0));
    // Plain RoPE where the config says so.
    let mut plain = bare;
    plain["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e4});
    let c = read(&plain).unwrap();
    assert!(c.rope_scaling.is_none() && c.rope_theta == 1e4);
}

/// ApertusConfig's other defaults: key/value heads as query heads, eps 1e-5, eos 2, untied;
/// `attention_bias` biases q/k/v and o, never the MLP (ApertusMLP's linears have none).
#[test]
fn defaults_and_biases() {
    let mut v = apertus_8b();
    for k in [
        "num_key_value_heads",
        "rms_norm_eps",
        "eos_token_id",
        "tie_word_embeddings",
    ] {
        v = without(v, k);
    }
    v["attention_bias"] = json!(true);
    v["mlp_bias"] = json!(true);
    let c = read(&v).unwrap();
    assert_eq!((c.num_kv_heads, c.rms_norm_eps), (32, 1e-5));
    assert_eq!(c.eos_token_ids, vec![2]);
    assert!(c.qkv_bias && c.o_bias && !c.mlp_bias && !c.tie_word_embeddings);
}

/// Other activations ApertusMLP runs through ACT2FN, and what it cannot: a null (ACT2FN has
/// no None), SiLU ungated (not supported here), an unknown name; xIELU in another family; a
/// null `head_dim`, which ApertusAttention takes as the width.
#[test]
fn activations() {
    let mut v = apertus_8b();
    v["hidden_act"] = json!("relu2");
    assert_eq!(read(&v).unwrap().activation, Activation::Relu2);
    v["hidden_act"] = json!(null);
    let e = read(&v).unwrap_err().to_string();
    assert!(
        e.contains("field `hidden_act`: expected an activation's name"),
        "{e}"
    );
    v["hidden_act"] = json!("silu");
    let e = read(&v).unwrap_err().to_string();
    assert!(
        e.contains("hidden_act `silu` (supported for this family: xielu, relu2"),
        "{e}"
    );
    let mut null_width = apertus_8b();
    null_width["head_dim"] = json!(null);
    let e = read(&null_width).unwrap_err().to_string();
    assert!(
        e.contains("field `head_dim`: expected a positive integer (null is no width"),
        "{e}"
    );
    let mut arcee = apertus_8b();
    arcee["model_type"] = json!("arcee");
    let e = read(&arcee).unwrap_err().to_string();
    assert!(e.contains("hidden_act `xielu`"), "{e}");
}

/// Apertus 1.5's text config (`apertus1p5_text`), its head pruned: `output_vocab_size` logits,
/// `vocab_size` embedding rows; unpruned where null or equal; refused as
/// Apertus1p5TextConfig refuses it, or tied.
#[test]
fn apertus1p5_pruned_head() {
    let mut v = apertus_8b();
    v["model_type"] = json!("apertus1p5_text");
    v["vocab_size"] = json!(266_752);
    v["output_vocab_size"] = json!(131_072);
    let c = read(&v).unwrap();
    assert_eq!(c.arch, Arch::Apertus);
    assert_eq!((c.vocab_size, c.embed_rows()), (131_072, 266_752));
    for (out, rows) in [(json!(null), None), (json!(266_752), None)] {
        v["output_vocab_size"] = out;
        let c = read(&v).unwrap();
        assert_eq!((c.vocab_size, c.input_vocab), (266_752, rows));
    }
    for bad in [json!(0), json!(266_753), json!("x")] {
        v["output_vocab_size"] = bad;
        assert!(read(&v).is_err());
    }
    v["output_vocab_size"] = json!(131_072);
    v["tie_word_embeddings"] = json!(true);
    let e = read(&v).unwrap_err().to_string();
    assert!(e.contains("pruned head"), "{e}");
    // The first Apertus's config class reads no such key.
    let mut v = apertus_8b();
    v["output_vocab_size"] = json!(1000);
    assert_eq!(read(&v).unwrap().vocab_size, 131_072);
    // The text-and-media wrapper holds the same text model.
    let mut text = apertus_8b();
    text["model_type"] = json!("apertus1p5_text");
    text["vocab_size"] = json!(266_752);
    text["output_vocab_size"] = json!(131_072);
    let w = json!({"architectures": ["Apertus1p5ForConditionalGeneration"],
        "model_type": "apertus1p5", "text_config": text, "tie_word_embeddings": false});
    let c = read(&w).unwrap();
    assert_eq!(
        (c.arch, c.vocab_size, c.embed_rows()),
        (Arch::Apertus, 131_072, 266_752)
    );
}
