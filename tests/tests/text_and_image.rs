//! The text model of a text-and-image checkpoint (`mistral3`, `Mistral3ForConditionalGeneration`:
//! Ministral 3's releases, Mistral Small 3.1 and 3.2; `exaone4_5`, EXAONE 4.5's) scores as that
//! text model: the
//! `tiny-ministral3` fixture re-saved as the wrapper, its config in `text_config` beside a
//! vision config, its weights under the names transformers 4 saved (`language_model.model.*`,
//! `language_model.lm_head.*`, the Hub's files) or 5 saves (`model.language_model.*`), with a
//! vision tower and projector beside them, which text never reaches; its adapter likewise under
//! the wrapper's names. Every golden case must match, as the fixture's own run does. PEFT's
//! selectors and patterns read the module's full name in the wrapper
//! (`model.language_model.layers.0.self_attn.q_proj`), as PEFT does.

use std::collections::HashMap;
use std::path::Path;

use dlp_engine::cpu::CpuBackend;
use dlp_engine::generate::{score_batch, ScoreMode, DEFAULT_STEP_TOKENS};
use dlp_tests::{cpu_model, fixtures, run_golden, Fixture};
use safetensors::{Dtype, SafeTensors};

/// `src`'s tensors renamed by `rename`, with `extra` zero tensors `[4]`, written to `dst`.
fn resaved(src: &Path, dst: &Path, rename: &dyn Fn(&str) -> String, extra: &[&str]) {
    let bytes = std::fs::read(src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let zeros = vec![0u8; 16];
    let mut out: HashMap<String, safetensors::tensor::TensorView> = HashMap::new();
    for (name, view) in st.tensors() {
        out.insert(rename(&name), view);
    }
    for e in extra {
        let v = safetensors::tensor::TensorView::new(Dtype::F32, vec![4], &zeros).unwrap();
        out.insert(e.to_string(), v);
    }
    safetensors::serialize_to_file(out, None, dst).unwrap();
}

/// A `mistral3` config holding the text config `text`.
fn mistral3(text: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Mistral3ForConditionalGeneration"], "model_type": "mistral3",
        "image_token_index": 10, "projector_hidden_act": "gelu", "spatial_merge_size": 2,
        "text_config": text,
        "vision_config": {"model_type": "pixtral", "hidden_size": 4, "num_hidden_layers": 1},
    })
}

/// The fixture as a text-and-image checkpoint in `dir`: its config in the one `outer` makes,
/// weights named by `rename`, its adapters `adapters` likewise.
fn wrapped_as(
    fixture: &Path,
    dir: &Path,
    outer: fn(serde_json::Value) -> serde_json::Value,
    adapters: &[&str],
    rename: &dyn Fn(&str) -> String,
    vision: &[&str],
) {
    let text: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("config.json")).unwrap()).unwrap();
    std::fs::write(dir.join("config.json"), outer(text).to_string()).unwrap();
    for f in ["golden.json", "golden.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    resaved(
        &fixture.join("model.safetensors"),
        &dir.join("model.safetensors"),
        rename,
        vision,
    );
    // PEFT names the wrapper's decoder layers as the checkpoint does.
    let lora = |n: &str| {
        let layer = n.strip_prefix("base_model.model.").unwrap();
        format!("base_model.model.{}", rename(layer))
    };
    for name in adapters {
        let from = fixture.join("adapters").join(name);
        let to = dir.join("adapters").join(name);
        std::fs::create_dir_all(&to).unwrap();
        let config = "adapter_config.json";
        std::fs::copy(from.join(config), to.join(config)).unwrap();
        resaved(
            &from.join("adapter_model.safetensors"),
            &to.join("adapter_model.safetensors"),
            &lora,
            &[],
        );
    }
}

/// `tiny-ministral3` as a `mistral3` checkpoint in `dir`, weights named by `rename`.
fn wrapped(fixture: &Path, dir: &Path, rename: &dyn Fn(&str) -> String, vision: &[&str]) {
    wrapped_as(fixture, dir, mistral3, &["all_r8"], rename, vision);
}

/// A text model's tensor name as the wrapper's checkpoint names it.
type Rename = fn(&str) -> String;

/// transformers 4's wrapper names (`language_model.model.*`, `language_model.lm_head.*`).
fn v4(n: &str) -> String {
    match n.strip_prefix("lm_head.") {
        Some(rest) => format!("language_model.lm_head.{rest}"),
        None => format!("language_model.{n}"),
    }
}

/// transformers 5's wrapper names (`model.language_model.*`), PEFT's view of them.
fn v5(n: &str) -> String {
    match n.strip_prefix("model.") {
        Some(rest) => format!("model.language_model.{rest}"),
        None => n.to_string(),
    }
}

#[test]
fn mistral3_checkpoints_score_as_their_text_model() {
    let Some(fixture) = fixtures("tiny-ministral3") else {
        return;
    };
    // transformers 4's names (the Hub's files) and 5's.
    let forms: [(Rename, [&str; 2]); 2] = [
        (
            v4,
            [
                "vision_tower.transformer.layers.0.ffn_norm.weight",
                "multi_modal_projector.linear_1.weight",
            ],
        ),
        (
            v5,
            [
                "model.vision_tower.transformer.layers.0.ffn_norm.weight",
                "model.multi_modal_projector.linear_1.weight",
            ],
        ),
    ];
    for (rename, vision) in forms {
        let dir = tempfile::tempdir().unwrap();
        wrapped(&fixture, dir.path(), &rename, &vision);
        run_golden(dir.path().to_str().unwrap(), CpuBackend::new());
    }
}

