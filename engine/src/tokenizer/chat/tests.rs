//! The chat renderer's unit tests: template rewrites, Python methods, errors.

use super::*;

use crate::tokenizer::ChatMessage;

fn msgs(v: &[(&str, &str)]) -> Vec<ChatMessage> {
    v.iter().map(|(r, c)| ChatMessage::new(r, c)).collect()
}

fn special(bos: Option<&str>) -> SpecialTokens {
    SpecialTokens {
        bos: bos.map(String::from),
        ..Default::default()
    }
}

fn render(
    t: &str,
    m: &[ChatMessage],
    gen: bool,
    bos: Option<&str>,
    _eos: Option<&str>,
) -> Result<String> {
    super::render(
        t,
        "test",
        &ChatRequest {
            messages: m.to_vec(),
            add_generation_prompt: gen,
            ..Default::default()
        },
        &special(bos),
    )
}

#[test]
fn template_rewrites() {
    assert_eq!(
        prepare("{%- generation -%}x{% endgeneration %}"),
        "{%- if true -%}x{% endif %}"
    );
    assert_eq!(
        prepare("{{ '%d of %s' % (a, b.c) }}"),
        "{{ __percent_format('%d of %s', (a, b.c), true) }}"
    );
    assert_eq!(
        prepare("{{ \"%s!\" % name }}"),
        "{{ __percent_format(\"%s!\", name, false) }}"
    );
    // Numbers keep minijinja's own operator.
    assert_eq!(
        prepare("{% if loop.index % 2 %}"),
        "{% if loop.index % 2 %}"
    );
}

#[test]
fn text_parts_become_a_string_unless_the_template_loops_over_them() {
    let parts: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}"#,
    )
    .unwrap();
    let m = [ChatMessage::try_from(parts).unwrap()];
    let concat = "{% for m in messages %}{{ '<' + m['content'] + '>' }}{% endfor %}";
    let out = render(concat, &m, false, None, None).unwrap();
    assert_eq!(out, "<a\nb>");
    // The router reads `text()`, and its span is found in the rendered prompt.
    assert!(out.contains(&m[0].text()));
    let looped =
        "{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}";
    assert_eq!(render(looped, &m, false, None, None).unwrap(), "[a][b]");
    let looped = looped.replace("m.content", "m['content']");
    assert_eq!(render(&looped, &m, false, None, None).unwrap(), "[a][b]");
    let aliased = "{% for m in messages %}{% set c = m['content'] %}\
                   {% for p in c %}[{{ p.text }}]{% endfor %}{% endfor %}";
    assert_eq!(render(aliased, &m, false, None, None).unwrap(), "[a][b]");
    let filtered = "{% set c = messages[0].content %}\
                    {% for p in c if p.type == 'text' %}[{{ p.text }}]{% endfor %}";
    assert_eq!(render(filtered, &m, false, None, None).unwrap(), "[a][b]");
    let indexed = "{% for p in messages[0]['content'] | list %}[{{ p.text }}]{% endfor %}";
    assert_eq!(render(indexed, &m, false, None, None).unwrap(), "[a][b]");
    // Content reached by `.get('content')` (Kimi-K2's), a variable index, a filtered alias.
    let got = "{% macro rc(msg) %}{% set c = msg.get('content') %}{% if c is string %}{{ c }}\
               {% else %}{% for p in c %}{{ p['text'] }}{% endfor %}{% endif %}{% endmacro %}\
               {% for m in messages %}{{ rc(m) }}{% endfor %}";
    assert_eq!(render(got, &m, false, None, None).unwrap(), "ab");
    let var = "{% for i in range(1) %}{% for p in messages[i]['content'] %}{{ p.text }};{% endfor %}{% endfor %}";
    assert_eq!(render(var, &m, false, None, None).unwrap(), "a;b;");
    let sel = "{% for m in messages %}{% set t = m['content'] | selectattr('type', 'equalto', 'text') | list %}\
               {% for p in t %}[{{ p['text'] }}]{% endfor %}{% endfor %}";
    assert_eq!(render(sel, &m, false, None, None).unwrap(), "[a][b]");
    // A template that tells text from parts itself, in a macro (Qwen3.5's render_content).
    let tested = "{% macro render(content) %}{% if content is string %}{{ content }}\
                  {% else %}{% for p in content %}{{ p.text }}{% endfor %}{% endif %}{% endmacro %}\
                  {% for m in messages %}{{ render(m.content) }}{% endfor %}";
    assert_eq!(render(tested, &m, false, None, None).unwrap(), "ab");
    // One that tests the type and renders parts as '' (Qwen3's, SmolLM3's) gets them joined,
    // as vLLM joins them: the user's text is kept.
    let blanks = "{% for m in messages %}{% if m.content is string %}{% set c = m.content %}\
                  {% else %}{% set c = '' %}{% endif %}<{{ c }}>{% endfor %}";
    assert_eq!(render(blanks, &m, false, None, None).unwrap(), "<a\nb>");
    // An alias only printed (or looped over something else) is a string.
    let printed = "{% for m in messages %}{% set c = m.content %}<{{ c }}>\
                   {% for x in [1] %}{% endfor %}{% endfor %}";
    assert_eq!(render(printed, &m, false, None, None).unwrap(), "<a\nb>");
}

