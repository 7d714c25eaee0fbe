//! A bound on the work llguidance spends on a JSON schema's `patternProperties`, checked
//! before it sees the schema. llguidance proves every pair of an object's patterns disjoint
//! (`PatternPropertyCache::check_disjoint`, which caches nothing), and again over the union
//! of both sides each time it merges two object schemas (`allOf` branches, `anyOf`/`oneOf`
//! options and `enum` values beside an object's keys, a `$ref` with siblings). Nothing bounds
//! the total, and a compile cannot be stopped once it runs: every other format waits behind
//! it. Measured on one core (llguidance 1.9.1): 500 simple patterns in one object took 11 s,
//! 1,500 more than 10 minutes; `allOf` of 200 one-pattern branches 12 s; 20 hard patterns
//! (`^(a|b)*a(a|b){25}k0$`) beside 260 `enum` values 16 s, about 0.3 ms per pair checked.

use serde_json::Value;

/// The most pairs of patterns a schema may hold (all its `patternProperties` together): 45
/// patterns make 990; 45 hard ones took 0.5 s in one object.
const MAX_PAIRS: usize = 1_000;

/// The most pair checks a schema may cost: its pairs times one more than its merge sites.
/// About 1 s for hard patterns (0.3 ms a check); simple ones check faster.
const MAX_CHECKS: usize = 3_000;

/// Refuses a schema whose `patternProperties` may cost llguidance more than [`MAX_CHECKS`]
/// pair checks, or hold more than [`MAX_PAIRS`] pairs. Counted over all of `schemas`, on the
/// safe side: `n` patterns in all make `n(n-1)/2` pairs (they may meet in one merge), and
/// every item of an `allOf`/`anyOf`/`oneOf`/`enum` list and every `$ref` may be a merge of
/// them all. A property named like a keyword counts too, which only errs on the strict side.
pub(super) fn check<'a>(schemas: impl IntoIterator<Item = &'a Value>) -> Result<(), String> {
    let (mut patterns, mut merges) = (0usize, 0usize);
    let mut todo: Vec<&Value> = schemas.into_iter().collect();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("patternProperties", Value::Object(p)) => patterns += p.len(),
                        ("allOf" | "anyOf" | "oneOf" | "enum", Value::Array(a)) => {
                            merges += a.len()
                        }
                        ("$ref", _) => merges += 1,
                        _ => {}
                    }
                }
                todo.extend(o.values());
            }
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    let pairs = patterns * patterns.saturating_sub(1) / 2;
    let checks = pairs.saturating_mul(merges + 1);
    if pairs > MAX_PAIRS {
        return Err(format!(
            "the schema's `patternProperties` hold {patterns} patterns in all ({pairs} pairs); \
             at most {MAX_PAIRS} pairs are taken: llguidance proves every pair disjoint, at a \
             cost that grows faster than their square (500 patterns in one object took 11 s); \
             patterns that share a value schema can be one pattern (`^(a|b)$`)"
        ));
    }
    if checks > MAX_CHECKS {
        return Err(format!(
            "the schema's {patterns} `patternProperties` patterns ({pairs} pairs) beside its \
             {merges} `allOf`/`anyOf`/`oneOf`/`enum` items and `$ref`s may cost llguidance \
             {checks} checks of a pair of patterns (it checks them again at each merge of \
             object schemas); at most {MAX_CHECKS} are taken (a check of hard patterns takes \
             0.3 ms): use fewer patterns (those that share a value schema can be one, \
             `^(a|b)$`) or fewer of those items"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, MAX_CHECKS, MAX_PAIRS};
    use crate::structured::OutputFormat;
    use serde_json::{json, Map, Value};

    /// An object with `n` patterns named `{tag}0..`.
    fn patterns(n: usize, tag: &str) -> Value {
        let p: Map<String, Value> = (0..n)
            .map(|i| (format!("^{tag}{i}[a-z]*$"), json!({"type": "integer"})))
            .collect();
        json!({"type": "object", "patternProperties": p})
    }

    /// Schemas whose patterns llguidance would check for more than about a second are refused:
    /// many patterns in one object, patterns spread over objects, and few patterns merged
    /// many times (the shapes measured in the module's note), in Lark's `%json` too.
    #[test]
    fn pattern_property_checks_are_bounded() {
        const { assert!(MAX_PAIRS >= 990 && MAX_PAIRS < 1_035 && MAX_CHECKS == 3_000) };
        let ok = |s: Value| check([&s]).unwrap_or_else(|e| panic!("{e}"));
        let refused = |s: Value| check([&s]).unwrap_err();
        // 45 patterns: 990 pairs; 46: 1,035.
        ok(patterns(45, "k"));
        let e = refused(patterns(46, "k"));
        assert!(e.contains("46 patterns in all (1035 pairs)"), "{e}");
        // Patterns add up across objects (25 + 21 = 46).
        let spread = json!({"properties": {"a": patterns(25, "a"), "b": patterns(21, "b")}});
        assert!(refused(spread).contains("1035 pairs"));
        // `allOf` of 200 one-pattern branches (12 s before): 19,900 pairs.
        let branches: Vec<Value> = (0..200).map(|i| patterns(1, &format!("b{i}x"))).collect();
        assert!(refused(json!({"allOf": branches})).contains("19900 pairs"));
        // 20 patterns (190 pairs) beside 15 enum values: 3,040 checks; beside 14, 2,850.
        let beside = |m: usize| {
            let mut s = patterns(20, "k");
            s["enum"] = Value::Array(vec![json!({}); m]);
            s
        };
        ok(beside(14));
        let e = refused(beside(15));
        assert!(
            e.contains("15 `allOf`/`anyOf`/`oneOf`/`enum` items") && e.contains("3040 checks"),
            "{e}"
        );
        // `$ref`s count as merges; one pattern merges freely (no pair to check).
        let refs: Map<String, Value> = (0..20)
            .map(|j| (format!("o{j}"), json!({"$ref": "#/$defs/P"})))
            .collect();
        let with_defs = |n: usize| json!({"$defs": {"P": patterns(n, "k")}, "properties": refs});
        ok(with_defs(10)); // 45 pairs x 21
        assert!(refused(with_defs(20)).contains("(190 pairs) beside its 20"));
        ok(json!({"allOf": [patterns(1, "k")], "anyOf": vec![json!({}); 10_000]}));
        // Through the format's check, and inside a Lark grammar's `%json`.
        assert!(OutputFormat::JsonSchema(patterns(46, "k")).check().is_err());
        let lark = |s: &Value| OutputFormat::Grammar(format!("start: \"x\" j\nj: %json {s}\n"));
        assert!(lark(&patterns(45, "k")).check().is_ok());
        assert!(lark(&patterns(46, "k"))
            .check()
            .unwrap_err()
            .contains("1035 pairs"));
    }
}
