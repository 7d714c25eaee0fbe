//! PEFT settings and tensors that make an adapter other than plain LoRA, or leave it
//! ambiguous: refused with the setting or tensors named (they had loaded as plain LoRA).

use super::*;

#[test]
fn peft_variants_and_malformed_patterns_are_refused() {
    let Some((_, c)) = cfg("tiny-llama") else {
        return;
    };
    use serde_json::json;
    let base_changing = "path_initial_model_for_weight_conversion";
    let cases = [
        ("alora_invocation_tokens", json!([5, 6]), "activated LoRA"),
        (
            "layer_replication",
            json!([[0, 2], [1, 2]]),
            "replicated layers",
        ),
        (
            "target_parameters",
            json!(["mlp.experts"]),
            "LoRA on parameters",
        ),
        ("trainable_token_indices", json!([3]), "embedding rows"),
        ("arrow_config", json!({"top_k": 2}), "Arrow"),
        ("monteclora_config", json!({"n": 4}), "MonteCLoRA"),
        ("init_lora_weights", json!("pissa"), base_changing),
        ("init_lora_weights", json!("pissa_niter_4"), base_changing),
        (
            "init_lora_weights",
            json!("loftq"),
            "a LoftQ adapter belongs with the base model",
        ),
        ("init_lora_weights", json!("OLoRA"), base_changing),
        ("init_lora_weights", json!("corda_v2"), base_changing),
        (
            "init_lora_weights",
            json!("some_new_method"),
            "\"some_new_method\" is not a method this loader knows",
        ),
        (
            "use_bdlora",
            json!({"lora_a_blocks": 2}),
            "block-diagonal LoRA",
        ),
        ("init_lora_weights", json!("olora"), base_changing),
        (
            "init_lora_weights",
            json!(3),
            "expected true, false or a method name",
        ),
        (
            "alpha_pattern",
            json!([["q_proj", 32]]),
            "field `alpha_pattern`: expected an object",
        ),
        ("rank_pattern", json!("q_proj"), "field `rank_pattern`"),
        (
            "layers_pattern",
            json!(["layers", 3]),
            "field `layers_pattern`",
        ),
    ];
    for (field, value, needle) in cases {
        let Some(loaded) = load_with(&c, field, &value) else {
            return;
        };
        must_contain(&err_of(loaded), &["adapter_config.json", field, needle]);
    }
    // What PEFT writes for a plain adapter (null, empty, and the initialisations that only
    // chose the starting A and B, in any case) loads.
    let plain = [
        ("init_lora_weights", json!("gaussian")),
        ("init_lora_weights", json!("eva")),
        ("init_lora_weights", json!(false)),
        ("init_lora_weights", json!("mica")),
        ("init_lora_weights", json!("Gaussian")),
        ("use_bdlora", json!(null)),
        ("loftq_config", json!({})),
        ("target_parameters", json!([])),
        ("velora_config", json!(null)),
    ];
    for (field, value) in plain {
        let Some(loaded) = load_with(&c, field, &value) else {
            return;
        };
        if let Err(e) = loaded {
            panic!("{field} = {value}: {e}");
        }
    }
}

#[test]
fn two_tensors_for_one_weight_and_a_lora_b_bias_are_named() {
    let Some((_, c)) = cfg("tiny-llama") else {
        return;
    };
    let stem = "model.layers.0.self_attn.q_proj";
    let mut a = None;
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let file = d.join("adapters/qv_r8/adapter_model.safetensors");
    for_each_tensor(&file, |n, t| {
        if n == format!("base_model.model.{stem}.lora_A.weight") {
            a = Some(t);
        }
        Ok(())
    })
    .unwrap();
    let a = a.expect("the fixture adapts layer 0's q_proj");
    // The same weight without the `base_model.model.` prefix, scaled: which copy wins was
    // the loader's accident.
    let scaled: Vec<f32> = a.data.iter().map(|x| x * 5.0).collect();
    add_tensors(
        &file,
        vec![(format!("{stem}.lora_A.weight"), a.shape.clone(), scaled)],
    );
    let e = err_of(PeftAdapter::load("x", &d.join("adapters/qv_r8"), &c));
    must_contain(
        &e,
        &[
            &format!("`base_model.model.{stem}.lora_A.weight`"),
            &format!("`{stem}.lora_A.weight`"),
            "keep one",
        ],
    );
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let file = d.join("adapters/qv_r8/adapter_model.safetensors");
    let bias = format!("base_model.model.{stem}.lora_B.bias");
    add_tensors(
        &file,
        vec![(bias.clone(), vec![c.hidden_size], vec![0.0; c.hidden_size])],
    );
    let e = err_of(PeftAdapter::load("x", &d.join("adapters/qv_r8"), &c));
    must_contain(&e, &[&bias, "a LoRA B bias", "lora_bias = true"]);
}