#[test]
fn tool_calls_refused_where_the_template_never_reads_them() {
    let msg = |json: &str| {
        let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        ChatMessage::try_from(m).unwrap()
    };
    let m = [
        msg(r#"{"role": "user", "content": "hi"}"#),
        msg(
            r#"{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}"#,
        ),
        msg(r#"{"role": "tool", "tool_call_id": "c", "content": "42"}"#),
    ];
    let text_only = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}\n{% endfor %}";
    let e = render(text_only, &m, false, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("messages[1].tool_calls") && e.contains("never reads"),
        "{e}"
    );
    let reads = "{% for m in messages %}{{ m['role'] }}{% if m.tool_calls %}\
                 ={{ m.tool_calls[0].function.name }}{% else %}:{{ m['content'] }}{% endif %}\
                 |{% endfor %}";
    assert_eq!(
        render(reads, &m, false, None, None).unwrap(),
        "user:hi|assistant=f|tool:42|"
    );
    // Without tool calls nothing changes.
    assert_eq!(
        render(text_only, &m[..1], false, None, None).unwrap(),
        "user: hi\n"
    );
}

#[test]
fn python_methods_and_tojson() {
    let t = "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.content.split(',')[1] }}|\
             {{ m.content.startswith((' x', ' a')) }}|{{ m | tojson }}{% endfor %}";
    let out = render(t, &msgs(&[("user", " a,b ")]), false, None, None).unwrap();
    assert_eq!(out, r#"A,B|b |True|{"role": "user", "content": " a,b "}"#);
}

#[test]
fn tojson_indent_and_escapes() {
    let t = "{{ {'a': [1, 2.5, 1e-05, none], 'b': 'é\"\\n<'} | tojson(indent=2) }}";
    let out = render(t, &[], false, None, None).unwrap();
    assert_eq!(
        out,
        "{\n  \"a\": [\n    1,\n    2.5,\n    1e-05,\n    null\n  ],\n  \"b\": \"é\\\"\\n<\"\n}"
    );
}

#[test]
fn raise_exception_is_an_error() {
    let t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok";
    let e = render(t, &msgs(&[("assistant", "x")]), false, None, None).unwrap_err();
    assert!(e.to_string().contains("first must be user"), "{e}");
    assert_eq!(
        render(t, &msgs(&[("user", "x")]), false, None, None).unwrap(),
        "ok"
    );
}

#[test]
fn blocks_are_trimmed_like_transformers() {
    let t = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
    let out = render(t, &msgs(&[("user", "hi")]), true, Some("<s>"), None).unwrap();
    assert_eq!(out, "<s>\n[hi]\n");
}

/// Integers print whole at any size (an id past 2^53 in tool arguments stays exact).
#[test]
fn python_json_keeps_big_integers_whole() {
    let v = serde_json::json!({"u": u64::MAX, "i": i64::MIN, "f": 0.5, "n": 9007199254740993u64});
    assert_eq!(
        python_json(&v),
        r#"{"u": 18446744073709551615, "i": -9223372036854775808, "f": 0.5, "n": 9007199254740993}"#
    );
}

/// Printed values, `string`, `indent` and the tests as Jinja2 in transformers gives them
/// (outputs of jinja2 3.1.6): Hammer's `{{ tools }}`, LFM2's `arg|string` of a list, Qwen's
/// `args_value|string` of a float, Command-R's `indent` of a JSON block, GLM's `is iterable`
/// of a null content.
#[test]
fn values_print_and_test_as_in_jinja2() {
    let r = |t: &str, messages: serde_json::Value| {
        let req = ChatRequest {
            messages: serde_json::from_value(messages).unwrap(),
            ..Default::default()
        };
        super::render(t, "t", &req, &SpecialTokens::default()).unwrap()
    };
    let none = serde_json::json!([]);
    for (t, want) in [
        (
            "{{ [1, 'a', none, true, 2.5, \"it's\"] }}|{{ {'k': ['v'], 'n': 1e-5} }}",
            "[1, 'a', None, True, 2.5, \"it's\"]|{'k': ['v'], 'n': 1e-05}",
        ),
        ("{{ ['red', 'blue'] | string }}|{{ 0.00001 | string }}", "['red', 'blue']|1e-05"),
        ("{{ 1e16 }} {{ 2.5 }} {{ 4 / 2 }} {{ 3 }}", "1e+16 2.5 2.0 3"),
        // CRLF line ends are \n, in literals too; trim prints Python's str; a literal's
        // backslash-newline continues it.
        ("a\r\n{{ 'x\r\ny' }}|{{ [' a '] | trim }}|{{ ' b ' | trim }}|{{ 'xxcxx' | trim('x') }}|{{ 'c\\\nd' }}", "a\nx\ny|[' a ']|b|c|cd"),
        (
            "{{ [1e-5, [1], 'a', none] | join(', ') }}|{{ 'ab' | join('-') }}|{{ [{'n': 'x'}, {'n': 'y'}] | join('+', attribute='n') }}|{{ [1, 2] | join }}",
            "1e-05, [1], a, None|a-b|x+y|12",
        ),
        ("{{ '{\n' | indent(4, first=True) }}|", "    {\n|"),
        ("{{ 'a\n\nb' | indent(2) }}|{{ 'a\nb' | indent('> ', blank=true) }}", "a\n\n  b|a\n> b"),
        (
            "{{ none is iterable }} {{ [] is iterable }} {{ 'a' is sequence }} {{ {} is sequence }} {{ true is number }} {{ nothing is sequence }}",
            "False True True True True True",
        ),
    ] {
        assert_eq!(r(t, none.clone()), want, "{t}");
    }
    // `%` as Python: a tuple's items are the arguments, anything else one argument.
    assert_eq!(
        r("{{ '%s|%s' % ('a', 1) }} {{ '%s' % [1, 'a'] }} {{ '%s' % {'k': [1]} }} {{ '%d' % 3 }} {{ '%s' % 1e-5 }}", none.clone()),
        "a|1 [1, 'a'] {'k': [1]} 3 1e-05"
    );
    // Python's string and list methods (jinja2 3.1.6's outputs).
    for (t, want) in [
        ("{{ 'é a b'.find('a') }} {{ 'é a b'.rfind(' ') }} {{ 'éab'.find('b', -1) }} {{ 'x'.find('y') }}", "2 3 2 -1"),
        ("{% set s = 'héllo</think>rest' %}{{ s[:s.find('</think>')] }}|{{ s.index('rest') }}", "héllo|13"),
        // (partition's tuple prints as a list here: minijinja has no tuples)
        ("{{ 'a,b,c'.rsplit(',', 1) }} {{ 'a.b.c'.partition('.') | join('|') }} {{ 'a.b.c'.rpartition('.') | join('|') }}", "['a,b', 'c'] a|.|b.c a.b|.|c"),
        ("{{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }} {{ 'Hello'.swapcase() }}", "bc ab hELLO"),
        ("[{{ 'x'.center(4, '*') }}|{{ 'x'.center(5) }}|{{ 'x'.ljust(3) }}|{{ 'x'.rjust(3, '0') }}|{{ '-5'.zfill(4) }}]", "[*x**|  x  |x  |00x|-005]"),
        ("{{ ['user', 'assistant'].index('assistant') }}", "1"),
    ] {
        assert_eq!(r(t, none.clone()), want, "{t}");
    }
    let null_content = serde_json::json!([{"role": "assistant", "content": null}]);
    let glm = "{% set c = messages[0].content %}{% if c is iterable and c is not mapping %}{% for x in c %}{% endfor %}{% else %}{{ c }}{% endif %}";
    assert_eq!(r(glm, null_content), "None");
}

/// Keyword arguments are template variables (not the renderer's own); `continue_final_message`
/// ends the text where the last message's content does, as transformers does.
#[test]
fn template_kwargs_and_continue_final_message() {
    let t = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}\
             {% if add_generation_prompt %}<assistant>{% if think %}<think>{% endif %}{% endif %}";
    let req = |m: Vec<ChatMessage>, gen: bool, cont: bool, kwargs: serde_json::Value| ChatRequest {
        messages: m,
        add_generation_prompt: gen,
        continue_final_message: cont,
        template_kwargs: kwargs.as_object().unwrap().clone(),
        ..Default::default()
    };
    let sp = special(None);
    let hi = msgs(&[("user", "hi")]);
    let on = req(hi.clone(), true, false, serde_json::json!({"think": true}));
    assert_eq!(
        super::render(t, "t", &on, &sp).unwrap(),
        "<user>hi</s><assistant><think>"
    );
    let off = req(hi.clone(), true, false, serde_json::json!({}));
    assert_eq!(
        super::render(t, "t", &off, &sp).unwrap(),
        "<user>hi</s><assistant>"
    );
    let clash = req(hi.clone(), true, false, serde_json::json!({"messages": []}));
    let e = super::render(t, "t", &clash, &sp).unwrap_err().to_string();
    assert!(e.contains("`messages` is set by the renderer"), "{e}");

    // The text as given, trailing space too, even where it also appears in the end of turn.
    let begun = msgs(&[("user", "hi"), ("assistant", "  Hello, I am ")]);
    let cont = req(begun.clone(), false, true, serde_json::json!({}));
    assert_eq!(
        super::render(t, "t", &cont, &sp).unwrap(),
        "<user>hi</s><assistant>  Hello, I am "
    );
    let s_word = req(
        msgs(&[("user", "hi"), ("assistant", "s")]),
        false,
        true,
        serde_json::json!({}),
    );
    assert_eq!(
        super::render(t, "t", &s_word, &sp).unwrap(),
        "<user>hi</s><assistant>s"
    );
    // Empty content: the turn stays open.
    let empty = req(
        msgs(&[("user", "hi"), ("assistant", "")]),
        false,
        true,
        serde_json::json!({}),
    );
    assert_eq!(
        super::render(t, "t", &empty, &sp).unwrap(),
        "<user>hi</s><assistant>"
    );
    let both = req(begun, true, true, serde_json::json!({}));
    assert!(super::render(t, "t", &both, &sp).is_err());
    let hidden = "{% for m in messages %}{{ m.role }}{% endfor %}";
    let e = super::render(hidden, "t", &cont, &sp)
        .unwrap_err()
        .to_string();
    assert!(e.contains("messages[1].content"), "{e}");
    let kw = req(
        hi,
        true,
        false,
        serde_json::json!({"continue_final_message": true}),
    );
    assert!(super::render(t, "t", &kw, &sp).is_err());
}

/// `developer` is `system` for a template that never names it (SmolLM2's would render an
/// unknown role after its default system turn; others drop the turn); a template that
/// names it gets it as sent.
#[test]
fn developer_is_system_unless_the_template_names_it() {
    let t = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    let m = msgs(&[("developer", "Be brief."), ("user", "hi")]);
    assert_eq!(
        render(t, &m, false, None, None).unwrap(),
        "<system>Be brief.<user>hi"
    );
    let knows = "{% for m in messages %}{% if m.role == 'developer' %}[dev]{% endif %}<{{ m.role }}>{% endfor %}";
    assert_eq!(
        render(knows, &m, false, None, None).unwrap(),
        "[dev]<developer><user>"
    );
    // Only the role changes, in every developer message.
    let m = msgs(&[
        ("system", "S"),
        ("developer", "D"),
        ("user", "u"),
        ("developer", "E"),
    ]);
    assert_eq!(
        render(t, &m, false, None, None).unwrap(),
        "<system>S<system>D<user>u<system>E"
    );
}

/// A template whose loops do not end in a conversation's time is stopped with a message
/// (two nested `range(100000)` spun for minutes).
#[test]
fn runaway_templates_run_out_of_steps() {
    let t = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let e = render(t, &msgs(&[("user", "hi")]), false, None, None).unwrap_err();
    assert!(e.to_string().contains("ran past 20100000 steps"), "{e}");
    assert!(e.to_string().starts_with("chat template (test)"), "{e}");
    // An ordinary template over many messages stays within its budget.
    let t = "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}";
    let many: Vec<(&str, &str)> = (0..20_000).map(|_| ("user", "hello there")).collect();
    assert!(render(t, &msgs(&many), true, None, None).is_ok());
}
