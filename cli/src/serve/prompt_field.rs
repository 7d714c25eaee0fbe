//! The `prompt` field of `/v1/completions`, read straight into strings and token ids: a
//! string, a list of strings, a list of token ids, or a list of such lists. Read as a JSON
//! value, a 16 MiB list of ids held about 70 bytes per id for a moment (5.5 M ids: +380 MB of
//! memory); here each id takes 4. A malformed prompt is kept as the error to answer, with its
//! own `param` (`prompt[2][0]`), and the rest of the list is skipped.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::api::PromptInput;
use super::error::ApiError;

/// `prompt` as sent.
#[derive(Debug)]
pub enum PromptField {
    /// One text.
    Text(String),
    /// A batch of texts.
    Texts(Vec<String>),
    /// One prompt of token ids.
    Ids(Vec<u32>),
    /// A batch of prompts of token ids.
    IdLists(Vec<Vec<u32>>),
    /// What was wrong, for the 400: (`param`, message).
    Bad(String, String),
}

impl PromptField {
    /// Whether the prompt came as a list of prompts (errors then name `prompt[k]`).
    pub fn is_list(&self) -> bool {
        matches!(self, PromptField::Texts(_) | PromptField::IdLists(_))
    }

    /// The prompts, or the 400 for a malformed field (`None`: missing or null).
    pub fn into_inputs(f: Option<PromptField>) -> Result<Vec<PromptInput>, ApiError> {
        Ok(match f {
            None => {
                return Err(ApiError::bad_param(
                    "prompt",
                    "`prompt` is required: a string, a list of strings, or token ids",
                ))
            }
            Some(PromptField::Text(s)) => vec![PromptInput::Text(s)],
            Some(PromptField::Texts(t)) => t.into_iter().map(PromptInput::Text).collect(),
            Some(PromptField::Ids(ids)) => vec![PromptInput::Ids(ids)],
            Some(PromptField::IdLists(l)) => l.into_iter().map(PromptInput::Ids).collect(),
            Some(PromptField::Bad(param, msg)) => return Err(ApiError::bad_param(param, msg)),
        })
    }
}

/// One list element, as far as its kind: what the first element says the list holds.
enum Element {
    Text(String),
    Id(Result<u32, String>),
    Ids(Result<Vec<u32>, (usize, String)>),
    /// Anything else, as JSON (for the message).
    Other(Value),
}

impl Element {
    /// The element as a message shows it.
    fn shown(self) -> String {
        match self {
            Element::Text(t) => Value::String(t).to_string(),
            Element::Id(Ok(id)) => id.to_string(),
            Element::Id(Err(v)) => v,
            Element::Ids(_) => "a list".to_string(),
            Element::Other(v) => v.to_string(),
        }
    }
}

