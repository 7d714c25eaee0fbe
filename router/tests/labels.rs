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
    // The example names the label that lacks its adapter, not one already loaded.
    assert!(msg.contains("--adapter piqa=DIR"), "{msg}");
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
    // Every label is loaded: no `--adapter LABEL=DIR` to suggest.
    assert!(
        msg.contains("leave them out") && !msg.contains("=DIR"),
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

/// Training data saved with a UTF-8 byte-order mark (as Windows editors do) reads as without
/// one; a mark past the first line is still an error naming its line.
#[test]
fn a_byte_order_mark_before_the_first_line_is_skipped() {
    use dlp_router::data::{read_jsonl, Fields};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let line = |t: &str| format!("{{\"instruction\": \"{t}\", \"task\": \"a\"}}\n");
    std::fs::write(&path, format!("\u{feff}{}{}", line("x"), line("y"))).unwrap();
    let ex = read_jsonl(&path, &Fields::default()).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].text, "x");
    std::fs::write(&path, format!("{}\u{feff}{}", line("x"), line("y"))).unwrap();
    let err = read_jsonl(&path, &Fields::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.jsonl:2"), "{err}");
}
