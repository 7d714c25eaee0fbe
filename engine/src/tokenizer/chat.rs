//! Chat templates rendered with minijinja in transformers' Jinja2 environment: `trim_blocks` +
//! `lstrip_blocks`, loop controls (`{% break %}`, `{% continue %}`), the `{% generation %}`
//! block (its body rendered), `raise_exception`, `strftime_now`, a `tojson` that prints like
//! Python's `json.dumps`, `namespace()`, Python's string / dict / list methods
//! (minijinja-contrib's `pycompat`), `%` formatting of strings, and the variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `pad_token`, `unk_token`,
//! `tools` and `documents` (None when not given).

use std::sync::LazyLock;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{context, Environment, ErrorKind, Value};

use super::{ChatRequest, SpecialTokens};

mod methods;
mod percent;
mod python;
use crate::error::{Error, Result};

/// `{% generation %}` / `{% endgeneration %}` (with their whitespace markers): transformers'
/// extension marks the assistant's tokens with it and renders the body unchanged.
static GENERATION_TAG: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\{%(-?)\s*(end)?generation\s*(-?)%\}").expect("valid regex")
});

/// A message's content: `X.content`, `X['content']` or `X.get('content')`, `X` a name, maybe
/// indexed (`messages[0]`, `messages[i]`).
const CONTENT: &str = r#"\w+(?:\[\s*-?\w+\s*\])?\s*(?:\.\s*content\b|\[\s*['"]content['"]\s*\]|\.\s*get\(\s*['"]content['"]\s*\))"#;

/// `{% for ... in CONTENT %}`: the template reads a list of parts itself.
static ITERATES_CONTENT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(&format!(r"\bfor\s+\w+(?:\s*,\s*\w+)?\s+in\s+{CONTENT}"))
        .expect("valid regex")
});

/// `{% set NAME = CONTENT %}` (filters allowed: `| selectattr(...) | list`): an alias a
/// template may loop over instead.
static CONTENT_ALIAS: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(&format!(
        r"\bset\s+(\w+)\s*=\s*{CONTENT}\s*(?:\|[^%]*)?[-%]"
    ))
    .expect("valid regex")
});

/// `{% for ... in NAME %}` (also with a filter or an `if`): the name a loop walks.
static LOOPED_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\bfor\s+\w+(?:\s*,\s*\w+)?\s+in\s+(\w+)\s*(?:[-%|]|if\b)")
        .expect("valid regex")
});

/// `content is string` (`is not string`, `is iterable`, ...), also `['content']`: with a loop
/// over a name `content`, a template that tells text from a list of parts itself in a macro
/// taking the content as an argument (`render_content(message.content)`: Qwen3.5's, LFM2.5's).
/// Alone it is not enough: Qwen3's and SmolLM3's templates test it and render parts as ''.
static TESTS_CONTENT_TYPE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r#"(?:\bcontent|\[\s*['"]content['"]\s*\])\s+is\s+(?:not\s+)?(?:string|iterable|sequence|mapping)\b"#,
    )
    .expect("valid regex")
});

/// Whether `template` reads a message's content as a list itself: it loops over it, directly
/// or through an alias set from it (`{% set c = message['content'] %}{% for p in c %}`, which
/// vLLM's detection follows too), or tests its type and loops over a `content`.
fn iterates_content(template: &str) -> bool {
    let loops_content = || (LOOPED_NAME.captures_iter(template)).any(|c| &c[1] == "content");
    if ITERATES_CONTENT.is_match(template)
        || (TESTS_CONTENT_TYPE.is_match(template) && loops_content())
    {
        return true;
    }
    let aliases: Vec<&str> = (CONTENT_ALIAS.captures_iter(template))
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    !aliases.is_empty()
        && (LOOPED_NAME.captures_iter(template))
            .any(|c| c.get(1).is_some_and(|m| aliases.contains(&m.as_str())))
}

