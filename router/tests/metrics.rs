//! Evaluation metrics on hand-made probabilities.

use dlp_router::data::{hold_out, Example};
use dlp_router::metrics::{default_families, evaluate, family_of, truth_indices};
use dlp_router::SelectConfig;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn top1_family_containment_and_confusion() {
    let labels = s(&["arc_easy", "boolq", "gsm8k", "svamp"]);
    let probs = vec![
        vec![0.9, 0.05, 0.03, 0.02], // arc_easy: right
        vec![0.1, 0.8, 0.05, 0.05],  // boolq: right
        vec![0.0, 0.0, 0.4, 0.6],    // gsm8k: svamp wins (same family), both kept at p = 0.9
        vec![0.6, 0.0, 0.0, 0.4],    // svamp: arc_easy wins (other family); svamp still kept
    ];
    let truth = vec![0, 1, 2, 3];
    let r = evaluate(
        &labels,
        &probs,
        &truth,
        &SelectConfig::default(),
        &default_families(),
    );
    assert_eq!(r.examples, 4);
    assert!((r.top1 - 0.5).abs() < 1e-6);
    assert!((r.family_top1 - 0.75).abs() < 1e-6);
    assert!((r.topp_containment - 1.0).abs() < 1e-6);
    assert!(
        (r.mean_adapters - 1.75).abs() < 1e-6, // sets of 1 (0.9 reaches p), 2, 2, 2
        "{}",
        r.mean_adapters
    );
    assert_eq!(r.confusion[2][3], 1);
    assert_eq!(r.confusion[3][0], 1);
    assert_eq!(r.per_task_top1["gsm8k"], 0.0);
    assert_eq!(r.per_task_top1["boolq"], 1.0);
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "top1",
        "family_top1",
        "topp_containment",
        "per_task_top1",
        "mean_adapters",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert!(r.confusion_table().contains("gsm8k"));
}

#[test]
fn families_and_unknown_labels() {
    let f = default_families();
    assert_eq!(family_of(&f, "mawps"), family_of(&f, "gsm8k"));
    assert_eq!(family_of(&f, "openbookqa"), family_of(&f, "arc_challenge"));
    assert_ne!(family_of(&f, "aqua"), family_of(&f, "gsm8k"));
    assert_eq!(family_of(&f, "custom"), "custom");
    let ex = |l: &str| Example {
        text: "t".into(),
        label: l.into(),
    };
    let err = truth_indices(&s(&["a"]), &[ex("a"), ex("zzz")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("zzz"), "{err}");
}

#[test]
fn hold_out_is_stratified_and_seeded() {
    let data: Vec<Example> = (0..40)
        .map(|i| Example {
            text: format!("t{i}"),
            label: if i < 30 { "a" } else { "b" }.into(),
        })
        .collect();
    let (train, dev) = hold_out(data.clone(), 0.1, 7);
    assert_eq!(train.len() + dev.len(), 40);
    assert_eq!(dev.iter().filter(|e| e.label == "a").count(), 3);
    assert_eq!(dev.iter().filter(|e| e.label == "b").count(), 1);
    assert_eq!(hold_out(data, 0.1, 7).1, dev);
}
