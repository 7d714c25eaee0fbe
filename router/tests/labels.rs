//! Matching router labels to adapters.

use dlp_router::{match_labels, RouterError};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn maps_each_label_to_its_adapter() {
    let m = match_labels(
        &s(&["boolq", "piqa", "gsm8k"]),
        &s(&["gsm8k", "boolq", "piqa"]),
    )
    .unwrap();
    assert_eq!(m, vec![1, 2, 0]);
}

#[test]
fn label_without_adapter_is_an_error() {
    let err = match_labels(&s(&["boolq", "piqa"]), &s(&["boolq"])).unwrap_err();
    assert!(matches!(err, RouterError::LabelMismatch(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("\"piqa\"") && msg.contains("no loaded adapter"),
        "{msg}"
    );
}

#[test]
fn adapter_without_label_is_an_error() {
    let msg = match_labels(&s(&["boolq"]), &s(&["boolq", "extra"]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"extra\"") && msg.contains("no router label"),
        "{msg}"
    );
}

#[test]
fn both_directions_and_duplicates_are_reported() {
    let msg = match_labels(&s(&["a", "b"]), &s(&["b", "c"]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("\"a\"") && msg.contains("\"c\""), "{msg}");
    let msg = match_labels(&s(&["a", "a"]), &s(&["a"]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("duplicate"), "{msg}");
}