/// The messages as the template sees them. A template that never loops over a message's
/// content (most: they concatenate it as a string) gets each list of text parts as one string,
/// the parts' texts joined by newlines, as vLLM does for such templates; transformers would fail
/// (`+` of a string and a list) or print the list. Other content is passed as given.
fn template_messages(template: &str, req: &ChatRequest) -> Value {
    if iterates_content(template) {
        return Value::from_serialize(&req.messages);
    }
    let messages: Vec<serde_json::Map<String, serde_json::Value>> = req
        .messages
        .iter()
        .map(|m| {
            let mut f = m.fields().clone();
            // Every part a text part: their texts, joined.
            let joined = match f.get("content") {
                Some(serde_json::Value::Array(parts)) => parts
                    .iter()
                    .map(super::text_of_part)
                    .collect::<Option<Vec<_>>>()
                    .map(|texts| texts.join(super::messages::PARTS_JOIN)),
                _ => None,
            };
            if let Some(joined) = joined {
                f.insert("content".into(), joined.into());
            }
            f
        })
        .collect();
    Value::from_serialize(&messages)
}

/// The template text minijinja can compile: line ends made `\n` (Jinja2's lexer does so, in
/// string literals too: a template saved with CRLF renders `\n`), `{% generation %}` blocks
/// made plain `if true` blocks (same whitespace control), string `%` formatting made function
/// calls and Python's string escapes minijinja's.
fn prepare(template: &str) -> String {
    let template = template.replace("\r\n", "\n").replace('\r', "\n");
    let t = GENERATION_TAG.replace_all(&template, |c: &regex::Captures| {
        let (l, r) = (&c[1], &c[3]);
        match c.get(2) {
            Some(_) => format!("{{%{l} endif {r}%}}"),
            None => format!("{{%{l} if true {r}%}}"),
        }
    });
    percent::rewrite(&t)
}

/// Python's `datetime.now().strftime(format)` in local time.
fn strftime_now(format: String) -> std::result::Result<Value, minijinja::Error> {
    #[cfg(unix)]
    {
        let c_fmt = std::ffi::CString::new(format.clone()).map_err(|_| {
            minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now: NUL in format")
        })?;
        let mut buf = vec![0u8; 256 + 4 * format.len()];
        // SAFETY: `time`, `localtime_r` and `strftime` get valid pointers: a local time_t, a
        // zeroed tm to fill, a buffer of `buf.len()` bytes and a NUL-terminated format.
        let n = unsafe {
            let t = libc::time(std::ptr::null_mut());
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "strftime_now: no local time",
                ));
            }
            libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_fmt.as_ptr(), &tm)
        };
        buf.truncate(n);
        Ok(Value::from(String::from_utf8_lossy(&buf).into_owned()))
    }
    #[cfg(not(unix))]
    {
        let _ = format;
        Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "strftime_now needs a Unix system",
        ))
    }
}

/// Whether `template` reads a message's `tool_calls` (else [`render`] refuses them).
pub fn reads_tool_calls(template: &str) -> bool {
    template.contains("tool_calls")
}

