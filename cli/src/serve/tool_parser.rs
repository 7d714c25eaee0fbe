//! Parsers of the tool-call syntax a model writes on its own, for `tool_choice: "auto"`; named
//! as vLLM's `--tool-call-parser` names them:
//!
//! - `hermes`: one `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block per call,
//!   anywhere in the answer (Hermes 2 Pro / 3, Qwen2.5 and Qwen3, SmolLM3 and the many models
//!   fine-tuned on that format). Text outside the blocks is the message's content.
//! - `llama3_json`: the whole answer is `{"name": ..., "parameters": {...}}` (or
//!   `"arguments"`), possibly after `<|python_tag|>`, several joined by `;` (Llama 3.1 to 3.3
//!   with JSON tool calling). An answer that does not start with `{` is content.
//!
//! - `mistral`: `[TOOL_CALLS]` then a JSON list of `{"name", "arguments"}` (Mistral 7B v0.3,
//!   Mixtral, Mistral Nemo), or `[TOOL_CALLS]name[ARGS]{...}` / `[TOOL_CALLS]name{...}` per call
//!   (the later tokenizers of Mistral Small 3 and Magistral). Text before it is content.
//!   `[TOOL_CALLS]` is a control token, so such answers are decoded with special tokens shown
//!   (as vLLM's parser asks), and call ids are 9 letters and digits (Mistral's templates
//!   refuse others when the calls are sent back).
//! - `pythonic`: the whole answer is a Python list of calls with keyword arguments,
//!   `[get_weather(city="Paris"), get_time()]` (Llama 3.2 and Llama 4 behind their pythonic
//!   templates, ToolACE); [`super::pythonic`] reads it.
//!
//! A call is returned only when its JSON is whole: anything else stays the message's text, so
//! an answer is never lost to a parse.

use dlp_engine::tokenizer::chat::python_json;
use serde_json::{json, Value};

use super::json_text;

/// A tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolParser {
    /// `<tool_call>{json}</tool_call>` blocks.
    Hermes,
    /// A bare JSON call, or several joined by `;`.
    Llama3Json,
    /// `[TOOL_CALLS][{json}, ...]`, or `[TOOL_CALLS]name[ARGS]{json}` per call.
    Mistral,
    /// `[name(key=value, ...), ...]`, Python literals.
    Pythonic,
}

/// An answer read by a [`ToolParser`]: the text outside the calls (None when it is only
/// whitespace) and the calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The text outside the calls, as written.
    pub content: Option<String>,
    /// The calls in order.
    pub calls: Vec<Call>,
}

/// One call read from an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function's name.
    pub name: String,
    /// Its arguments, a JSON object, as text: the model's own without the whitespace between
    /// tokens, so numbers keep their digits ([`super::json_text`]); a pythonic call's values
    /// written as JSON.
    pub arguments: String,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
/// The format line of vLLM's and Meta's pythonic templates (Llama 3.2, Llama 4).
const PYTHONIC_FORMAT: &str = "[func_name1(";

