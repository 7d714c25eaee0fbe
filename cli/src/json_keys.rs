//! Duplicate keys in JSON input. serde's derived structs refuse a field given twice, but the
//! free-form parts of a request or a prompts line (`messages`, `tools`, `lora_mixture`, ...) are
//! read as `serde_json::Value`, whose objects keep the last of two equal keys silently; the
//! sender meant one of them, and the reader cannot know which.

use std::collections::HashSet;
use std::fmt::{self, Write};

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Longest key written out in a path; longer ones are cut (a path goes into error messages).
const MAX_KEY_CHARS: usize = 64;

/// The path of the first key given twice in the same object of `json` (`messages[0].content`,
/// or `model` at the top), or None. Input that is not JSON is None here: the real parse
/// reports it. Costs one pass over the input (serde_json's depth limit of 128 applies).
pub fn duplicate_key(json: &[u8]) -> Option<String> {
    let mut path = Vec::new();
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    let _ = Walk {
        path: &mut path,
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// One step of a path.
enum Seg {
    Key(String),
    Index(usize),
}

/// Writes `path` as `a.b[2].c`, long keys cut.
fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.extend(k.chars().take(MAX_KEY_CHARS));
                if k.chars().nth(MAX_KEY_CHARS).is_some() {
                    s.push('…');
                }
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// Visits one value at `path` (pushed and popped in place: no copy per value), recording the
/// first repeated key in `found` and then stopping the walk with an error.
struct Walk<'a> {
    path: &'a mut Vec<Seg>,
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            let repeated = keys.contains(&k);
            self.path.push(Seg::Key(k));
            if repeated {
                *self.found = Some(render(self.path));
                return Err(A::Error::custom("duplicate key"));
            }
            a.next_value_seed(Walk {
                path: &mut *self.path,
                found: &mut *self.found,
            })?;
            if let Some(Seg::Key(k)) = self.path.pop() {
                keys.insert(k);
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        for i in 0.. {
            self.path.push(Seg::Index(i));
            let more = a
                .next_element_seed(Walk {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?
                .is_some();
            self.path.pop();
            if !more {
                break;
            }
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_key;

    #[test]
    fn the_first_repeated_key_is_named_by_its_path() {
        let long = "k".repeat(100);
        let long_dup = format!(r#"{{"{long}": [{{"a": 1, "a": 2}}]}}"#);
        let cut = format!("{}…[0].a", "k".repeat(64));
        for (body, want) in [
            (r#"{"a": 1, "b": [1, {"c": 2}]}"#, None),
            (r#"{"a": 1, "a": 2}"#, Some("a")),
            (r#"{"m": [{"r": 1}, {"r": 1, "r": 2}]}"#, Some("m[1].r")),
            (r#"{"x": {"y": {"z": 1, "z": 1}}, "x": 0}"#, Some("x.y.z")),
            // Equal keys in different objects are fine.
            (r#"{"m": [{"r": 1}, {"r": 2}], "r": 3}"#, None),
            (&long_dup, Some(cut.as_str())),
            ("not json", None),
        ] {
            assert_eq!(duplicate_key(body.as_bytes()).as_deref(), want, "{body}");
        }
    }
}