/// A Phi-3 adapter adapts the stacked `qkv_proj` and `gate_up_proj`: loaded, each stacked pair
/// becomes one pair per module (the same A, that module's rows of B). On another model (or
/// a `q_proj` LoRA on Phi-3), the module is named with the ones this model has; a stacked B
/// of the wrong height is named with the height the stack needs.
#[test]
fn stacked_module_adapters() {
    let (Some((phi, pc)), Some((_, lc))) = (cfg("tiny-phi3"), cfg("tiny-llama")) else {
        return;
    };
    let dir = phi.join("adapters/stacked_r4");
    let a = PeftAdapter::load("s", &dir, &pc).unwrap();
    use dlp_engine::LoraModule::*;
    assert_eq!(a.targets, [Q, K, V, O, Gate, Up, Down]);
    let (q, kv, ff) = (pc.q_dim(), pc.kv_dim(), pc.intermediate_size);
    let splits = [
        (
            "self_attn.qkv_proj",
            vec![(Q, 0, q), (K, q, kv), (V, q + kv, kv)],
        ),
        ("mlp.gate_up_proj", vec![(Gate, 0, ff), (Up, ff, ff)]),
    ];
    for (module, parts) in splits {
        let mut stacked = Vec::new();
        for_each_tensor(&dir.join("adapter_model.safetensors"), |n, t| {
            if n.contains(&format!("layers.1.{module}.lora_")) {
                stacked.push(t);
            }
            Ok(())
        })
        .unwrap();
        let [sa, sb] = &stacked[..] else {
            panic!("the fixture adapts layer 1's {module}")
        };
        for (m, from, rows) in parts {
            let p = &a.pairs[&(1, m)];
            assert_eq!(p.a.data, sa.data, "{m:?}: A is the stack's");
            assert_eq!(p.b.shape, [rows, 4]);
            assert_eq!(p.b.data, sb.data[from * 4..(from + rows) * 4], "{m:?}");
        }
    }

    let e = err_of(PeftAdapter::load("s", &dir, &lc));
    must_contain(
        &e,
        &[
            "layers.0.mlp.gate_up_proj.lora_A.weight`: a LoRA on a module this engine does not adapt",
            "supported for this model: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        ],
    );
    let Some(llama) = fixtures("tiny-llama") else {
        return;
    };
    let e = err_of(PeftAdapter::load("q", &llama.join("adapters/qv_r8"), &pc));
    must_contain(
        &e,
        &["supported for this model: qkv_proj, o_proj, gate_up_proj, down_proj"],
    );

    let Some((_t, d)) = tmp_copy("tiny-phi3") else {
        return;
    };
    let file = d.join("adapters/stacked_r4/adapter_model.safetensors");
    rewrite(&file, |n, shape, data| {
        Some(match n.contains("layers.0.mlp.gate_up_proj.lora_B") {
            true => (vec![shape[0] - 1, shape[1]], data[shape[1]..].to_vec()),
            false => (shape, data),
        })
    });
    let e = err_of(PeftAdapter::load("s", &d.join("adapters/stacked_r4"), &pc));
    let ff = pc.intermediate_size;
    must_contain(
        &e,
        &[
            "`base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight`",
            &format!("`lora_B` [{}, 4]", 2 * ff - 1),
            &format!("[{}, 4]", 2 * ff),
        ],
    );
}

/// An adapter of a gated model's `gate_proj` (tiny-llama's `mlp_pattern`) on Arcee, whose
/// feed-forward has no gate: the module is named with the ones Arcee has.
#[test]
fn gate_lora_on_an_ungated_model() {
    let (Some((_, arcee)), Some(llama)) = (cfg("tiny-arcee"), fixtures("tiny-llama")) else {
        return;
    };
    let e = err_of(PeftAdapter::load(
        "m",
        &llama.join("adapters/mlp_pattern"),
        &arcee,
    ));
    must_contain(
        &e,
        &[
            "mlp.gate_proj.lora_A.weight`: a LoRA on a module this engine does not adapt",
            "supported for this model: q_proj, k_proj, v_proj, o_proj, up_proj, down_proj",
        ],
    );
}
