//! Duplicate keys in a request body. serde's derived structs refuse a field given twice, but
//! the free-form parts of a request (`messages`, `tools`, `lora_mixture`, ...) are read as
//! `serde_json::Value`, whose objects keep the last of two equal keys silently; the sender
//! meant one of them, and the server cannot know which.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The path of the first key given twice in the same object of `body` (`messages[0].content`,
/// or `model` at the top), or None. A body that is not JSON is None here: the real parse
/// reports it.
pub fn duplicate_key(body: &[u8]) -> Option<String> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Visits one value at `path`, recording the first repeated key into `found`.
struct Walk<'a> {
    path: String,
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
        let mut keys = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            let path = match self.path.is_empty() {
                true => k.clone(),
                false => format!("{}.{k}", self.path),
            };
            if self.found.is_some() {
                a.next_value::<IgnoredAny>()?;
                continue;
            }
            if !keys.insert(k) {
                *self.found = Some(path);
                a.next_value::<IgnoredAny>()?;
                continue;
            }
            a.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let path = format!("{}[{i}]", self.path);
            if a.next_element_seed(Walk {
                path,
                found: &mut *self.found,
            })?
            .is_none()
            {
                return Ok(());
            }
            i += 1;
        }
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
        for (body, want) in [
            (r#"{"a": 1, "b": [1, {"c": 2}]}"#, None),
            (r#"{"a": 1, "a": 2}"#, Some("a")),
            (r#"{"m": [{"r": 1}, {"r": 1, "r": 2}]}"#, Some("m[1].r")),
            (r#"{"x": {"y": {"z": 1, "z": 1}}, "x": 0}"#, Some("x.y.z")),
            // Equal keys in different objects are fine.
            (r#"{"m": [{"r": 1}, {"r": 2}], "r": 3}"#, None),
            ("not json", None),
        ] {
            assert_eq!(duplicate_key(body.as_bytes()).as_deref(), want, "{body}");
        }
    }
}
