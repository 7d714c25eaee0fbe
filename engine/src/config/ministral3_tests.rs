//! Ministral 3 as transformers 5.25's Ministral3Config and Mistral3Config read it: a text-and-
//! image config of Ministral-3-8B's shape, the class's defaults, Llama 4's attention temperature
//! ending the context, and what is refused.

use serde_json::{json, Value};

use super::test_read::{read, refused};
use super::{Arch, AttnTemperature, RopeScaling};

/// A `mistral3` config of Ministral-3-8B-Instruct-2512's shape: the text model's settings in
/// `text_config`, a vision tower beside it.
fn ministral3_8b() -> Value {
    json!({"architectures": ["Mistral3ForConditionalGeneration"], "model_type": "mistral3",
        "image_token_index": 10, "projector_hidden_act": "gelu", "spatial_merge_size": 2,
        "text_config": {"model_type": "ministral3", "head_dim": 128, "hidden_act": "silu",
            "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 262144,
            "num_attention_heads": 32, "num_hidden_layers": 34, "num_key_value_heads": 8,
            "rms_norm_eps": 1e-05, "sliding_window": null, "vocab_size": 131072,
            "rope_parameters": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 16.0,
                "llama_4_scaling_beta": 0.1, "mscale": 1.0, "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 16384, "rope_theta": 1000000.0,
                "rope_type": "yarn", "type": "yarn"}},
        "vision_config": {"model_type": "pixtral", "hidden_size": 1024}, "vision_feature_layer": -1})
}

fn text(v: &Value) -> Value {
    v["text_config"].clone()
}

#[test]
fn the_text_model_of_a_text_and_image_config() {
    let c = read(&ministral3_8b()).unwrap();
    assert_eq!(c.arch, Arch::Ministral3);
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim
        ),
        (34, 4096, 32, 8, 128)
    );
    assert_eq!(c.attention_window, vec![None; 34]);
    assert!(!c.tie_word_embeddings && !c.qkv_bias);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );
    let Some(RopeScaling::Yarn(y)) = &c.rope_scaling else {
        panic!("{:?}", c.rope_scaling)
    };
    // mscale / mscale_all_dim = 1: the cos/sin factor is 1, not YaRN's own 1 + 0.1 ln 16.
    assert_eq!(
        (
            y.factor,
            y.original_max_position_embeddings,
            y.attention_factor
        ),
        (16.0, 16384.0, 1.0)
    );
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(
        c.attn_temperature,
        Some(AttnTemperature {
            beta: 0.1,
            step: 16384
        })
    );
    // The RoPE settings reach 262144 positions, the context.
    assert_eq!(c.context_limit(), 262_144);
    // The text config alone reads the same.
    let t = read(&text(&ministral3_8b())).unwrap();
    assert_eq!(
        (t.arch, t.context_limit(), t.attn_temperature),
        (c.arch, 262_144, c.attn_temperature)
    );
}

/// Ministral3Config's defaults: a bare config is Ministral-3-8B's text model, YaRN and beta 0.1
/// included; a window applies in every layer where set (MistralConfig's 4096 is not its default).
#[test]
fn ministral3_config_defaults() {
    let c = read(&json!({"model_type": "ministral3"})).unwrap();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.intermediate_size,
            c.vocab_size
        ),
        (34, 4096, 14336, 131_072)
    );
    assert_eq!((c.num_kv_heads, c.head_dim, c.rms_norm_eps), (8, 128, 1e-5));
    assert_eq!(c.attention_window, vec![None; 34]);
    assert_eq!(
        c.attn_temperature,
        Some(AttnTemperature {
            beta: 0.1,
            step: 16384
        })
    );
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Yarn(_))));
    let c =
        read(&json!({"model_type": "ministral3", "num_hidden_layers": 3, "sliding_window": 512}))
            .unwrap();
    assert_eq!(c.attention_window, vec![Some(512); 3]);
    // Mistral Small 3.1's wrapper holds a `mistral` text model (Mistral3Config's default).
    let mut small = ministral3_8b();
    small["text_config"] = json!({"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "sliding_window": null});
    let c = read(&small).unwrap();
    assert_eq!(
        (c.arch, c.attn_temperature, c.context_limit()),
        (Arch::Mistral, None, 131_072)
    );
}

/// Beta 0: the factor is 1 everywhere, and the context is the RoPE settings'.
#[test]
fn no_temperature_at_beta_zero() {
    let mut v = text(&ministral3_8b());
    v["rope_parameters"]["llama_4_scaling_beta"] = json!(0.0);
    let c = read(&v).unwrap();
    assert_eq!((c.attn_temperature, c.context_limit()), (None, 262_144));
    // Its own original context where the settings give one without YaRN.
    let mut v = text(&ministral3_8b());
    v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e6, "llama_4_scaling_beta": 0.1,
        "original_max_position_embeddings": 8192});
    let c = read(&v).unwrap();
    assert_eq!(c.attn_temperature.map(|t| t.step), Some(8192));
    // Written as a float, as transformers takes it.
    v["rope_parameters"]["original_max_position_embeddings"] = json!(8192.0);
    assert_eq!(
        read(&v).unwrap().attn_temperature.map(|t| t.step),
        Some(8192)
    );
}

