//! PEFT's module selection (`target_modules`, `exclude_modules`, `layers_to_transform` with
//! `layers_pattern`), as PEFT's `check_target_module_exists` applies it
//! (peft/tuners/tuners_utils.py).

use serde_json::Value;

/// A PEFT module selector (`target_modules`, `exclude_modules`), matched against a module's
/// full name (`model.layers.3.self_attn.q_proj`) as PEFT's `check_target_module_exists` does.
pub(super) enum Selector {
    /// One string: a Python regular expression, full-matched (`re.fullmatch`).
    Regex(fancy_regex::Regex, String),
    /// A list: each entry equal to the full name or a dotted suffix of it.
    Names(Vec<String>),
    /// `"all-linear"`: every linear layer of the decoder (not the output head).
    AllLinear,
}

impl Selector {
    pub(super) fn parse(field: &str, v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::String(s) if s == "all-linear" => Ok(Selector::AllLinear),
            Value::String(s) => fancy_regex::Regex::new(&format!("^(?:{s})$"))
                .map(|re| Selector::Regex(re, s.clone()))
                .map_err(|e| {
                    format!("`{field}`: the regular expression `{s}` does not compile: {e}")
                }),
            Value::Array(a) => a
                .iter()
                .map(|m| {
                    m.as_str().map(str::to_string).ok_or_else(|| {
                        format!("`{field}`: every entry must be a module name, found {m}")
                    })
                })
                .collect::<std::result::Result<_, _>>()
                .map(Selector::Names),
            other => Err(format!(
                "`{field}`: expected a module-name list or a regular expression, found {other}"
            )),
        }
    }

    /// Whether it selects the module `key`; `Names` also says whether the match was exact
    /// (PEFT applies `layers_to_transform` only to suffix matches).
    pub(super) fn matches(&self, key: &str) -> (bool, bool) {
        match self {
            Selector::Regex(re, _) => (re.is_match(key).unwrap_or(false), false),
            Selector::Names(names) => {
                let exact = names.iter().any(|n| n == key);
                let suffix = names.iter().any(|n| key.ends_with(&format!(".{n}")));
                (exact || suffix, exact)
            }
            Selector::AllLinear => (true, false),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Selector::Regex(_, s) => format!("the regular expression `{s}`"),
            Selector::Names(n) => format!("{n:?}"),
            Selector::AllLinear => "\"all-linear\"".into(),
        }
    }
}

/// The layer index in a module's full name as PEFT finds it: `.*\.<pattern>\.(\d+)\.` with
/// `layers_pattern`, else `.*\.[^.]*\.(\d+)\.`.
pub(super) fn layer_index(key: &str, pattern: Option<&str>) -> Option<usize> {
    let re = match pattern {
        Some(p) => fancy_regex::Regex::new(&format!(r"^.*\.(?:{p})\.(\d+)\.")).ok()?,
        None => fancy_regex::Regex::new(r"^.*\.[^.]*\.(\d+)\.").ok()?,
    };
    re.captures(key).ok()??.get(1)?.as_str().parse().ok()
}