impl ToolParser {
    /// The parser's name, as `--tool-call-parser` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ToolParser::Hermes => "hermes",
            ToolParser::Llama3Json => "llama3_json",
            ToolParser::Mistral => "mistral",
            ToolParser::Pythonic => "pythonic",
        }
    }

    /// Whether answers must be decoded with special tokens shown for the calls to be read
    /// (`[TOOL_CALLS]` is a control token).
    pub fn needs_special_tokens(self) -> bool {
        self == ToolParser::Mistral
    }

    /// A new call id: Mistral's templates want 9 letters and digits, others take OpenAI's
    /// `call_...`.
    pub fn call_id(self) -> String {
        match self {
            ToolParser::Mistral => {
                const ALNUM: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                (0..9)
                    .map(|_| ALNUM[rand::random_range(0..ALNUM.len())] as char)
                    .collect()
            }
            _ => format!("call_{:016x}", rand::random::<u64>()),
        }
    }

    /// The syntax a chat template writes past tool calls in, when it shows one: `<tool_call>`
    /// blocks of JSON (hermes; not the XML-style arguments of Qwen3-Coder's `<function=...>`
    /// or GLM-4.5's `<arg_key>`, which no parser here reads), the pythonic templates' format
    /// line `[func_name1(params_name1=...` (pythonic), or Llama 3.1's `<|python_tag|>`
    /// (llama3_json).
    pub fn detect(template: &str) -> Option<Self> {
        let xml_arguments = ["<function=", "<arg_key>"]
            .iter()
            .any(|t| template.contains(t));
        if template.contains(MISTRAL_CALLS) {
            Some(ToolParser::Mistral)
        } else if template.contains(HERMES_OPEN) && !xml_arguments {
            Some(ToolParser::Hermes)
        } else if template.contains(PYTHONIC_FORMAT) {
            Some(ToolParser::Pythonic)
        } else if template.contains(PYTHON_TAG) {
            Some(ToolParser::Llama3Json)
        } else {
            None
        }
    }

    /// How many bytes of `text`, the answer so far, are content whatever comes next (a stream
    /// sends them; it holds the rest until the answer ends and is parsed). `from`: a previous
    /// answer for a shorter `text` (no call starts before it), so a stream scans each byte once.
    pub fn content_end(self, text: &str, from: usize) -> usize {
        match self {
            ToolParser::Hermes | ToolParser::Mistral => {
                let open = match self {
                    ToolParser::Hermes => HERMES_OPEN,
                    _ => MISTRAL_CALLS,
                };
                let end = match text[from..].find(open) {
                    Some(i) => from + i,
                    // Hold a tail that may be the start of the opening marker.
                    None => (1..open.len())
                        .rev()
                        .find(|&k| text.ends_with(&open[..k]))
                        .map_or(text.len(), |k| text.len() - k),
                };
                // Whitespace alone before a call is no content (`null`): hold it too.
                if text[..end].trim().is_empty() {
                    0
                } else {
                    end
                }
            }
            ToolParser::Llama3Json | ToolParser::Pythonic => {
                let (open, tag) = match self {
                    ToolParser::Llama3Json => ('{', PYTHON_TAG),
                    _ => ('[', super::pythonic::PYTHON_START),
                };
                let t = text.trim_start();
                let call =
                    t.is_empty() || t.starts_with(open) || t.starts_with(tag) || tag.starts_with(t);
                if call {
                    0
                } else {
                    text.len()
                }
            }
        }
    }

    /// Reads the calls of a whole answer; None when it holds none (or one is not whole JSON
    /// of a `name` and an object of arguments): the answer is then text.
    pub fn parse(self, text: &str) -> Option<Parsed> {
        match self {
            ToolParser::Hermes => hermes(text),
            ToolParser::Llama3Json => llama3_json(text),
            ToolParser::Mistral => mistral(text),
            ToolParser::Pythonic => super::pythonic::parse(text).map(|calls| Parsed {
                content: None,
                calls: (calls.into_iter())
                    .map(|(name, args)| Call {
                        name,
                        arguments: args.to_string(),
                    })
                    .collect(),
            }),
        }
    }

    /// Calls written as the model writes them (for a template that never reads `tool_calls`,
    /// so an earlier turn's calls still reach the model in its own syntax), JSON as templates
    /// write it (`, ` and `: `).
    pub fn write(self, calls: &[(String, Value)]) -> String {
        if self == ToolParser::Pythonic {
            return super::pythonic::write(calls);
        }
        let each = calls.iter().map(|(name, args)| match self {
            ToolParser::Hermes => format!(
                "{HERMES_OPEN}\n{}\n{HERMES_CLOSE}",
                python_json(&json!({"name": name, "arguments": args}))
            ),
            ToolParser::Llama3Json => python_json(&json!({"name": name, "parameters": args})),
            // Mistral (pythonic returned above).
            _ => python_json(&json!({"name": name, "arguments": args})),
        });
        let each = each.collect::<Vec<_>>();
        match self {
            ToolParser::Hermes => each.join("\n"),
            ToolParser::Llama3Json => each.join("; "),
            _ => format!("{MISTRAL_CALLS}[{}]", each.join(", ")),
        }
    }
}

