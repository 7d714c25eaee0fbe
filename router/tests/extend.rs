//! Router extension (feature `train`): a router trained on two of the demo labels learns the
//! third with its body and old rows frozen byte for byte, old labels' logits unchanged, the
//! new label reachable, the same result for the same seed, and clear errors.
#![cfg(feature = "train")]

mod common;

use dlp_router::data::{read_jsonl, Example, Fields};
use dlp_router::extend::{extend, ExtendConfig, FeatureStats};
use dlp_router::model::load_tokenizer;
use dlp_router::select::ranked;
use dlp_router::train::{train, TrainConfig};
use dlp_router::Router;

fn split(set: &[Example], label: &str) -> (Vec<Example>, Vec<Example>) {
    set.iter().cloned().partition(|e| e.label != label)
}

#[test]
fn extension_keeps_the_old_router_and_learns_the_new_label() {
    let Some(tok_path) = common::smollm2_tokenizer("extension") else {
        return;
    };
    let demo = common::workspace_root().join("router/demo");
    let fields = Fields::default();
    let train_all = read_jsonl(&demo.join("train.jsonl"), &fields).unwrap();
    let dev_all = read_jsonl(&demo.join("dev.jsonl"), &fields).unwrap();
    let (train_old, train_new) = split(&train_all, "mlp_r16");
    let (dev_old, dev_new) = split(&dev_all, "mlp_r16");
    let cfg = TrainConfig {
        embed_dim: 32,
        hidden: vec![64, 64, 32],
        epochs: 8,
        batch_size: 32,
        ..Default::default()
    };
    let base = train(
        load_tokenizer(&tok_path).unwrap(),
        &train_old,
        &dev_old,
        &cfg,
    )
    .unwrap()
    .router;
    assert_eq!(base.labels(), ["all_r4", "qv_r8"]);
    let stats = FeatureStats::compute(&base, &train_old).unwrap();
    assert_eq!(stats.labels.len(), 2);
    assert_eq!(stats.dim, 32);
    let ecfg = ExtendConfig::default();
    let ext = extend(&base, &stats, &train_new, &ecfg).unwrap();
    let r = &ext.router;
    assert_eq!(r.labels(), ["all_r4", "qv_r8", "mlp_r16"]);
    assert_eq!(ext.new_labels, ["mlp_r16"]);

    // Frozen: the embedding table, the hidden layers and the old output rows, byte for byte.
    let (a, b) = (base.weights(), r.weights());
    assert_eq!(a.embed, b.embed);
    let n = a.layers.len();
    assert_eq!(a.layers[..n - 1], b.layers[..n - 1]);
    let (lo, ln) = (&a.layers[n - 1], &b.layers[n - 1]);
    assert_eq!(ln.outputs, 3);
    assert_eq!(lo.weight[..], ln.weight[..lo.weight.len()]);
    assert_eq!(lo.bias[..], ln.bias[..2]);
    // The old labels' logits on a fixed batch: unchanged.
    let texts: Vec<&str> = dev_all.iter().map(|e| e.text.as_str()).collect();
    for (x, y) in base
        .logits(&texts)
        .unwrap()
        .iter()
        .zip(r.logits(&texts).unwrap())
    {
        assert_eq!(x[..], y[..2]);
    }
    // The new label is reachable: it wins on its own dev texts, and not on the others'.
    let top = |set: &[Example]| -> f32 {
        let t: Vec<&str> = set.iter().map(|e| e.text.as_str()).collect();
        let hits = r
            .probs(&t)
            .iter()
            .zip(set)
            .filter(|(p, e)| r.labels()[ranked(p)[0]] == e.label)
            .count();
        hits as f32 / set.len() as f32
    };
    assert!(top(&dev_new) >= 0.8, "new label top-1 {}", top(&dev_new));
    assert!(top(&dev_old) >= 0.8, "old labels top-1 {}", top(&dev_old));
    // Statistics grow with the labels; the same seed gives the same router.
    assert_eq!(ext.stats.labels.len(), 3);
    let again = extend(&base, &stats, &train_new, &ecfg).unwrap();
    assert_eq!(again.router.weights(), r.weights());
    assert_eq!(r.config().trainings.last().unwrap().kind, "extend");
    // Saved and loaded, with its statistics.
    let scratch = common::scratch_dir("extend");
    let dir = scratch.path();
    let mut saved = Router::from_parts(
        r.config().clone(),
        r.tokenizer().clone(),
        r.weights().clone(),
    );
    saved.set_feature_stats(dlp_router::extend::STATS_FILE);
    saved.save_self_contained(dir, &tok_path).unwrap();
    ext.stats
        .save(&dir.join(dlp_router::extend::STATS_FILE))
        .unwrap();
    let loaded = Router::load(dir).unwrap();
    assert_eq!(loaded.weights(), r.weights());
    let s = FeatureStats::load(&dir.join(dlp_router::extend::STATS_FILE), 3, 32).unwrap();
    assert_eq!(s, ext.stats);

    // Errors: a label the router has, no examples, statistics of another router.
    let e = extend(&base, &stats, &train_old, &ecfg)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already one of the router's"), "{e}");
    let e = extend(&base, &stats, &[], &ecfg).err().unwrap().to_string();
    assert!(e.contains("no examples"), "{e}");
    let e = extend(r, &stats, &train_new, &ecfg)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("statistics cover 2 labels"), "{e}");
}
