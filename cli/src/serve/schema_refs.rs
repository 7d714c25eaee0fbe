//! A JSON schema's local references (`$ref: "#/..."`) rewritten when the schema moves:
//! `tool_choice: "required"` puts each tool's parameters inside one list schema.

use serde_json::Value;

/// Keywords whose value maps names to schemas (a property named `const` is a schema).
const MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Keywords whose value is data, not schema (a `$ref` key in it is data too).
const DATA: [&str; 4] = ["const", "enum", "default", "examples"];

/// Calls `f` on every `$ref` of the schema `v` (with `map`, a map of names to schemas),
/// leaving the data keywords' values alone.
fn each_ref(v: &mut Value, map: bool, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) if !map => f(r),
                    (k, _) if !map && DATA.contains(&k) => {}
                    (k, x) => each_ref(x, !map && MAPS.contains(&k), f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| each_ref(x, false, f)),
        _ => {}
    }
}

/// `#/definitions/X` references into `#/$defs/X` (the definitions moved there).
pub fn rename_definitions(v: &mut Value) {
    each_ref(v, false, &mut |r| {
        if let Some(rest) = r.strip_prefix("#/definitions/") {
            *r = format!("#/$defs/{rest}");
        }
    });
}

/// A schema's references into itself (`#`, `#/properties/x`; not `#/$defs/...`, which moved
/// to the root, nor an anchor's `#name`) made to point at `base`, where the schema now sits.
pub fn rebase(v: &mut Value, base: &str) {
    each_ref(v, false, &mut |r| {
        let own = r == "#" || r.starts_with("#/");
        let moved = r.starts_with("#/$defs/") || r.starts_with("#/%24defs/");
        if own && !moved {
            *r = format!("{base}{}", &r[1..]);
        }
    });
}
