//! The fused LoRA ops against the static-fusion floor: merging a mixture into the weights once
//! (`W += sum_k w_k * scale_k * B_k A_k`) must give the logits the fused path computes at run
//! time, for file adapters and synthetic ones alike.

use dlp_engine::cpu::CpuBackend;
use dlp_engine::generate::{score_batch, ScoreInput, ScoreMode};
use dlp_engine::loader::peft::PeftAdapter;
use dlp_engine::loader::ModelFiles;
use dlp_engine::lora::{merge_into, synthetic_adapter};
use dlp_engine::model::Model;
use dlp_engine::LoraModule;
use dlp_tests::{fixtures, Fixture};

#[test]
fn merged_weights_match_fused_adapters() {
    let Some(dir) = fixtures("tiny-llama") else {
        return;
    };
    let fx = Fixture::open(&dir);
    let path = fx.model_path();
    let cfg = ModelFiles::load(&path).unwrap().config;
    let mut names: Vec<&String> = fx.golden.adapters.keys().collect();
    names.sort();
    let mut adapters: Vec<PeftAdapter> = names
        .iter()
        .map(|n| PeftAdapter::load(n, &dir.join(&fx.golden.adapters[*n]), &cfg).unwrap())
        .collect();
    adapters.push(synthetic_adapter(
        "syn",
        &cfg,
        5,
        &[LoraModule::Up, LoraModule::O],
        3,
    ));
    let mix = vec![(0, 0.5), (2, 0.3), (adapters.len() - 1, 0.9)];
    let ids: Vec<u32> = (0..12)
        .map(|i| (i * 37 + 5) % cfg.vocab_size as u32)
        .collect();
    let score = |model: &Model<CpuBackend>, segments| {
        let input = ScoreInput {
            ids: ids.clone(),
            segments,
        };
        score_batch(model, &[input], ScoreMode::Prefill, 64)
            .unwrap()
            .remove(0)
    };
    let files = ModelFiles::load(&path).unwrap();
    let mut fused = Model::new(CpuBackend::new(), cfg.clone(), files.weights, 64).unwrap();
    fused.set_adapters(&adapters).unwrap();
    let want = score(&fused, vec![(0, mix.clone())]);
    let base = score(&fused, vec![]);
    let mut files = ModelFiles::load(&path).unwrap();
    merge_into(&mut files.weights, &adapters, &mix).unwrap();
    let merged = Model::new(CpuBackend::new(), cfg, files.weights, 64).unwrap();
    let got = score(&merged, vec![]);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let (d, effect) = (max_diff(&got, &want), max_diff(&want, &base));
    println!("merged vs fused max |diff| {d:.2e}; the mixture moves logits by up to {effect:.2e}");
    assert!(effect > 1e-2, "the mixture should change the logits");
    assert!(d < 1e-4, "merged and fused disagree by {d}");
}
