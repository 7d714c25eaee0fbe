//! Structured output on the server: OpenAI's `response_format` (`json_object`,
//! `json_schema`), vLLM's `structured_outputs` and its older `guided_json`, `guided_regex`,
//! `guided_choice`, `guided_grammar`, read into an [`OutputFormat`], and compiled against the
//! vocabulary (indexed once, on first use).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dlp_engine::constraint::Constraint;
use dlp_engine::structured::{Grammars, OutputFormat};
use dlp_engine::tokenizer::TextTokenizer;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

use super::error::ApiError;

/// The request's output format and the field it came from (errors name it).
pub type Format = (OutputFormat, Cow<'static, str>);

/// The format fields as sent.
#[derive(Debug, Default)]
pub(super) struct FormatFields {
    pub response_format: Option<Value>,
    pub structured_outputs: Option<Value>,
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Value>,
    pub guided_grammar: Option<String>,
}

/// Reads the format fields; at most one of them may ask for a format.
pub(super) fn output_format(f: FormatFields) -> Result<Option<Format>, ApiError> {
    let mut found: Vec<Format> = Vec::new();
    if let Some(f) = f.response_format.filter(|v| !v.is_null()) {
        if let Some(f) = response(f)? {
            found.push(f);
        }
    }
    if let Some(s) = f.structured_outputs.filter(|v| !v.is_null()) {
        found.extend(structured_outputs(s)?);
    }
    if let Some(s) = f.guided_json.filter(|v| !v.is_null()) {
        found.push((
            OutputFormat::JsonSchema(schema_or_text(s, "guided_json")?),
            "guided_json".into(),
        ));
    }
    if let Some(r) = f.guided_regex {
        found.push((OutputFormat::Regex(r), "guided_regex".into()));
    }
    if let Some(c) = f.guided_choice.filter(|v| !v.is_null()) {
        found.push((
            OutputFormat::Choice(choices(c, "guided_choice")?),
            "guided_choice".into(),
        ));
    }
    if let Some(g) = f.guided_grammar {
        found.push((OutputFormat::Grammar(g), "guided_grammar".into()));
    }
    if found.len() > 1 {
        return Err(ApiError::bad_param(
            found[1].1.clone(),
            format!(
                "`{}` and `{}` both set the output format; give one",
                found[0].1, found[1].1
            ),
        ));
    }
    Ok(found.pop())
}

/// Refuses keys of `v` (at `at`) outside `known`: a misplaced `schema` would otherwise be
/// ignored and the answer left unconstrained.
fn known_keys(v: &Value, at: &str, known: &[&str]) -> Result<(), ApiError> {
    let Value::Object(o) = v else {
        return Err(ApiError::bad_param(
            at,
            format!("`{at}` must be an object, found {v}"),
        ));
    };
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_param(
            format!("{at}.{k}"),
            format!(
                "`{at}` has an unknown field `{k}`{} (expected {})",
                super::body::did_you_mean(k, known),
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// OpenAI's `response_format`.
fn response(f: Value) -> Result<Option<Format>, ApiError> {
    let param = "response_format";
    let kind = f.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "json_schema" => {
            known_keys(&f, param, &["type", "json_schema"])?;
            if let Some(j) = f.get("json_schema") {
                known_keys(
                    j,
                    "response_format.json_schema",
                    &["name", "schema", "strict", "description"],
                )?;
                // Optional here (vLLM's), OpenAI's rule where given.
                let name = j.get("name").filter(|n| !n.is_null());
                if let Some(n) = name.filter(|n| !n.as_str().is_some_and(super::tools::openai_name))
                {
                    return Err(ApiError::bad_param(
                        "response_format.json_schema.name",
                        format!("`response_format.json_schema.name` must be 1 to 64 letters, digits, `_` or `-`, found {n}"),
                    ));
                }
            }
        }
        _ => known_keys(&f, param, &["type"])?,
    }
    Ok(match kind {
        "text" => None,
        "json_object" => Some((OutputFormat::JsonObject, param.into())),
        "json_schema" => {
            let s = f
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .cloned()
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "response_format.json_schema.schema",
                        "`response_format` of type `json_schema` needs `json_schema.schema`, the JSON schema the answer must match",
                    )
                })?;
            let mut s = schema(s, "response_format.json_schema.schema")?;
            let strict = f["json_schema"].get("strict").filter(|v| !v.is_null());
            if let Some(v) = strict.filter(|v| !v.is_boolean()) {
                return Err(ApiError::bad_param(
                    "response_format.json_schema.strict",
                    format!("`response_format.json_schema.strict` must be true or false, found {v}"),
                ));
            }
            if strict.is_some_and(|v| v == true) {
                close_objects(&mut s);
            }
            Some((OutputFormat::JsonSchema(s), param.into()))
        }
        _ => {
            return Err(ApiError::bad_param(
                "response_format.type",
                format!("`response_format` is {f}; its `type` must be `text`, `json_object` or `json_schema`"),
            ))
        }
    })
}

