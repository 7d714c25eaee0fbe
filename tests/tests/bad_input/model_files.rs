//! HF model folders whose files are cut, corrupt, disagree with their index, miss a tensor, or
//! name an architecture not read.

use super::*;

#[test]
fn truncated_and_corrupt_model_files() {
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let shard = d.join("model-00003-of-00014.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model-00003-of-00014.safetensors", "truncated or corrupt"],
    );
    std::fs::write(&shard, b"garbage").unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model-00003-of-00014.safetensors"],
    );
    std::fs::write(
        d.join("model.safetensors.index.json"),
        b"{\"weight_map\": {\"a\": ",
    )
    .unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["model.safetensors.index.json", "not valid JSON"],
    );
    std::fs::write(
        d.join("model.safetensors.index.json"),
        b"{\"weight_map\": {\"a\": \"missing.safetensors\"}}",
    )
    .unwrap();
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &[
            "model.safetensors.index.json",
            "missing.safetensors",
            "does not exist",
        ],
    );
}

/// An index that disagrees with its shards (a tensor moved or renamed since it was written; a
/// tied `lm_head.weight` the safetensors converter dropped) is reported, entry and shards,
/// and the weights are what the shards hold, as transformers 5 reads them; a tensor the model
/// needs that no shard read holds is named when the model is built. A tensor in two shards is
/// refused (which copy won was the loader's accident).
#[test]
fn a_stale_shard_index_is_reported_and_the_shards_read() {
    type Edit = fn(&mut serde_json::Value);
    let up = "model.layers.0.mlp.up_proj.weight";
    // (what the index check says, how many disagreements, whether the moved tensor is still
    // read, the edit)
    let edits: [(&str, usize, bool, Edit); 4] = [
        (
            "weight_map[`model.layers.0.mlp.up_proj.weight`] names shard `model-00004-of-00014.safetensors`, but the tensor is in `model-00005",
            2,
            true,
            |v| {
                let m = &mut v["weight_map"];
                m["model.layers.0.mlp.up_proj.weight"] = "model-00004-of-00014.safetensors".into();
                // Shard 5 still listed (by a name it does not hold), so it is read.
                m["extra.weight"] = "model-00005-of-00014.safetensors".into();
            },
        ),
        (
            "shard `model-00005-of-00014.safetensors` holds tensor `model.layers.0.mlp.up_proj.weight`, which weight_map does not list",
            2,
            true,
            |v| {
                let m = v["weight_map"].as_object_mut().unwrap();
                let shard = m.remove("model.layers.0.mlp.up_proj.weight").unwrap();
                m.insert("model.layers.0.mlp.upp_proj.weight".into(), shard);
            },
        ),
        (
            "weight_map[`extra.weight`] names shard `model-00005-of-00014.safetensors`, which does not hold it",
            1,
            true,
            |v| v["weight_map"]["extra.weight"] = "model-00005-of-00014.safetensors".into(),
        ),
        // Moved to a shard no other entry names: that shard is not read.
        (
            "weight_map[`model.layers.0.mlp.up_proj.weight`] names shard `model-00004-of-00014.safetensors`, which does not hold it",
            1,
            false,
            |v| {
                v["weight_map"]["model.layers.0.mlp.up_proj.weight"] =
                    "model-00004-of-00014.safetensors".into()
            },
        ),
    ];
    for (said, count, read, edit) in edits {
        let Some((_t, d)) = tmp_copy("tiny-llama") else {
            return;
        };
        edit_json(&d.join("model.safetensors.index.json"), edit);
        let why = index_disagreements(&d).unwrap();
        assert!(
            why.iter().any(|w| w.contains(said)),
            "{why:?} lacks {said:?}"
        );
        assert_eq!(why.len(), count, "{why:?}");
        let files = ModelFiles::load(&d).unwrap();
        assert_eq!(files.weights.contains(up), read, "{said}");
        if !read {
            // Building the model names the tensor no shard read holds.
            let e = err_of(Model::new(
                CpuBackend::new(),
                files.config,
                files.weights,
                64,
            ));
            must_contain(&e, &[up, "missing"]);
        }
    }
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    assert!(index_disagreements(&d).unwrap().is_empty());
    // The same tensor in a second shard.
    let mut copy = None;
    for_each_tensor(&d.join("model-00005-of-00014.safetensors"), |n, t| {
        copy = Some((n, t.shape, t.data));
        Ok(())
    })
    .unwrap();
    add_tensors(
        &d.join("model-00004-of-00014.safetensors"),
        vec![copy.unwrap()],
    );
    let e = err_of(ModelFiles::load(&d));
    must_contain(
        &e,
        &[
            "model-00005-of-00014.safetensors",
            up,
            "is also in shard `model-00004-of-00014.safetensors`",
        ],
    );
}

