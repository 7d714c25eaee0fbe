//! Matching router labels to loaded adapters by name.

use crate::RouterError;

/// Maps each router label to the index of the adapter of the same name.
///
/// Router and adapters must correspond one to one: a label with no adapter would route
/// probability mass nowhere, and an adapter with no label could never be chosen, so both are
/// errors that name every offender. Duplicate names on either side are errors too.
pub fn match_labels(labels: &[String], adapters: &[String]) -> Result<Vec<usize>, RouterError> {
    let dup = |names: &[String]| {
        let mut seen = std::collections::BTreeSet::new();
        names
            .iter()
            .filter(|n| !seen.insert(n.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    let (dup_l, dup_a) = (dup(labels), dup(adapters));
    if !dup_l.is_empty() || !dup_a.is_empty() {
        return Err(RouterError::LabelMismatch(format!(
            "duplicate names: router labels {dup_l:?}, adapters {dup_a:?}"
        )));
    }
    let missing: Vec<&String> = labels.iter().filter(|l| !adapters.contains(l)).collect();
    let unrouted: Vec<&String> = adapters.iter().filter(|a| !labels.contains(a)).collect();
    if !missing.is_empty() || !unrouted.is_empty() {
        let mut msg = String::from("router labels and adapters do not match:");
        if !missing.is_empty() {
            msg += &format!(" router label(s) {missing:?} have no loaded adapter;");
        }
        if !unrouted.is_empty() {
            msg += &format!(" adapter(s) {unrouted:?} have no router label;");
        }
        msg += &format!(" router labels are {labels:?}, adapters are {adapters:?} (");
        match missing.first() {
            Some(label) => {
                msg +=
                    &format!("load each adapter under its label's name, e.g. --adapter {label}=DIR")
            }
            // Every label has its adapter: the rest can never be chosen.
            None => {
                msg += "the router cannot choose the others: leave them out, or train a router \
                        with them (train-router --extend adds labels)"
            }
        }
        msg.push(')');
        return Err(RouterError::LabelMismatch(msg));
    }
    Ok(labels
        .iter()
        .map(|l| adapters.iter().position(|a| a == l).expect("checked above"))
        .collect())
}