/// EXAONE 4.5 (`exaone4_5`, `Exaone4_5_ForConditionalGeneration`): an EXAONE 4 text model
/// (`tiny-exaone4`: sliding and full layers) under transformers 5's names, its `text_config`
/// named `exaone4` or, as its first releases did, `exaone4_5_text`, beside a Qwen2-VL-style
/// vision tower (`model.visual.*`) and the multi-token-prediction layer the loader leaves unread
/// (`mtp.*`, which transformers ignores too).
#[test]
fn exaone4_5_checkpoints_score_as_their_text_model() {
    let Some(fixture) = fixtures("tiny-exaone4") else {
        return;
    };
    fn outer(text: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"architectures": ["Exaone4_5_ForConditionalGeneration"],
            "model_type": "exaone4_5", "image_token_id": 67, "video_token_id": 68,
            "text_config": text, "vision_config": {"model_type": "exaone4_5_vision", "depth": 1}})
    }
    // As first released: the text model type, and `layer_types` listing the prediction layer
    // after the model's (counted outside `text_config`).
    fn first_release(mut text: serde_json::Value) -> serde_json::Value {
        text["model_type"] = "exaone4_5_text".into();
        text["layer_types"]
            .as_array_mut()
            .unwrap()
            .push("sliding_attention".into());
        let mut v = outer(text);
        v["num_nextn_predict_layers"] = 1.into();
        v
    }
    let vision = [
        "model.visual.blocks.0.attn.qkv.weight",
        "model.visual.merger.mlp.0.weight",
        "mtp.fc.weight",
    ];
    for form in [outer, first_release] {
        let dir = tempfile::tempdir().unwrap();
        wrapped_as(
            &fixture,
            dir.path(),
            form,
            &["all_r4", "qk_r8"],
            &v5,
            &vision,
        );
        run_golden(dir.path().to_str().unwrap(), CpuBackend::new());
    }
}

/// The logits of every case of the wrapped fixture in `dir`, its adapter's config edited by
/// `edit`.
fn logits_with(dir: &Path, edit: &dyn Fn(&mut serde_json::Value)) -> Vec<Vec<f32>> {
    let cfg = dir.join("adapters/all_r8/adapter_config.json");
    let mut ac: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    edit(&mut ac);
    std::fs::write(&cfg, ac.to_string()).unwrap();
    let fx = Fixture::open(dir);
    let model = cpu_model(&fx);
    let cases = &fx.golden.cases;
    let inputs: Vec<_> = cases.iter().map(|c| fx.input(&model, c)).collect();
    score_batch(&model, &inputs, ScoreMode::Prefill, DEFAULT_STEP_TOKENS).unwrap()
}

/// PEFT matches `target_modules` (a regular expression: the whole name) and the patterns (a
/// name's end) against the wrapper's full module names: a regex naming `language_model` selects
/// the decoder's modules, and an `alpha_pattern` keyed `language_model.layers.0...` applies (had
/// been refused, and ignored).
#[test]
fn peft_rules_read_the_wrappers_module_names() {
    let Some(fixture) = fixtures("tiny-ministral3") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    wrapped(&fixture, dir.path(), &v5, &[]);
    let plain = logits_with(dir.path(), &|_| {});
    let regex = logits_with(dir.path(), &|ac| {
        ac["target_modules"] =
            ".*language_model.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)".into()
    });
    assert_eq!(plain, regex);
    let pattern = |key: &'static str| {
        move |ac: &mut serde_json::Value| ac["alpha_pattern"] = serde_json::json!({ key: 64 })
    };
    let full = logits_with(
        dir.path(),
        &pattern("language_model.layers.0.self_attn.q_proj"),
    );
    let short = logits_with(dir.path(), &pattern("layers.0.self_attn.q_proj"));
    assert_eq!(full, short);
    let moved = (full.iter().flatten().zip(plain.iter().flatten()))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        moved > 1e-2,
        "alpha_pattern moved the logits by only {moved}"
    );
    // The first key that matches wins, in the file's order, even over one equal to the name
    // (PEFT 0.21's get_pattern_key): layer 0's q_proj takes `q_proj`'s 64, not its own 16.
    let q = logits_with(dir.path(), &|ac| {
        ac["alpha_pattern"] = serde_json::json!({"q_proj": 64});
    });
    let first = logits_with(dir.path(), &|ac| {
        ac["alpha_pattern"] =
            serde_json::json!({"q_proj": 64, "model.language_model.layers.0.self_attn.q_proj": 16});
    });
    assert_eq!(q, first);
    let exact_first = logits_with(dir.path(), &|ac| {
        ac["alpha_pattern"] =
            serde_json::json!({"model.language_model.layers.0.self_attn.q_proj": 16, "q_proj": 64});
    });
    assert_ne!(q, exact_first);
}