/// OpenAI's `strict: true`: an object schema with `properties` takes no other keys unless it
/// says so (`additionalProperties: false` where absent; OpenAI refuses strict schemas without
/// it, vLLM's default backend assumes it). Walks only the keywords that hold schemas, so a
/// property named `properties` stays a property.
pub(super) fn close_objects(s: &mut Value) {
    let Value::Object(o) = s else { return };
    if o.get("properties").is_some_and(Value::is_object) && !o.contains_key("additionalProperties")
    {
        o.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (k, v) in o.iter_mut() {
        match k.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                if let Value::Object(m) = v {
                    m.values_mut().for_each(close_objects);
                }
            }
            "items" | "additionalProperties" | "not" | "if" | "then" | "else" | "contains" => {
                close_objects(v)
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(a) = v {
                    a.iter_mut().for_each(close_objects);
                }
            }
            _ => {}
        }
    }
}

/// vLLM's `structured_outputs`: one of `json` (a schema, or its JSON text), `regex`,
/// `choice`, `grammar` (Lark) or `json_object: true`; `disable_additional_properties` closes
/// the schema's objects. `disable_any_whitespace` and `disable_fallback` are accepted: JSON
/// is always written without free whitespace, and there is one backend.
fn structured_outputs(v: Value) -> Result<Vec<Format>, ApiError> {
    const AT: &str = "structured_outputs";
    known_keys(
        &v,
        AT,
        &[
            "json",
            "regex",
            "choice",
            "grammar",
            "json_object",
            "disable_additional_properties",
            "disable_any_whitespace",
            "disable_fallback",
        ],
    )?;
    let flag = |k: &str| -> Result<bool, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(ApiError::bad_param(
                format!("{AT}.{k}"),
                format!("`{AT}.{k}` must be true or false, found {other}"),
            )),
        }
    };
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad_param(
                format!("{AT}.{k}"),
                format!("`{AT}.{k}` must be a string, found {other}"),
            )),
        }
    };
    let mut found = Vec::new();
    if let Some(s) = v.get("json").filter(|s| !s.is_null()) {
        let mut s = schema_or_text(s.clone(), "structured_outputs.json")?;
        if flag("disable_additional_properties")? {
            close_objects(&mut s);
        }
        found.push((
            OutputFormat::JsonSchema(s),
            "structured_outputs.json".into(),
        ));
    }
    if let Some(r) = text("regex")? {
        found.push((OutputFormat::Regex(r), "structured_outputs.regex".into()));
    }
    if let Some(c) = v.get("choice").filter(|c| !c.is_null()) {
        let c = choices(c.clone(), "structured_outputs.choice")?;
        found.push((OutputFormat::Choice(c), "structured_outputs.choice".into()));
    }
    if let Some(g) = text("grammar")? {
        found.push((
            OutputFormat::Grammar(g),
            "structured_outputs.grammar".into(),
        ));
    }
    if flag("json_object")? {
        found.push((
            OutputFormat::JsonObject,
            "structured_outputs.json_object".into(),
        ));
    }
    flag("disable_any_whitespace")?;
    flag("disable_fallback")?;
    if found.is_empty() {
        return Err(ApiError::bad_param(
            AT,
            "`structured_outputs` asks for no format: give one of `json`, `regex`, `choice`, `grammar`, `json_object: true`",
        ));
    }
    Ok(found)
}

/// A schema given as an object, or as its JSON text (vLLM takes both).
fn schema_or_text(s: Value, param: &'static str) -> Result<Value, ApiError> {
    let s = match s {
        Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            ApiError::bad_param(param, format!("`{param}` is a string but not JSON: {e}"))
        })?,
        v => v,
    };
    schema(s, param)
}

/// A schema must be an object (or `true`, any JSON value).
fn schema(s: Value, param: &'static str) -> Result<Value, ApiError> {
    match s {
        Value::Object(_) => Ok(s),
        Value::Bool(true) => Ok(serde_json::json!({})),
        other => Err(ApiError::bad_param(
            param,
            format!("`{param}` must be a JSON schema (an object), found {other}"),
        )),
    }
}