/// A tensor missing from a checkpoint under prefixes or norm names of its own (GPT-J's,
/// Falcon's, Apertus's) is named as the file names it, not under the Llama names the model reads
/// it by; so is a missing xIELU constant, which transformers would leave uninitialized.
#[test]
fn missing_tensors_are_named_as_stored() {
    for (fixture, gone) in [
        ("tiny-gptj", "transformer.h.1.attn.q_proj.weight"),
        ("tiny-gptj", "transformer.h.0.ln_1.bias"),
        ("tiny-falcon", "transformer.h.0.ln_mlp.weight"),
        ("tiny-falcon", "transformer.h.1.self_attention.dense.bias"),
        (
            "tiny-apertus",
            "model.layers.1.feedforward_layernorm.weight",
        ),
        ("tiny-apertus", "model.layers.0.mlp.act_fn.eps"),
        ("tiny-apertus", "model.layers.1.mlp.act_fn.alpha_n"),
    ] {
        let Some((_t, d)) = tmp_copy(fixture) else {
            return;
        };
        rewrite(&d.join("model.safetensors"), |n, s, v| {
            (n != gone).then_some((s, v))
        });
        let e = err_of(
            ModelFiles::load(&d)
                .and_then(|f| Model::new(CpuBackend::new(), f.config, f.weights, 64)),
        );
        must_contain(&e, &["missing tensor", gone]);
    }
}

#[test]
fn unknown_architecture() {
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    edit_json(&d.join("config.json"), |v| v["model_type"] = "bloom".into());
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["config.json", "unknown architecture", "bloom"],
    );
}

/// An FP8 checkpoint is read only with the scales its config declares: without its
/// `quantization_config` the 8-bit weights are refused (their values alone are not the
/// weights), a block size that does not match the stored scale grid names the tensor, and
/// another quantization method is refused by name. (The golden tests check the values.)
#[test]
fn fp8_checkpoints_are_read_with_their_declared_scales() {
    let Some((_t, d)) = tmp_copy("tiny-qwen3-fp8") else {
        return;
    };
    let files = ModelFiles::load(&d).unwrap();
    assert!(!files.weights.names().any(|n| n.contains("scale")));
    let config = d.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    edit_json(&config, |v| {
        v.as_object_mut().unwrap().remove("quantization_config");
    });
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &[
            "model.safetensors",
            "tensor `model.layers.0.mlp.down_proj.weight` is an 8-bit float, but config.json declares no FP8",
        ],
    );
    std::fs::write(&config, &original).unwrap();
    edit_json(&config, |v| {
        v["quantization_config"]["weight_block_size"] = serde_json::json!([32, 16]);
    });
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["`model.layers.0.mlp.down_proj.weight_scale_inv` has shape [4, 5], but FP8 weight `model.layers.0.mlp.down_proj.weight` [64, 160] needs one scale, or [2, 10]: one per 32×16 block"],
    );
    edit_json(&config, |v| {
        v["quantization_config"] = serde_json::json!({"quant_method": "bitsandbytes"});
    });
    must_contain(
        &err_of(ModelFiles::load(&d)),
        &["config.json", "quant_method `bitsandbytes`"],
    );
}