/// A token id, or the offending value as written.
fn id_of_u64(v: u64) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| v.to_string())
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a token id or a list of token ids")
            }
            fn visit_str<E>(self, s: &str) -> Result<Element, E> {
                Ok(Element::Text(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Element, E> {
                Ok(Element::Text(s))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Element, E> {
                Ok(Element::Id(id_of_u64(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Element, E> {
                Ok(Element::Id(
                    u64::try_from(v).map_or_else(|_| Err(v.to_string()), id_of_u64),
                ))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Element, E> {
                Ok(Element::Id(Err(Value::from(v).to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Element, E> {
                Ok(Element::Other(Value::Bool(v)))
            }
            fn visit_unit<E>(self) -> Result<Element, E> {
                Ok(Element::Other(Value::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Element, A::Error> {
                Ok(Element::Other(Value::deserialize(
                    MapAccessDeserializer::new(m),
                )?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Element, A::Error> {
                let mut ids = Vec::new();
                while let Some(e) = s.next_element::<Element>()? {
                    if let Element::Id(Ok(id)) = e {
                        ids.push(id);
                        continue;
                    }
                    let at = ids.len();
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Element::Ids(Err((at, e.shown()))));
                }
                Ok(Element::Ids(Ok(ids)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for PromptField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a list of strings, or token ids")
            }
            fn visit_str<E>(self, s: &str) -> Result<PromptField, E> {
                Ok(PromptField::Text(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<PromptField, E> {
                Ok(PromptField::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<PromptField, A::Error> {
                let mut list = List::Empty;
                let mut i = 0;
                while let Some(e) = s.next_element::<Element>()? {
                    if let Err(bad) = list.push(i, e) {
                        while s.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(bad);
                    }
                    i += 1;
                }
                Ok(list.done())
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<PromptField, A::Error> {
                let v = Value::deserialize(MapAccessDeserializer::new(m))?;
                Ok(not_a_prompt(&v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<PromptField, E> {
                Ok(not_a_prompt(&Value::from(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<PromptField, E> {
                Ok(not_a_prompt(&Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<PromptField, E> {
                Ok(not_a_prompt(&Value::from(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<PromptField, E> {
                Ok(not_a_prompt(&Value::Bool(v)))
            }
        }
        d.deserialize_any(V)
    }
}

fn not_a_prompt(v: &Value) -> PromptField {
    PromptField::Bad(
        "prompt".into(),
        format!("`prompt` must be a string, a list of strings, or token ids; found {v}"),
    )
}

/// A list being read: its kind is the first element's.
enum List {
    Empty,
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

impl List {
    /// Adds element `i`, or gives the error to answer.
    fn push(&mut self, i: usize, e: Element) -> Result<(), PromptField> {
        let bad = |param: String, msg: String| Err(PromptField::Bad(param, msg));
        match (&mut *self, e) {
            (List::Empty, Element::Text(t)) => *self = List::Texts(vec![t]),
            (List::Empty, Element::Id(Ok(id))) => *self = List::Ids(vec![id]),
            (List::Empty, Element::Ids(Ok(ids))) => *self = List::IdLists(vec![ids]),
            (List::Ids(v), Element::Id(Ok(id))) => v.push(id),
            (List::Texts(v), Element::Text(t)) => v.push(t),
            (List::IdLists(v), Element::Ids(Ok(ids))) => v.push(ids),
            (List::Empty | List::IdLists(_), Element::Ids(Err((j, v)))) => {
                return bad(
                    format!("prompt[{i}][{j}]"),
                    format!("`prompt[{i}][{j}]` is {v}; token ids must be integers >= 0"),
                )
            }
            (List::Texts(_), e) => {
                return bad(
                    format!("prompt[{i}]"),
                    format!(
                        "`prompt[{i}]` must be a string like the first entry, found {}",
                        e.shown()
                    ),
                )
            }
            (List::Empty, e @ Element::Id(Err(_))) | (List::Ids(_), e) => {
                return bad(
                    format!("prompt[{i}]"),
                    format!(
                        "`prompt[{i}]` is {}; token ids must be integers >= 0",
                        e.shown()
                    ),
                )
            }
            (List::Empty, e) => {
                return bad(
                    "prompt".into(),
                    format!(
                    "`prompt` entries must be strings, token ids or lists of token ids, found {}",
                    e.shown()
                ),
                )
            }
            (List::IdLists(_), e) => {
                return bad(
                    format!("prompt[{i}]"),
                    format!(
                        "`prompt[{i}]` must be a list of token ids like the first entry, found {}",
                        e.shown()
                    ),
                )
            }
        }
        Ok(())
    }

    fn done(self) -> PromptField {
        match self {
            List::Empty => PromptField::Bad("prompt".into(), "`prompt` is an empty list".into()),
            List::Texts(v) => PromptField::Texts(v),
            List::Ids(v) => PromptField::Ids(v),
            List::IdLists(v) => PromptField::IdLists(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Option<PromptField> {
        serde_json::from_str(json).unwrap()
    }

    fn bad(json: &str) -> (String, String) {
        match read(json) {
            Some(PromptField::Bad(p, m)) => (p, m),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn reads_each_shape_into_ids_and_texts() {
        assert!(matches!(read(r#""hi""#), Some(PromptField::Text(t)) if t == "hi"));
        assert!(matches!(read(r#"["a","b"]"#), Some(PromptField::Texts(t)) if t == ["a", "b"]));
        assert!(matches!(read("[1,4294967295]"), Some(PromptField::Ids(v)) if v == [1, u32::MAX]));
        assert!(
            matches!(read("[[1],[2,3],[]]"), Some(PromptField::IdLists(v)) if v == [vec![1], vec![2, 3], vec![]])
        );
        assert!(read("null").is_none());
    }

    #[test]
    fn a_bad_prompt_names_its_place() {
        for (json, param, words) in [
            (
                "[1,-3]",
                "prompt[1]",
                "`prompt[1]` is -3; token ids must be integers >= 0",
            ),
            ("[1.5]", "prompt[0]", "`prompt[0]` is 1.5"),
            ("[4294967296]", "prompt[0]", "is 4294967296"),
            ("[1,\"x\"]", "prompt[1]", "`prompt[1]` is \"x\""),
            ("[[1],[2],[-5]]", "prompt[2][0]", "`prompt[2][0]` is -5"),
            ("[[1],[2,{\"a\":1}]]", "prompt[1][1]", "is {\"a\":1}"),
            (
                "[[1],5]",
                "prompt[1]",
                "must be a list of token ids like the first entry, found 5",
            ),
            (
                "[\"a\",[1]]",
                "prompt[1]",
                "must be a string like the first entry, found a list",
            ),
            ("[]", "prompt", "an empty list"),
            (
                "[true]",
                "prompt",
                "entries must be strings, token ids or lists of token ids, found true",
            ),
            (
                "{\"a\":1}",
                "prompt",
                "must be a string, a list of strings, or token ids; found {\"a\":1}",
            ),
            ("7", "prompt", "found 7"),
        ] {
            let (p, m) = bad(json);
            assert_eq!(p, param, "{json}: {m}");
            assert!(m.contains(words), "{json}: {m}");
        }
    }

    /// A bad element ends the list's reading, not the body's: the fields after it still parse.
    #[test]
    fn the_rest_of_the_body_still_parses() {
        #[derive(Deserialize)]
        struct B {
            prompt: Option<PromptField>,
            after: u32,
        }
        let b: B =
            serde_json::from_str(r#"{"prompt": [1, -3, [4, 5], {"x": [6]}], "after": 7}"#).unwrap();
        assert!(matches!(b.prompt, Some(PromptField::Bad(..))));
        assert_eq!(b.after, 7);
    }
}