/// A call object written as `raw`, read as `v`: `name` and `arguments` (or `parameters`), an
/// object, kept as written, compacted.
fn call_of(v: &Value, raw: &str) -> Option<Call> {
    let name = v.get("name")?.as_str()?.to_string();
    let key = if v.get("arguments").is_some() {
        "arguments"
    } else {
        "parameters"
    };
    v.get(key)?.is_object().then_some(())?;
    let arguments = json_text::compact(json_text::member(raw, key)?);
    Some(Call { name, arguments })
}

fn content_of(text: String) -> Option<String> {
    (!text.trim().is_empty()).then_some(text)
}

fn hermes(text: &str) -> Option<Parsed> {
    let mut rest = text;
    let mut content = String::new();
    let mut calls = Vec::new();
    while let Some(open) = rest.find(HERMES_OPEN) {
        content.push_str(&rest[..open]);
        // One JSON value (a string in it may hold `</tool_call>`), then the closing tag; the
        // last block may lack it (the model ended the turn instead), or end inside it (an
        // answer cut by `max_tokens` there: the call is whole, as vLLM's parser reads it).
        let body = rest[open + HERMES_OPEN.len()..].trim_start();
        let (v, raw, after) = json_value(body)?;
        calls.push(call_of(&v, raw)?);
        let after = after.trim_start();
        rest = match after.strip_prefix(HERMES_CLOSE) {
            Some(r) => r,
            None if HERMES_CLOSE.starts_with(after) => "",
            None => return None,
        };
    }
    content.push_str(rest);
    (!calls.is_empty()).then(|| Parsed {
        content: content_of(content),
        calls,
    })
}

fn llama3_json(text: &str) -> Option<Parsed> {
    let t = text.trim();
    let mut rest = t.strip_prefix(PYTHON_TAG).unwrap_or(t).trim_start();
    if !rest.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    loop {
        let (v, raw, after) = json_value(rest)?;
        calls.push(call_of(&v, raw)?);
        rest = after.trim_start();
        match rest.strip_prefix(';') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    Some(Parsed {
        content: None,
        calls,
    })
}

fn mistral(text: &str) -> Option<Parsed> {
    let at = text.find(MISTRAL_CALLS)?;
    let mut rest = &text[at + MISTRAL_CALLS.len()..];
    let mut calls = Vec::new();
    loop {
        rest = rest.trim_start();
        let (value, after) = if rest.starts_with('[') {
            // A JSON list of calls (Mistral 7B v0.3's tokenizer).
            let (v, raw, after) = json_value(rest)?;
            let Value::Array(list) = v else { return None };
            for (c, raw) in list.iter().zip(json_text::items(raw)?) {
                calls.push(call_of(c, raw)?);
            }
            (None, after)
        } else {
            // `name[ARGS]{...}` or `name{...}` (later tokenizers).
            let name_end = rest.find(['{', '['])?;
            let name = rest[..name_end].trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return None;
            }
            let args = &rest[name_end..];
            let args = args.strip_prefix(MISTRAL_ARGS).unwrap_or(args);
            let (v, raw, after) = json_value(args)?;
            (Some((name.to_string(), v, raw)), after)
        };
        if let Some((name, args, raw)) = value {
            if !args.is_object() {
                return None;
            }
            let arguments = json_text::compact(raw);
            calls.push(Call { name, arguments });
        }
        rest = after.trim_start();
        match rest.strip_prefix(MISTRAL_CALLS) {
            Some(r) => rest = r,
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    (!calls.is_empty()).then(|| Parsed {
        content: content_of(text[..at].to_string()),
        calls,
    })
}

/// The JSON value at the start of `text`, its text, and the text after it; None where an
/// object in it has a key twice (`{"name": "f", "arguments": {...}, "name": "g"}`: serde keeps
/// the last, which would call `g` with `f`'s arguments), so the answer stays text.
pub(super) fn json_value(text: &str) -> Option<(Value, &str, &str)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let v = values.next()?.ok()?;
    let (value, after) = text.split_at(values.byte_offset());
    match crate::json_keys::duplicate_key(value.as_bytes()) {
        Some(_) => None,
        None => Some((v, value, after)),
    }
}

/// `serve --tool-call-parser`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParserChoice {
    /// The syntax the chat template writes calls in (`<tool_call>`: hermes;
    /// `<|python_tag|>`: llama3_json; `[TOOL_CALLS]`: mistral; `[func_name1(`: pythonic); none
    /// when it shows no calls.
    Auto,
    /// No parser: `tool_choice: "auto"` is refused (forced calls still work).
    None,
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes, Qwen2.5/3).
    Hermes,
    /// A bare `{"name": ..., "parameters": {...}}` answer (Llama 3.1-3.3).
    #[value(name = "llama3_json")]
    Llama3Json,
    /// `[TOOL_CALLS][{"name": ..., "arguments": {...}}]` or `[TOOL_CALLS]name[ARGS]{...}`
    /// (Mistral, Mixtral, Mistral Small, Magistral).
    Mistral,
    /// `[get_weather(city="Paris"), ...]`: a Python list of calls (Llama 3.2 and Llama 4 with
    /// their pythonic templates, ToolACE).
    Pythonic,
}

