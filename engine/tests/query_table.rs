//! The queries' RoPE table of a model with Llama 4's attention temperature (Ministral 3's):
//! the keys' table below the step, each row times its position's factor from there on, the
//! pass-through pairs of partial rotary included. End to end (logits past two steps against
//! transformers' float64): the golden runs' `tiny_ministral3`.

use std::path::Path;

use dlp_engine::config::AttnTemperature;
use dlp_engine::rope_table::{cos_sin_table, query_table};
use dlp_engine::ModelConfig;
use serde_json::json;

fn config(rope: serde_json::Value, extra: serde_json::Value) -> ModelConfig {
    let mut v = json!({"model_type": "ministral3", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "vocab_size": 256, "max_position_embeddings": 1024, "rope_parameters": rope});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    ModelConfig::from_hf_json(&v, Path::new("config.json")).unwrap()
}

const YARN: &str = r#"{"rope_type": "yarn", "rope_theta": 1e6, "factor": 16.0,
    "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
    "mscale": 1.0, "mscale_all_dim": 0.5, "llama_4_scaling_beta": 0.1}"#;

#[test]
fn rows_from_the_step_on_are_scaled_by_their_factor() {
    let c = config(serde_json::from_str(YARN).unwrap(), json!({}));
    let t = c.attn_temperature.unwrap();
    assert_eq!((t.step, t.beta), (64, 0.1));
    // No position reaches the step: the keys' table serves the queries.
    assert!(query_table(&c, &cos_sin_table(&c, 64)).is_none());
    let keys = cos_sin_table(&c, 200);
    let queries = query_table(&c, &keys).unwrap();
    let row = 16; // head_dim / 2 pairs of two
    assert_eq!(queries.len(), keys.len());
    assert_eq!(queries[..64 * row], keys[..64 * row], "below the step");
    let mut scaled = 0;
    for p in 64..200 {
        let f = t.factor(p);
        assert!(f > 1.0, "position {p}: {f}");
        for i in p * row..(p + 1) * row {
            // One rounding of the f64 product each way: within 2 ulps of the keys' value x f.
            let want = f64::from(keys[i]) * f;
            let err = (f64::from(queries[i]) - want).abs();
            assert!(
                err <= 2.0 * f64::from(f32::EPSILON) * want.abs() + 1e-30,
                "{p} {i}"
            );
            scaled += usize::from(queries[i] != keys[i]);
        }
    }
    assert!(scaled > 2000, "{scaled} values moved");
    // No temperature at beta 0.
    let mut rope: serde_json::Value = serde_json::from_str(YARN).unwrap();
    rope["llama_4_scaling_beta"] = json!(0.0);
    let c = config(rope, json!({}));
    assert!(query_table(&c, &cos_sin_table(&c, 200)).is_none());
}

/// RoPE on part of each head (no family with a temperature has it, but the table serves any):
/// the pairs past the rotated ones pass a query through scaled, (factor, 0), where the keys'
/// pass it through as it is, (1, 0).
#[test]
fn pass_through_pairs_carry_the_factor() {
    let v = json!({"model_type": "phi3", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 256, "max_position_embeddings": 1024, "partial_rotary_factor": 0.5});
    let mut c = ModelConfig::from_hf_json(&v, Path::new("config.json")).unwrap();
    assert_eq!((c.head_dim, c.rotary_dim), (16, 8));
    c.attn_temperature = Some(AttnTemperature { beta: 0.5, step: 8 });
    let keys = cos_sin_table(&c, 20);
    let queries = query_table(&c, &keys).unwrap();
    let p = 17; // ⌊17 / 8⌋ = 2
    let f = (1.0 + 0.5 * 3f64.ln()) as f32;
    let (k, q) = (&keys[p * 16..(p + 1) * 16], &queries[p * 16..(p + 1) * 16]);
    assert_eq!(&k[8..], &[1.0, 0.0].repeat(4)[..]);
    assert_eq!(&q[8..], &[f, 0.0].repeat(4)[..]);
}