/// Renders `template` for `req`. A message with `tool_calls` is refused when the template never
/// reads them: they would be dropped without a word (or, on an assistant turn without text,
/// the template fails on its missing content with a Jinja error that names neither).
pub(super) fn render(
    template: &str,
    name: &str,
    req: &ChatRequest,
    special: &SpecialTokens,
) -> Result<String> {
    if !reads_tool_calls(template) {
        if let Some(i) = req
            .messages
            .iter()
            .position(|m| m.0.contains_key("tool_calls"))
        {
            return Err(Error::invalid(format!(
                "messages[{i}].tool_calls: this model's chat template never reads `tool_calls` \
                 (it renders text turns only); give the call as the message's text content"
            )));
        }
    }
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // minijinja picks escaping from the template's name (`.json`, `.html`); the name here is
    // the template's origin, and transformers never escapes.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(methods::unknown_method);
    env.add_filter("tojson", tojson);
    // Python's str() for printed values, and Jinja2's own indent and tests.
    env.set_formatter(python::formatter);
    env.add_filter("string", python::string);
    env.add_filter("join", python::join);
    env.add_filter("trim", python::trim);
    env.add_filter("indent", python::indent);
    env.add_test("iterable", python::is_iterable);
    env.add_test("sequence", python::is_sequence);
    env.add_test("number", python::is_number);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", strftime_now);
    env.add_function(percent::FUNCTION, percent::percent_format);
    // A template's loops have no bound of their own (two nested `range(100000)` spun for
    // minutes): a budget of steps, growing with the conversation.
    let fuel = TEMPLATE_FUEL + TEMPLATE_FUEL_PER_MESSAGE * req.messages.len() as u64;
    env.set_fuel(Some(fuel));
    let fail = |e: minijinja::Error| {
        if e.kind() == ErrorKind::OutOfFuel {
            return Error::invalid(format!(
                "chat template ({name}): it ran past {fuel} steps ({TEMPLATE_FUEL} and \
                 {TEMPLATE_FUEL_PER_MESSAGE} per message) without finishing: a loop that does \
                 not end, or one far longer than a conversation needs"
            ));
        }
        let mut msg = format!("chat template: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        Error::invalid(msg)
    };
    let source = prepare(template);
    env.add_template(name, &source).map_err(fail)?;
    let tmpl = env.get_template(name).map_err(fail)?;
    let opt = |v: &Option<serde_json::Value>| match v {
        Some(v) => Value::from_serialize(v),
        None => Value::from(()),
    };
    if req.continue_final_message && req.add_generation_prompt {
        return Err(Error::invalid(
            "`continue_final_message` and `add_generation_prompt` cannot both be set: the first continues the last message, the second opens a new turn",
        ));
    }
    if let Some(k) = (req.template_kwargs.keys()).find(|k| RENDERER_SETS.contains(&k.as_str())) {
        return Err(Error::invalid(format!(
            "`{k}` is set by the renderer (a request field or one of its names); it cannot be given as a template keyword argument"
        )));
    }
    let (marked, renamed);
    let req = match developer_as_system(template, req) {
        Some(r) => {
            renamed = r;
            &renamed
        }
        None => req,
    };
    let req = match req.continue_final_message {
        true => {
            marked = mark_final(req)?;
            &marked
        }
        false => req,
    };
    let text = tmpl
        .render(context! {
            messages => template_messages(template, req),
            add_generation_prompt => req.add_generation_prompt,
            tools => opt(&req.tools),
            documents => opt(&req.documents),
            bos_token => special.bos.as_deref().unwrap_or(""),
            eos_token => special.eos.as_deref().unwrap_or(""),
            pad_token => special.pad.as_deref().unwrap_or(""),
            unk_token => special.unk.as_deref().unwrap_or(""),
            ..Value::from_serialize(&req.template_kwargs)
        })
        .map_err(fail)?;
    if req.continue_final_message {
        return cut_at_mark(text, req);
    }
    Ok(text)
}

/// The names [`render`] sets or reads from the request itself, and its functions: keyword
/// arguments may not replace them (vLLM would let `continue_final_message` there override the
/// request's; here the request's field says it).
pub const RENDERER_SETS: [&str; 14] = [
    "messages",
    "add_generation_prompt",
    "continue_final_message",
    "tools",
    "documents",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "chat_template",
    "tokenize",
    "raise_exception",
    "strftime_now",
    "__percent_format",
];

/// The steps (minijinja's fuel: about one per instruction) a template may take, and more
/// per message. SmolLM2's and Llama 3's templates take a few hundred per message; 1e10
/// steps of a runaway loop would take minutes.
const TEMPLATE_FUEL: u64 = 20_000_000;
const TEMPLATE_FUEL_PER_MESSAGE: u64 = 100_000;

/// Marks the end of the final message's text for `continue_final_message` (private-use
/// characters no tokenizer text or template writes).
const CONTINUE_HERE: &str = "\u{F8FF}dlp-continue\u{F8FE}";

/// OpenAI's `developer` role is its `system` turn under another name (o1 and later); a template
/// that never names the role would render an unknown one or drop the turn without a word, so
/// there it becomes `system`. None when nothing changes.
fn developer_as_system(template: &str, req: &ChatRequest) -> Option<ChatRequest> {
    let is_developer = |m: &super::ChatMessage| m.0.get("role").is_some_and(|r| r == "developer");
    if template.contains("developer") || !req.messages.iter().any(is_developer) {
        return None;
    }
    let mut renamed = req.clone();
    for m in renamed.messages.iter_mut().filter(|m| is_developer(m)) {
        m.0.insert("role".into(), "system".into());
    }
    Some(renamed)
}

/// `continue_final_message`'s request: the final message's text (its last text part, for a
/// list) with [`CONTINUE_HERE`] after it. A mark rather than a search for the text: the text
/// may also appear earlier, or inside the template's own end of turn (`end` in
/// `<|im_end|>`), and a search would drop its trailing whitespace.
fn mark_final(req: &ChatRequest) -> Result<ChatRequest> {
    let mut marked = req.clone();
    let last = marked.messages.len().saturating_sub(1);
    let none = || {
        Error::invalid(format!(
            "messages[{last}].content: `continue_final_message` is set, but the final message has no text to continue"
        ))
    };
    let m = marked.messages.last_mut().ok_or_else(none)?;
    match m.0.get_mut("content") {
        Some(serde_json::Value::String(s)) => s.push_str(CONTINUE_HERE),
        Some(serde_json::Value::Array(parts)) => {
            let text = (parts.iter_mut().rev())
                .find_map(|p| p.get_mut("text").filter(|t| t.is_string()))
                .ok_or_else(none)?;
            *text = format!("{}{CONTINUE_HERE}", text.as_str().unwrap_or("")).into();
        }
        _ => return Err(none()),
    }
    Ok(marked)
}

/// The rendered text of a marked request, cut where the final message's text ends.
fn cut_at_mark(mut text: String, req: &ChatRequest) -> Result<String> {
    let Some(at) = text.rfind(CONTINUE_HERE) else {
        return Err(Error::invalid(format!(
            "messages[{}].content: `continue_final_message` is set, but the chat template does not write the final message's text",
            req.messages.len().saturating_sub(1)
        )));
    };
    text.truncate(at);
    Ok(text)
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, sort_keys=False)`,
/// i.e. `", "` / `": "` separators without indent, and no HTML escaping.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    // Python's defaults: (", ", ": ") without indent, (",", ": ") with one.
    let seps = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(other) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: separators must be (item_separator, key_separator), got {other:?}"
                ),
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let mut out = String::new();
    let opts = JsonOpts {
        indent,
        ascii: ascii.unwrap_or(false),
        sort: sort.unwrap_or(false),
        item_sep: &seps.0,
        key_sep: &seps.1,
    };
    write_json(value, &opts, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// `value` as transformers' `tojson` writes it by default (Python's `json.dumps` with `, `
/// and `: `, non-ASCII kept, keys in order): how chat templates, and the models trained on
/// them, write JSON.
pub fn python_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    let opts = JsonOpts {
        indent: None,
        ascii: false,
        sort: false,
        item_sep: ", ",
        key_sep: ": ",
    };
    write_json(&Value::from_serialize(value), &opts, 0, &mut out)
        .expect("a JSON value always prints");
    out
}

/// How `tojson` prints (Python's `json.dumps` arguments).
struct JsonOpts<'a> {
    indent: Option<usize>,
    ascii: bool,
    sort: bool,
    item_sep: &'a str,
    key_sep: &'a str,
}

fn write_json(
    v: &Value,
    o: &JsonOpts,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let (indent, ascii, sort) = (o.indent, o.ascii, o.sort);
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = o.item_sep;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        // Integers whole, past 64 bits too, as Python's ints print.
        ValueKind::Number if v.is_integer() => match i128::try_from(v.clone()) {
            Ok(i) => out.push_str(&i.to_string()),
            Err(_) => match u128::try_from(v.clone()) {
                Ok(u) => out.push_str(&u.to_string()),
                Err(_) => out.push_str(&v.to_string()),
            },
        },
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(f) => out.push_str(&python::float(f, ["NaN", "Infinity", "-Infinity"])),
            Err(_) => out.push_str(&v.to_string()),
        },
        ValueKind::String => json_str(v.as_str().unwrap_or(""), ascii, out),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                json_str(&k.to_string(), ascii, out);
                out.push_str(o.key_sep);
                write_json(&v.get_item(k)?, o, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_json(x, o, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
    }
    Ok(())
}

/// A JSON string literal escaped as Python's json module escapes it.
fn json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
