//! Bad input: every case gets an error that names the file / field / tensor and says what was
//! expected, never a panic and never a silently wrong answer.

use std::path::{Path, PathBuf};

use dlp_engine::config::ModelConfig;
use dlp_engine::cpu::CpuBackend;
use dlp_engine::generate::{generate, GenRequest};
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::safetensors_dir::{for_each_tensor, index_disagreements};
use dlp_engine::loader::ModelFiles;
use dlp_engine::lora::resolve_mixture;
use dlp_engine::model::Model;
use dlp_engine::SamplingParams;
use dlp_tests::fixtures;
use safetensors::tensor::TensorView;

#[path = "bad_input/adapter_variants.rs"]
mod adapter_variants;
#[path = "bad_input/gguf.rs"]
mod gguf;
#[path = "bad_input/model_files.rs"]
mod model_files;

/// Copies a fixture folder (files only, one level plus `adapters/*`) into a temp dir.
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn tmp_copy(fixture: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let src = fixtures(fixture)?;
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join(fixture);
    copy_dir(&src, &d);
    Some((t, d))
}

fn err_of<T>(r: dlp_engine::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn must_contain(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// Rewrites a safetensors file through `f(name, shape, data)`; returning None drops the tensor.
fn rewrite(
    path: &Path,
    mut f: impl FnMut(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
) {
    let mut kept: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for_each_tensor(path, |n, t| {
        if let Some((s, d)) = f(&n, t.shape, t.data) {
            kept.push((n, s, d));
        }
        Ok(())
    })
    .unwrap();
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(d))
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// tiny-llama's `qv_r8` adapter loaded with its config's `field` set to `value` (None without
/// the fixtures).
fn load_with(
    c: &ModelConfig,
    field: &str,
    value: &serde_json::Value,
) -> Option<dlp_engine::Result<PeftAdapter>> {
    let (_t, d) = tmp_copy("tiny-llama")?;
    let ad = d.join("adapters/qv_r8");
    edit_json(&ad.join("adapter_config.json"), |v| {
        v[field] = value.clone()
    });
    Some(PeftAdapter::load("x", &ad, c))
}

/// Every tensor of a safetensors file, with `extra` (name, shape, values) added.
fn add_tensors(path: &Path, extra: Vec<(String, Vec<usize>, Vec<f32>)>) {
    let mut all: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for_each_tensor(path, |n, t| {
        all.push((n, t.shape, t.data));
        Ok(())
    })
    .unwrap();
    all.extend(extra);
    let views: Vec<(String, TensorView)> = all
        .iter()
        .map(|(n, s, d)| {
            let v = TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(d));
            (n.clone(), v.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn missing_tensor_and_nan_weights_are_named() {
    let Some((_t, d)) = tmp_copy("tiny-qwen2") else {
        return;
    };
    let f = d.join("model.safetensors");
    rewrite(&f, |n, s, v| {
        (n != "model.layers.1.mlp.up_proj.weight").then_some((s, v))
    });
    let files = ModelFiles::load(&d).unwrap();
    let e = err_of(Model::new(
        CpuBackend::new(),
        files.config,
        files.weights,
        64,
    ));
    must_contain(
        &e,
        &[
            "missing tensor",
            "model.layers.1.mlp.up_proj.weight",
            "[160, 64]",
        ],
    );

    let Some((_t2, d2)) = tmp_copy("tiny-qwen2") else {
        return;
    };
    rewrite(&d2.join("model.safetensors"), |n, s, mut v| {
        if n == "model.layers.0.self_attn.k_proj.weight" {
            v[17] = f32::NAN;
        }
        Some((s, v))
    });
    must_contain(
        &err_of(ModelFiles::load(&d2)),
        &[
            "model.layers.0.self_attn.k_proj.weight",
            "non-finite",
            "NaN",
        ],
    );

    let Some((_t3, d3)) = tmp_copy("tiny-qwen2") else {
        return;
    };
    rewrite(&d3.join("model.safetensors"), |n, s, v| {
        if n == "model.norm.weight" {
            return Some((vec![32], v[..32].to_vec()));
        }
        Some((s, v))
    });
    let files = ModelFiles::load(&d3).unwrap();
    must_contain(
        &err_of(Model::new(
            CpuBackend::new(),
            files.config,
            files.weights,
            64,
        )),
        &["model.norm.weight", "[32]", "expected [64]"],
    );
}

fn cfg(fixture: &str) -> Option<(PathBuf, ModelConfig)> {
    let d = fixtures(fixture)?;
    let c = ModelConfig::from_hf_dir(&d).unwrap();
    Some((d, c))
}

#[test]
fn adapter_for_another_model() {
    let Some((_, tiny)) = cfg("tiny-llama") else {
        return;
    };
    let Some(smol) = fixtures("smollm2") else {
        return;
    };
    let e = err_of(PeftAdapter::load("x", &smol.join("adapters/qv_r8"), &tiny));
    must_contain(
        &e,
        &["adapter_model.safetensors", "layer", "a different model"],
    );
    // Same layer count, other widths: the shape message names the tensor.
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let ad = d.join("adapters/qv_r8");
    rewrite(&ad.join("adapter_model.safetensors"), |n, s, v| {
        if n.contains("layers.1.self_attn.v_proj.lora_B") {
            return Some((vec![s[0] / 2, s[1]], v[..v.len() / 2].to_vec()));
        }
        Some((s, v))
    });
    let e = err_of(PeftAdapter::load("x", &ad, &tiny));
    must_contain(
        &e,
        &[
            "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
            "shape",
            "[16, 8]",
        ],
    );
}

#[test]
fn unsupported_adapter_configs() {
    let Some((_, c)) = cfg("tiny-llama") else {
        return;
    };
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("use_dora", true.into(), "use_dora"),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "modules_to_save",
        ),
        ("bias", "lora_only".into(), "bias"),
        ("lora_bias", true.into(), "lora_bias"),
        ("peft_type", "IA3".into(), "IA3"),
        (
            "r",
            (-1).into(),
            "`r`: expected a positive integer, found -1",
        ),
        (
            "r",
            "8".into(),
            "`r`: expected a positive integer, found \"8\"",
        ),
        (
            "use_rslora",
            1.into(),
            "field `use_rslora`: expected true or false, found 1",
        ),
        (
            "use_dora",
            "yes".into(),
            "field `use_dora`: expected true or false, found \"yes\"",
        ),
        (
            "lora_alpha",
            serde_json::Value::Null,
            "`lora_alpha`: expected a number, found null",
        ),
        (
            "lora_alpha",
            1e38.into(),
            "`lora_alpha` (or its `alpha_pattern`) gives",
        ),
    ];
    for (field, value, needle) in cases {
        let Some(loaded) = load_with(&c, field, &value) else {
            return;
        };
        must_contain(&err_of(loaded), &["adapter_config.json", needle]);
    }
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let ad = d.join("adapters/qv_r8");
    // Not an object at all: said so, not reported as a missing `r`.
    let config = std::fs::read(ad.join("adapter_config.json")).unwrap();
    std::fs::write(ad.join("adapter_config.json"), "[]").unwrap();
    must_contain(
        &err_of(PeftAdapter::load("x", &ad, &c)),
        &[
            "adapter_config.json",
            "expected a JSON object",
            "found a list",
        ],
    );
    std::fs::write(ad.join("adapter_config.json"), config).unwrap();
    std::fs::rename(
        ad.join("adapter_model.safetensors"),
        ad.join("adapter_model.bin"),
    )
    .unwrap();
    must_contain(
        &err_of(PeftAdapter::load("x", &ad, &c)),
        &["adapter_model.bin", "convert", "safetensors"],
    );
}

#[test]
fn bad_mixtures_and_prompts() {
    let names = vec!["a".to_string(), "b".to_string()];
    must_contain(
        &resolve_mixture(&names, &[("c".into(), 1.0)])
            .unwrap_err()
            .to_string(),
        &["`c`", "not loaded", "a, b"],
    );
    must_contain(
        &resolve_mixture(&names, &[("a".into(), -0.5)])
            .unwrap_err()
            .to_string(),
        &["`a`", "-0.5", ">= 0"],
    );
    must_contain(
        &resolve_mixture(&names, &[("a".into(), f32::NAN)])
            .unwrap_err()
            .to_string(),
        &["NaN", "finite"],
    );
    must_contain(
        &resolve_mixture(&names, &[("a".into(), f32::INFINITY)])
            .unwrap_err()
            .to_string(),
        &["inf"],
    );
    // 100 is the largest weight; past it a mixture only drowns the base model.
    assert!(resolve_mixture(&names, &[("a".into(), 100.0)]).is_ok());
    must_contain(
        &resolve_mixture(&names, &[("b".into(), 100.5)])
            .unwrap_err()
            .to_string(),
        &["`b`", "100.5", "at most 100"],
    );

    let Some(d) = fixtures("tiny-llama") else {
        return;
    };
    let files = ModelFiles::load(&d).unwrap();
    let model = Model::new(CpuBackend::new(), files.config, files.weights, 16).unwrap();
    let req = |prompt: Vec<u32>| GenRequest {
        prompt,
        params: SamplingParams {
            max_tokens: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = generate(&model, &[req(vec![])], &[2], 64, |_, _| {
        Ok(dlp_engine::generate::Control::Continue)
    })
    .unwrap_err();
    must_contain(&e.to_string(), &["prompt is empty"]);
    let e = generate(&model, &[req(vec![5; 40])], &[2], 64, |_, _| {
        Ok(dlp_engine::generate::Control::Continue)
    })
    .unwrap_err();
    must_contain(&e.to_string(), &["40 tokens", "context holds 16"]);
    let e = generate(&model, &[req(vec![300])], &[2], 64, |_, _| {
        Ok(dlp_engine::generate::Control::Continue)
    })
    .unwrap_err();
    must_contain(&e.to_string(), &["token id 300", "vocabulary"]);
}

/// A catalogue of further bad files, each an error naming the file or field and what was
/// expected: PEFT selectors that disagree with the tensors, configs with impossible or
/// enormous sizes, sliding-window fields of the wrong shape, corrupt tokenizers and GGUF
/// headers, adapter keys in a model's live state-dict spelling.
#[test]
fn catalogue_of_bad_files() {
    let Some((_t, d)) = tmp_copy("tiny-llama") else {
        return;
    };
    let (_, cfg) = cfg("tiny-llama").unwrap();
    // PEFT rules against the tensors of qv_r8 (q_proj and v_proj of both layers).
    let qv = d.join("adapters/qv_r8");
    let adapter_cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            serde_json::json!(["k_proj"]),
            &["model.layers.0.self_attn.q_proj", "does not select it"],
        ),
        (
            serde_json::json!(".*\\.layers\\.1\\..*"),
            &["model.layers.0", "regular expression"],
        ),
        (
            serde_json::json!("(unclosed"),
            &["target_modules", "does not compile"],
        ),
        (
            serde_json::json!(42),
            &["target_modules", "expected a module-name list"],
        ),
        (
            serde_json::json!(["q_proj", 7]),
            &["target_modules", "every entry must be a module name"],
        ),
    ];
    for (targets, needles) in adapter_cases {
        eprintln!("target_modules {targets}");
        edit_json(&qv.join("adapter_config.json"), |v| {
            v["target_modules"] = targets.clone()
        });
        let e = err_of(PeftAdapter::load("qv", &qv, &cfg));
        must_contain(&e, &["adapter_config.json"]);
        must_contain(&e, needles);
    }
    edit_json(&qv.join("adapter_config.json"), |v| {
        v["target_modules"] = serde_json::json!(["q_proj", "v_proj"]);
        v["exclude_modules"] = serde_json::json!(["v_proj"]);
    });
    must_contain(
        &err_of(PeftAdapter::load("qv", &qv, &cfg)),
        &["v_proj", "exclude_modules", "excludes it"],
    );
    edit_json(&qv.join("adapter_config.json"), |v| {
        v["exclude_modules"] = serde_json::Value::Null;
        v["layers_to_transform"] = serde_json::json!([1]);
    });
    must_contain(
        &err_of(PeftAdapter::load("qv", &qv, &cfg)),
        &["layer 0", "layers_to_transform [1]"],
    );
    // A negative index had become layer 0, or vanished from a list.
    for layers in [serde_json::json!(-1), serde_json::json!([0, -1])] {
        edit_json(&qv.join("adapter_config.json"), |v| {
            v["layers_to_transform"] = layers.clone()
        });
        let e = err_of(PeftAdapter::load("qv", &qv, &cfg));
        must_contain(&e, &["layers_to_transform", "integers >= 0", "found -1"]);
    }
    edit_json(&qv.join("adapter_config.json"), |v| {
        v["layers_to_transform"] = serde_json::Value::Null;
    });
    // The live state dict's spelling (`lora_A.default.weight`): refused, saying why.
    rewrite(&qv.join("adapter_model.safetensors"), |n, s, data| {
        let _ = n;
        Some((s, data))
    });
    let file = qv.join("adapter_model.safetensors");
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for_each_tensor(&file, |n, t| {
        tensors.push((n, t.shape, t.data));
        Ok(())
    })
    .unwrap();
    // Writes the adapter's tensors back under the names `rename` gives.
    let write_renamed = |rename: &dyn Fn(&str) -> String| {
        let views = tensors.iter().map(|(n, s, d)| {
            let v = TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(d));
            (rename(n), v.unwrap())
        });
        safetensors::serialize_to_file(views, None, &file).unwrap();
    };
    write_renamed(&|n| n.replace(".lora_A.weight", ".lora_A.default.weight"));
    must_contain(
        &err_of(PeftAdapter::load("qv", &qv, &cfg)),
        &["lora_A.default.weight", "adapter-name segment", "random"],
    );
    // A well-formed pair on lm_head: named as a module this engine does not adapt (it was
    // called an adapter-name segment).
    write_renamed(&|n| n.replace("model.layers.0.self_attn.q_proj.", "lm_head."));
    must_contain(
        &err_of(PeftAdapter::load("qv", &qv, &cfg)),
        &[
            "lm_head.lora_A.weight",
            "a module this engine does not adapt",
            "q_proj",
        ],
    );

    // config.json: impossible and enormous sizes, malformed sliding-window fields.
    let config = d.join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    let config_cases: Vec<(&str, serde_json::Value, &[&str])> = vec![
        (
            "num_attention_heads",
            serde_json::json!(0),
            &["num_attention_heads must be > 0"],
        ),
        (
            "num_hidden_layers",
            serde_json::json!(4294967296u64),
            &["num_hidden_layers = 4294967296"],
        ),
        (
            "vocab_size",
            serde_json::json!(1u64 << 40),
            &["vocab_size", "exceeds"],
        ),
        (
            "hidden_size",
            serde_json::json!(-3),
            &["hidden_size", "non-negative integer"],
        ),
        (
            "sliding_window",
            serde_json::json!(0),
            &["sliding_window", "positive integer"],
        ),
        // Values that load but would make every logit NaN.
        (
            "rms_norm_eps",
            serde_json::json!(-1.0),
            &["rms_norm_eps", "= -1 must be finite and >= 0"],
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "default", "rope_theta": 0}),
            &["rope_theta", "= 0 must be finite and > 0"],
        ),
        // A start token outside the vocabulary cannot be embedded.
        (
            "bos_token_id",
            serde_json::json!(1u64 << 20),
            &["bos_token_id", "= 1048576 is outside the vocabulary"],
        ),
        (
            "layer_types",
            serde_json::json!(["full_attention"]),
            &["layer_types", "one per layer"],
        ),
        (
            "layer_types",
            serde_json::json!(["full_attention", "chunked_attention"]),
            &["layer_types[1]", "chunked_attention"],
        ),
        (
            "hidden_act",
            serde_json::json!("gelu"),
            &["hidden_act", "silu"],
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "dynamic"}),
            &["rope scaling `dynamic`", "needs field `factor`"],
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "ntk", "factor": 4.0}),
            &["rope scaling type `ntk`", "dynamic"],
        ),
    ];
    for (field, value, needles) in config_cases {
        eprintln!("config {field} = {value}");
        std::fs::write(&config, &original).unwrap();
        edit_json(&config, |v| v[field] = value.clone());
        let e = err_of(ModelConfig::from_hf_dir(&d));
        must_contain(&e, needles);
    }
    std::fs::write(&config, &original).unwrap();

    // tokenizer.json: not JSON, JSON of the wrong shape.
    let tok = d.join("tokenizer.json");
    std::fs::write(&tok, b"{\"model\": ").unwrap();
    must_contain(
        &err_of(dlp_engine::tokenizer::TextTokenizer::from_file(&tok)),
        &["tokenizer.json", "not a valid tokenizer.json"],
    );
    std::fs::write(&tok, b"{\"model\": {\"type\": \"BPE\", \"vocab\": 5}}").unwrap();
    must_contain(
        &err_of(dlp_engine::tokenizer::TextTokenizer::from_file(&tok)),
        &["tokenizer.json", "not a valid tokenizer.json"],
    );
}
