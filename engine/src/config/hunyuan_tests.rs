//! HunYuan dense as transformers 5.25's HunYuanDenseV1Config and its rotary embedding read it:
//! a Hub config of Hunyuan-7B-Instruct's shape (transformers 4's `rope_scaling` form), NTK-alpha
//! RoPE and what is refused.

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Arch, RopeScaling};

/// A config of Hunyuan-7B-Instruct's shape, as the Hub's file writes it.
fn hunyuan_7b() -> Value {
    json!({"architectures": ["HunYuanDenseV1ForCausalLM"], "model_type": "hunyuan_v1_dense",
        "attention_bias": false, "attention_head_dim": 128, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768,
        "mlp_bias": false, "norm_type": "rms", "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": {"alpha": 1000.0, "beta_fast": 32, "beta_slow": 1, "factor": 1.0,
            "mscale": 1.0, "mscale_all_dim": 1.0, "type": "dynamic"},
        "tie_word_embeddings": true, "use_cla": false, "use_qk_norm": true, "vocab_size": 128167})
}

/// The alpha base, `theta * alpha^(d / (d - 2))`, with no scaling beside it; query/key norms on
/// each head; the keys transformers ignores (`use_qk_norm`, `attention_head_dim`) ignored.
#[test]
fn ntk_alpha_base_and_head_norms() {
    let c = read(&hunyuan_7b()).unwrap();
    assert_eq!(c.arch, Arch::Hunyuan);
    assert_eq!(c.rope_theta, 1e4 * 1000f64.powf(128.0 / 126.0));
    assert!(c.rope_scaling.is_none(), "{:?}", c.rope_scaling);
    assert!(c.qk_norm && !c.qk_norm_per_head && c.arch.qk_norm_after_rope());
    assert_eq!(c.qk_norm_widths(), (128, 128));
    assert_eq!(
        (c.num_kv_heads, c.head_dim, c.context_limit()),
        (8, 128, 32768)
    );
    assert!(c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    // transformers 5's form reads the same.
    let mut v = hunyuan_7b();
    v.as_object_mut().unwrap().remove("rope_scaling");
    v["rope_parameters"] =
        json!({"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0, "factor": 1.0});
    assert_eq!(read(&v).unwrap().rope_theta, c.rope_theta);
    // HunYuanDenseV1MLP has no biases whatever `mlp_bias` says; `attention_bias` biases o too.
    v["mlp_bias"] = json!(true);
    v["attention_bias"] = json!(true);
    let b = read(&v).unwrap();
    assert!(b.qkv_bias && b.o_bias && !b.mlp_bias);
}

/// `dynamic` without an alpha (or with 0, which transformers takes as none) is dynamic NTK at
/// the config's own base; other types are read as for every family.
#[test]
fn without_alpha() {
    let mut v = hunyuan_7b();
    v["rope_scaling"]["alpha"] = json!(0.0);
    let c = read(&v).unwrap();
    assert_eq!(c.rope_theta, 1e4);
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Dynamic { .. })));
    v["rope_scaling"].as_object_mut().unwrap().remove("alpha");
    assert!(matches!(
        read(&v).unwrap().rope_scaling,
        Some(RopeScaling::Dynamic { .. })
    ));
    v["rope_scaling"] = json!({"type": "linear", "factor": 2.0, "alpha": 1000.0});
    let c = read(&v).unwrap();
    assert_eq!(c.rope_theta, 1e4);
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Linear { .. })));
}

/// HunYuanDenseV1Config's defaults for a bare config: untied, eps 1e-5, 2048 positions, plain
/// RoPE at 10000, every query head its own key/value head.
#[test]
fn config_defaults() {
    let c = read(&json!({"model_type": "hunyuan_v1_dense", "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256}))
    .unwrap();
    assert_eq!(
        (
            c.num_kv_heads,
            c.head_dim,
            c.rms_norm_eps,
            c.context_limit()
        ),
        (4, 16, 1e-5, 2048)
    );
    assert!(!c.tie_word_embeddings && c.rope_scaling.is_none() && c.rope_theta == 1e4);
}

#[test]
fn refusals() {
    for (alpha, found) in [
        (json!(-2.0), "-2.0"),
        (json!("1000"), "\"1000\""),
        (json!([1000]), "[1000]"),
    ] {
        let mut v = hunyuan_7b();
        v["rope_scaling"]["alpha"] = alpha;
        refused(
            &v,
            &format!("RoPE setting `alpha`: expected a finite number > 0, found {found}"),
        );
    }
    let mut v = hunyuan_7b();
    v["head_dim"] = json!(2);
    v["hidden_size"] = json!(64);
    refused(&v, "NTK-alpha RoPE needs a head_dim above 2");
}

/// An alpha whose base overflows, or vanishes, is refused naming the alpha.
#[test]
fn alpha_without_a_base() {
    for alpha in [1e300, 1e-300] {
        let mut v = hunyuan_7b();
        v["rope_scaling"]["alpha"] = json!(alpha);
        refused(
            &v,
            &format!("RoPE setting `alpha` {alpha}: the RoPE base it makes"),
        );
    }
}

/// transformers' value of the alpha base of a Hub config (`10000 * 1000 ** (128 / 126)` in
/// Python), and `factor` required as its validation requires it.
#[test]
fn alpha_base_as_python_computes_it() {
    let c = read(&hunyuan_7b()).unwrap();
    assert!(
        (c.rope_theta / 11158839.92507748 - 1.0).abs() < 1e-14,
        "{}",
        c.rope_theta
    );
    let mut v = hunyuan_7b();
    v["rope_scaling"].as_object_mut().unwrap().remove("factor");
    refused(&v, "RoPE settings of type `dynamic` need a `factor`");
}
