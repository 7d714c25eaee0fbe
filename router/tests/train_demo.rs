//! A tiny training run on the demo data (feature `train`): learns, is deterministic, and
//! routes the sentences of a mixed prompt differently.
#![cfg(feature = "train")]

mod common;

use dlp_router::data::{read_jsonl, Fields};
use dlp_router::model::load_tokenizer;
use dlp_router::segment::sentences;
use dlp_router::train::{train, TrainConfig};
use dlp_router::Router;

#[test]
fn tiny_training_run() {
    let Some(tok_path) = common::smollm2_tokenizer("tiny_training_run") else {
        return;
    };
    let demo = common::workspace_root().join("router/demo");
    let fields = Fields::default();
    let train_set = read_jsonl(&demo.join("train.jsonl"), &fields).unwrap();
    let dev_set = read_jsonl(&demo.join("dev.jsonl"), &fields).unwrap();
    let cfg = TrainConfig {
        embed_dim: 32,
        hidden: vec![64, 64, 32],
        epochs: 8,
        batch_size: 32,
        ..Default::default()
    };
    let run = || {
        train(
            load_tokenizer(&tok_path).unwrap(),
            &train_set,
            &dev_set,
            &cfg,
        )
        .unwrap()
    };
    let mut a = run();
    let b = run();
    assert_eq!(
        a.router.weights(),
        b.router.weights(),
        "same seed, same router"
    );
    let dev = a.router.config().dev.clone().unwrap();
    assert!(dev.top1 >= 0.9, "dev top-1 {}", dev.top1);
    assert_eq!(a.router.labels(), ["all_r4", "mlp_r16", "qv_r8"]);

    let prompt = "How long should I bake the sourdough bread? Which telescope can photograph Saturn's rings?";
    let top = |r: &Router| -> Vec<String> {
        r.probs(&sentences(prompt))
            .iter()
            .map(|p| r.labels()[dlp_router::select::ranked(p)[0]].clone())
            .collect()
    };
    assert_eq!(top(&a.router), ["qv_r8", "all_r4"]);

    let scratch = common::scratch_dir("train");
    let dir = scratch.path();
    a.router.save_self_contained(dir, &tok_path).unwrap();
    let loaded = Router::load(dir).unwrap();
    assert_eq!(
        loaded.probs(&sentences(prompt)),
        a.router.probs(&sentences(prompt))
    );
}