/// vLLM's `guided_choice` (at `param`): a non-empty list of non-empty strings.
fn choices(c: Value, param: &str) -> Result<Vec<String>, ApiError> {
    let bad = |what: String| ApiError::bad_param(param, what);
    let Value::Array(list) = c else {
        return Err(bad(format!(
            "`{param}` must be a list of strings, found {c}"
        )));
    };
    if list.is_empty() {
        return Err(bad(format!("`{param}` is empty")));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.is_empty() => Ok(s),
            other => Err(bad(format!(
                "`{param}[{i}]` must be a non-empty string, found {other}"
            ))),
        })
        .collect()
}

/// Whether a request's client has gone (its handler was dropped: the connection closed), for
/// the request's work that runs off the async threads. Clones share the flag.
#[derive(Clone, Default)]
pub struct ClientGone(Arc<AtomicBool>);

impl ClientGone {
    /// A guard for the handler to hold: when it drops (the handler ends or is dropped), the
    /// client counts as gone.
    pub fn guard(&self) -> GoneOnDrop {
        GoneOnDrop(self.clone())
    }

    fn is_gone(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Sets its [`ClientGone`] when dropped.
pub struct GoneOnDrop(ClientGone);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::Release);
    }
}

/// Compiles formats for the server's model; the vocabulary is indexed on the first request
/// that asks for a format.
pub struct Formats {
    tok: Arc<TextTokenizer>,
    vocab: usize,
    eos: Vec<u32>,
    grammars: OnceLock<Result<Grammars, String>>,
    compiling: Mutex<()>,
    /// `dlp_format_compiles_total` and `dlp_format_compiles_abandoned_total`.
    compiled: Counter,
    abandoned: Counter,
}

impl Formats {
    /// For a model of `vocab` logits that stops at `eos`; compiles are counted in
    /// `metrics`' format counters.
    pub fn new(
        tok: Arc<TextTokenizer>,
        vocab: usize,
        eos: Vec<u32>,
        metrics: &super::metrics::Metrics,
    ) -> Self {
        Self {
            tok,
            vocab,
            eos,
            grammars: OnceLock::new(),
            compiling: Mutex::new(()),
            compiled: metrics.format_compiles.clone(),
            abandoned: metrics.format_compiles_abandoned.clone(),
        }
    }

    /// The constraint for `format` (CPU work: call it off the async threads); a 400 naming
    /// its field when it does not compile. Not compiled when `gone` says the client left
    /// while this waited for the compile before it (499, an answer nobody reads).
    pub fn compile(
        &self,
        (format, param): &Format,
        gone: &ClientGone,
    ) -> Result<Constraint, ApiError> {
        // One at a time: a 14 MB schema takes seconds and hundreds of MB to compile, and
        // three at once had raised the server's memory to 3.7 GB.
        let _one = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        // Abandoned requests would otherwise hold up every later one, a compile each.
        if gone.is_gone() {
            self.abandoned.inc();
            return Err(ApiError::status(
                super::error::CLIENT_CLOSED,
                "the client closed the request",
            ));
        }
        self.compiled.inc();
        let grammars = self
            .grammars
            .get_or_init(|| Grammars::new(&self.tok, self.vocab, &self.eos))
            .as_ref()
            .map_err(|e| {
                ApiError::bad_param(
                    param.clone(),
                    format!("structured output is not available for this model: {e}"),
                )
            })?;
        grammars.compile(format).map_err(|e| {
            ApiError::bad_param(param.clone(), format!("`{param}` cannot be used: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::close_objects;
    use serde_json::json;

    #[test]
    fn strict_closes_every_object_schema_and_nothing_else() {
        let mut s = json!({"type": "object",
            "properties": {"properties": {"type": "object", "properties": {"a": {"type": "integer"}}},
                           "open": {"type": "object", "properties": {}, "additionalProperties": true}},
            "$defs": {"D": {"properties": {"x": {"type": "string"}}}},
            "anyOf": [{"properties": {"y": {}}}],
            "items": {"type": "string"}});
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], false);
        // A property named `properties` is a property: its schema is closed, the map is not.
        assert_eq!(s["properties"]["properties"]["additionalProperties"], false);
        assert!(s["properties"].get("additionalProperties").is_none());
        assert_eq!(s["properties"]["open"]["additionalProperties"], true);
        assert_eq!(s["$defs"]["D"]["additionalProperties"], false);
        assert_eq!(s["anyOf"][0]["additionalProperties"], false);
        assert!(s["items"].get("additionalProperties").is_none());
    }
}
