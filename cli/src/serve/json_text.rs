//! JSON text as the model wrote it: a member's own text inside an object, and a value's text
//! without the whitespace between its tokens. Tool calls' `arguments` are this text, so that a
//! number keeps its digits (read into serde_json's f64, 98765432109876543210 came back as
//! 9.876543210987654e19 and 1e5 as 100000.0).

use std::collections::HashMap;

use serde_json::value::RawValue;

/// `text`, one JSON value, without the whitespace outside its strings (JSON's four
/// whitespace characters; inside a string everything is kept, escapes included).
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// The text of member `key` of the JSON object `object` as written; None when `object` is
/// not an object or has no such member (a key given twice: its last value, as serde_json
/// reads it; callers refuse such objects first where that matters).
pub fn member<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    members(object)?.get(key).map(|v| v.get())
}

/// Every member of the JSON object `object` by key, each value's text as written; None when
/// `object` is not an object (a key given twice: its last value).
pub fn members(object: &str) -> Option<HashMap<String, &RawValue>> {
    serde_json::from_str(object).ok()
}

/// The text of each item of the JSON list `list` as written; None when it is not a list.
pub fn items(list: &str) -> Option<Vec<&str>> {
    let items: Vec<&RawValue> = serde_json::from_str(list).ok()?;
    Some(items.into_iter().map(RawValue::get).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers_as_written() {
        let text = " { \"n\" : 98765432109876543210 ,\n\t\"s\": \"a  b \\\" , c\\\\\" , \"e\": 1e5,\"f\":[1.0, -0.0] }\r\n";
        assert_eq!(
            compact(text),
            r#"{"n":98765432109876543210,"s":"a  b \" , c\\","e":1e5,"f":[1.0,-0.0]}"#
        );
    }

    #[test]
    fn members_and_items_are_their_own_text() {
        let call = r#"{"name": "f", "arguments": {"n": 1e5, "x": [ 1 ]}}"#;
        assert_eq!(member(call, "arguments"), Some(r#"{"n": 1e5, "x": [ 1 ]}"#));
        assert_eq!(member(call, "name"), Some(r#""f""#));
        assert_eq!(member(call, "parameters"), None);
        assert_eq!(member("[1]", "a"), None);
        let list = r#"[ {"a": 1.50}, 2 ,"x"]"#;
        assert_eq!(items(list), Some(vec![r#"{"a": 1.50}"#, "2", r#""x""#]));
        assert_eq!(items("{}"), None);
    }
}