impl ParserChoice {
    /// The parser this choice gives a model whose chat template is `template`.
    pub fn resolve(self, template: Option<&str>) -> Option<ToolParser> {
        match self {
            ParserChoice::Auto => template.and_then(ToolParser::detect),
            ParserChoice::None => None,
            ParserChoice::Hermes => Some(ToolParser::Hermes),
            ParserChoice::Llama3Json => Some(ToolParser::Llama3Json),
            ParserChoice::Mistral => Some(ToolParser::Mistral),
            ParserChoice::Pythonic => Some(ToolParser::Pythonic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Value) -> (String, Value) {
        (name.to_string(), args)
    }

    /// The calls of `p` with their arguments read back as JSON.
    fn read(p: &Parsed) -> Vec<(String, Value)> {
        (p.calls.iter())
            .map(|c| (c.name.clone(), serde_json::from_str(&c.arguments).unwrap()))
            .collect()
    }

    /// The calls' arguments as written.
    fn texts(p: &Parsed) -> Vec<&str> {
        p.calls.iter().map(|c| c.arguments.as_str()).collect()
    }

    #[test]
    fn hermes_reads_blocks_and_keeps_the_text_around_them() {
        let p = ToolParser::Hermes;
        let text = "Let me look.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"time\", \"arguments\": {}}</tool_call>";
        let got = p.parse(text).unwrap();
        assert_eq!(got.content.as_deref(), Some("Let me look.\n\n"));
        assert_eq!(
            read(&got),
            vec![
                call("weather", json!({"city": "Paris"})),
                call("time", json!({}))
            ]
        );
        // Only whitespace around the calls: no content. A missing closing tag at the end.
        let got = p
            .parse("\n<tool_call>{\"name\": \"f\", \"parameters\": {\"x\": 1}}")
            .unwrap();
        assert_eq!(got.content, None);
        assert_eq!(read(&got), vec![call("f", json!({"x": 1}))]);
        assert_eq!(texts(&got), [r#"{"x":1}"#]);
        // Cut inside the closing tag: the call is whole.
        let got = p
            .parse("<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_")
            .unwrap();
        assert_eq!(read(&got), vec![call("f", json!({"x": 1}))]);
        // No block, a block cut short, arguments that are not an object: text.
        for text in [
            "Paris is sunny.",
            "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": ",
            "<tool_call>{\"name\": \"f\", \"arguments\": \"x=1\"}</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": {}} trailing</tool_call>",
            // A key twice: serde keeps the last, which would call `g` with `f`'s arguments.
            "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}, \"name\": \"g\"}</tool_call>",
            "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1, \"x\": 2}}</tool_call>",
        ] {
            assert_eq!(p.parse(text), None, "{text}");
        }
        for text in [
            "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"x\": 1, \"x\": 2}}]",
            "[TOOL_CALLS]f[ARGS]{\"x\": 1, \"x\": 2}",
        ] {
            assert_eq!(ToolParser::Mistral.parse(text), None, "{text}");
        }
        let twice = "{\"name\": \"f\", \"parameters\": {}, \"name\": \"g\"}";
        assert_eq!(ToolParser::Llama3Json.parse(twice), None);
        // A closing tag inside an argument is the argument's.
        let got = p
            .parse("<tool_call>{\"name\": \"f\", \"arguments\": {\"q\": \"a </tool_call> b\"}}</tool_call> done")
            .unwrap();
        assert_eq!(
            read(&got),
            vec![call("f", json!({"q": "a </tool_call> b"}))]
        );
        assert_eq!(got.content.as_deref(), Some(" done"));
        // What write gives, parse reads back.
        let calls = vec![call("f", json!({"x": [1, "a"]})), call("g", json!({}))];
        assert_eq!(read(&p.parse(&p.write(&calls)).unwrap()), calls);
    }

    #[test]
    fn llama3_json_reads_a_bare_call_or_several() {
        let p = ToolParser::Llama3Json;
        let got = p
            .parse("{\"name\": \"f\", \"parameters\": {\"x\": 1}}")
            .unwrap();
        assert_eq!(
            (got.content.clone(), read(&got)),
            (None, vec![call("f", json!({"x": 1}))])
        );
        let got = p
            .parse("<|python_tag|>{\"name\": \"f\", \"arguments\": {}}; {\"name\": \"g\", \"parameters\": {\"y\": \"z\"}}\n")
            .unwrap();
        assert_eq!(texts(&got), ["{}", r#"{"y":"z"}"#]);
        assert_eq!(
            read(&got),
            vec![call("f", json!({})), call("g", json!({"y": "z"}))]
        );
        for text in [
            "The answer is {\"name\": \"f\"}",
            "{\"name\": \"f\", \"parameters\": {}} and more",
            "{\"name\": \"f\", \"parameters\": {",
            "{\"x\": 1}",
        ] {
            assert_eq!(p.parse(text), None, "{text}");
        }
        let calls = vec![call("f", json!({"x": 1})), call("g", json!({}))];
        assert_eq!(read(&p.parse(&p.write(&calls)).unwrap()), calls);
    }

    #[test]
    fn mistral_reads_a_list_or_calls_by_name() {
        let p = ToolParser::Mistral;
        let got = p
            .parse("Checking.[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"x\": 1}}, {\"name\": \"g\", \"arguments\": {}}]")
            .unwrap();
        assert_eq!(got.content.as_deref(), Some("Checking."));
        assert_eq!(
            read(&got),
            vec![call("f", json!({"x": 1})), call("g", json!({}))]
        );
        assert_eq!(texts(&got), [r#"{"x":1}"#, "{}"]);
        let got = p
            .parse("[TOOL_CALLS]f[ARGS]{\"x\": 1.50}[TOOL_CALLS]g{}")
            .unwrap();
        assert_eq!(texts(&got), [r#"{"x":1.50}"#, "{}"]);
        let got = p
            .parse("[TOOL_CALLS]f[ARGS]{\"x\": 1}[TOOL_CALLS]g{}")
            .unwrap();
        assert_eq!(got.content, None);
        assert_eq!(
            read(&got),
            vec![call("f", json!({"x": 1})), call("g", json!({}))]
        );
        for text in [
            "No call here.",
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {",
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": \"x\"}]",
            "[TOOL_CALLS]f[ARGS]{\"x\": 1} trailing",
            "[TOOL_CALLS]two words{}",
            "[TOOL_CALLS][]",
        ] {
            assert_eq!(p.parse(text), None, "{text}");
        }
        let calls = vec![call("f", json!({"x": [1, "a"]})), call("g", json!({}))];
        assert_eq!(read(&p.parse(&p.write(&calls)).unwrap()), calls);
        assert_eq!(p.content_end("Sure [TOOL", 0), 5);
        assert_eq!(p.content_end("Sure [TOOL_CALLS][{", 0), 5);
        let id = p.call_id();
        assert!(
            id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
        assert!(ToolParser::Hermes.call_id().starts_with("call_"));
    }

    /// A stream sends what is surely content and holds what may be a call.
    #[test]
    fn streams_hold_only_what_may_be_a_call() {
        let h = ToolParser::Hermes;
        assert_eq!(h.content_end("Hello", 0), 5);
        assert_eq!(h.content_end("Hello <tool", 0), 6);
        assert_eq!(h.content_end("Hello <", 0), 6);
        assert_eq!(h.content_end("a < b", 0), 5);
        assert_eq!(h.content_end("Hi <tool_call>{\"na", 0), 3);
        assert_eq!(h.content_end("été <tool_", 0), "été ".len());
        assert_eq!(h.content_end("\n", 0), 0);
        assert_eq!(h.content_end("\n <tool_call>{", 0), 0);
        assert_eq!(h.content_end("\nHi", 0), 3);
        // From an earlier answer on, as a stream calls it.
        assert_eq!(h.content_end("Hi <tool_call>{\"na", 3), 3);
        assert_eq!(h.content_end("Hello world <t", 5), 12);
        let py = ToolParser::Pythonic;
        assert_eq!(py.content_end(" \n", 0), 0);
        assert_eq!(py.content_end("[get_weather(city=", 0), 0);
        assert_eq!(py.content_end("<|python_st", 0), 0);
        assert_eq!(py.content_end("Sure", 0), 4);
        let l = ToolParser::Llama3Json;
        assert_eq!(l.content_end("", 0), 0);
        assert_eq!(l.content_end("  ", 0), 0);
        assert_eq!(l.content_end(" {\"name", 0), 0);
        assert_eq!(l.content_end("<|py", 0), 0);
        assert_eq!(l.content_end("Sure", 0), 4);
        assert_eq!(l.content_end("<b>", 0), 3);
    }

    #[test]
    fn templates_name_their_syntax() {
        let qwen = "{%- for tool in tools %}...<tool_call>\\n{\"name\": ...}</tool_call>";
        assert_eq!(ToolParser::detect(qwen), Some(ToolParser::Hermes));
        let llama = "{{- '<|python_tag|>' + tool_call.name + '.call(' }}";
        assert_eq!(ToolParser::detect(llama), Some(ToolParser::Llama3Json));
        assert_eq!(ToolParser::detect("{{ messages }}"), None);
        let coder = "<tool_call>\n<function={{ tool_call.name }}>";
        assert_eq!(ToolParser::detect(coder), None);
        let mistral =
            "{%- if message.tool_calls %}[TOOL_CALLS][{%- for tool in message.tool_calls %}";
        assert_eq!(ToolParser::detect(mistral), Some(ToolParser::Mistral));
        let pythonic = "{{- 'Respond in the format [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)] ' }}";
        assert_eq!(ToolParser::detect(pythonic), Some(ToolParser::Pythonic));
    }

    #[test]
    fn pythonic_reads_a_list_of_calls() {
        let p = ToolParser::Pythonic;
        let got = p
            .parse("[get_weather(city=\"Paris\"), get_time()]")
            .unwrap();
        assert_eq!(got.content, None);
        assert_eq!(
            read(&got),
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("get_time", json!({}))
            ]
        );
        assert_eq!(p.parse("[links](https://example.com)"), None);
        let calls = vec![call("f", json!({"x": [1, "a"]})), call("g", json!({}))];
        assert_eq!(p.write(&calls), "[f(x=[1, \"a\"]), g()]");
        assert_eq!(read(&p.parse(&p.write(&calls)).unwrap()), calls);
        assert!(p.call_id().starts_with("call_"));
    }
}