/// The step is the pretraining context transformers' standardized RoPE settings hold, the one
/// the scaling rotates by: a top-level `original_max_position_embeddings` over the settings'
/// own, and Llama 3's scaling's (`max_position_embeddings` where none is given).
#[test]
fn the_step_is_the_scalings_original_context() {
    let mut v = text(&ministral3_8b());
    v["original_max_position_embeddings"] = json!(1000);
    let c = read(&v).unwrap();
    let Some(RopeScaling::Yarn(y)) = &c.rope_scaling else {
        panic!("{:?}", c.rope_scaling)
    };
    assert_eq!(y.original_max_position_embeddings, 1000.0);
    assert_eq!(c.attn_temperature.map(|t| t.step), Some(1000));
    let mut v = text(&ministral3_8b());
    v["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 1e6, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "llama_4_scaling_beta": 0.1});
    let c = read(&v).unwrap();
    assert_eq!(c.attn_temperature.map(|t| t.step), Some(262_144));
    // Ministral3Model reads no `layer_types`: the window applies in every layer.
    let mut v = text(&ministral3_8b());
    v["num_hidden_layers"] = json!(2);
    v["sliding_window"] = json!(512);
    v["layer_types"] = json!(["full_attention", "sliding_attention"]);
    assert_eq!(read(&v).unwrap().attention_window, [Some(512), Some(512)]);
}

/// The factor, as transformers' `get_llama_4_attn_scale` computes it: 1 below the step, then
/// `1 + beta ln(1 + floor(pos / step))`; a step of 1 scales from position 1 on.
#[test]
fn the_factor_by_position() {
    let t = AttnTemperature {
        beta: 0.1,
        step: 16384,
    };
    assert_eq!([t.factor(0), t.factor(16383)], [1.0, 1.0]);
    assert_eq!(t.factor(16384), 1.0 + 0.1 * 2f64.ln());
    assert_eq!(t.factor(3 * 16384 - 1), 1.0 + 0.1 * 3f64.ln());
    assert_eq!(t.factor(262_143), 1.0 + 0.1 * 16f64.ln());
    let one = AttnTemperature { beta: 0.5, step: 1 };
    assert_eq!([one.factor(0), one.factor(1)], [1.0, 1.0 + 0.5 * 2f64.ln()]);
}

/// What transformers' Ministral3Attention fails on, and what this engine does not read.
#[test]
fn refusals() {
    let mut v = text(&ministral3_8b());
    v["rope_parameters"]
        .as_object_mut()
        .unwrap()
        .remove("llama_4_scaling_beta");
    refused(&v, "needs `llama_4_scaling_beta`");
    let mut v = text(&ministral3_8b());
    v["rope_parameters"]["llama_4_scaling_beta"] = json!("0.1");
    refused(
        &v,
        "field `llama_4_scaling_beta`: expected a finite number, found \"0.1\"",
    );
    let mut v = text(&ministral3_8b());
    v["rope_parameters"] =
        json!({"rope_type": "default", "rope_theta": 1e6, "llama_4_scaling_beta": 0.1});
    refused(&v, "needs `original_max_position_embeddings`");
    let mut v = text(&ministral3_8b());
    v["rope_parameters"]["original_max_position_embeddings"] = json!(16384.5);
    refused(
        &v,
        "the RoPE scaling's original context 16384.5 is not a whole number",
    );
    let mut v = text(&ministral3_8b());
    v["rope_parameters"]["original_max_position_embeddings"] = json!(0);
    refused(
        &v,
        "`original_max_position_embeddings` is 0; expected a finite number > 0",
    );
    v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e6, "llama_4_scaling_beta": 0.1,
        "original_max_position_embeddings": 0});
    refused(&v, "expected a positive whole number, found 0");
    let mut v = ministral3_8b();
    v["text_config"]["model_type"] = json!("llama");
    refused(
        &v,
        "`text_config.model_type` `llama` in a mistral3 config (expected mistral or ministral3)",
    );
    let mut v = ministral3_8b();
    v.as_object_mut().unwrap().remove("text_config");
    refused(
        &v,
        "model_type `mistral3` (Mistral3ForConditionalGeneration) needs a `text_config` object",
    );
    // The wrapper's quantization applies to the text model: the FP8 releases' is read (the
    // loader dequantizes), another method is refused.
    let mut v = ministral3_8b();
    v["quantization_config"] = json!({"quant_method": "fp8", "weight_block_size": null,
                                      "activation_scheme": "static"});
    let quant = read(&v).unwrap().quantization.unwrap();
    assert_eq!(quant.block, None);
    v["quantization_config"] = json!({"quant_method": "awq", "bits": 4});
    refused(
        &v,
        "a quantized checkpoint (`quantization_config`, quant_method `awq`)",
    );
}
