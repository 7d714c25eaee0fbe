//! Tool choices, the formats they force, and calls read from answers.

use super::*;

/// A tool's unknown fields are refused unless null (the SDK's dumps) or a caching hint.
#[test]
fn tools_take_known_fields_nulls_and_cache_hints() {
    let t = json!([{"type": "function", "cache_control": {"type": "ephemeral"},
                    "function": {"name": "f", "description": null, "extra": null}}]);
    assert_eq!(functions(Some(t)).unwrap()[0].0, "f");
    let t = json!([{"type": "function", "function": {"name": "f", "paramters": {}}}]);
    let e = functions(Some(t)).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("tools[0].function.paramters"));
}

/// `"required"` cut short: the calls written whole before the cut; none, text.
#[test]
fn required_calls_cut_short_keep_the_whole_ones() {
    let whole = r#"[{"name": "f", "parameters": {"x": 1}}, {"name": "g", "parameters": {}}, {"name": "f", "para"#;
    let (_, c) = calls(&ToolMode::Required, whole, None).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[1]["function"], json!({"name": "g", "arguments": "{}"}));
    let (_, c) = calls(
        &ToolMode::Required,
        r#"[{"name": "f", "parameters": {}},"#,
        None,
    )
    .unwrap();
    assert_eq!(c.len(), 1);
    for none in [
        r#"[{"name": "f", "parameters": {"x"#,
        "[",
        "",
        r#"{"name": "f"}"#,
    ] {
        assert!(calls(&ToolMode::Required, none, None).is_none(), "{none}");
    }
    // A whole item that is no call leaves the answer text; an item with a key twice ends
    // the whole ones.
    assert!(calls(&ToolMode::Required, r#"[{"name": "f"}, {"na"#, None).is_none());
    let twice =
        r#"[{"name": "f", "parameters": {}}, {"name": "f", "parameters": {}, "name": "g"}, {"#;
    assert_eq!(calls(&ToolMode::Required, twice, None).unwrap().1.len(), 1);
}

#[test]
fn answers_become_calls_only_when_whole() {
    let named = ToolMode::Named("f".into());
    let (content, c) = calls(&named, r#"{"x": 1}"#, None).unwrap();
    assert_eq!(content, None);
    assert_eq!(
        c[0]["function"],
        json!({"name": "f", "arguments": "{\"x\":1}"})
    );
    assert!(c[0]["id"].as_str().unwrap().starts_with("call_"));
    assert!(calls(&named, r#"{"x": "#, None).is_none());
    assert!(calls(&named, "[1]", None).is_none());
    let (_, c) = calls(
        &ToolMode::Required,
        r#"[{"name": "f", "parameters": {"x": 1}}, {"name": "g", "parameters": {}}]"#,
        Some(ToolParser::Mistral),
    )
    .unwrap();
    assert_eq!(c.len(), 2);
    // Forced calls take the server parser's id style: Mistral's 9 letters and digits.
    assert_eq!(c[0]["id"].as_str().unwrap().len(), 9, "{c:?}");
    assert_eq!(c[1]["function"], json!({"name": "g", "arguments": "{}"}));
    assert!(calls(&ToolMode::Required, r#"[{"name": "f"}]"#, None).is_none());
}

/// Every mode's arguments are the model's text, compacted: a number keeps its digits (an f64
/// made 98765432109876543210 into 9.876543210987654e19 and 1e5 into 100000.0); a forced
/// call's key written twice stays twice (it had been dropped silently).
#[test]
fn arguments_are_the_models_text() {
    let args = |mode: &ToolMode, text: &str| {
        let (_, c) = calls(mode, text, None).unwrap();
        c.iter()
            .map(|c| c["function"]["arguments"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let big = r#"{"n": 98765432109876543210, "e": 1e5, "p": 0.12345678901234567891}"#;
    let want = r#"{"n":98765432109876543210,"e":1e5,"p":0.12345678901234567891}"#;
    assert_eq!(args(&ToolMode::Named("f".into()), big), [want]);
    let list = format!(
        r#"[{{"name": "f", "parameters": {big}}}, {{"name": "g", "parameters": {{"x" : 1.50}}}}]"#
    );
    assert_eq!(args(&ToolMode::Required, &list), [want, r#"{"x":1.50}"#]);
    // Cut short after the first call: the whole one keeps its text too.
    let cut = format!(r#"[{{"name": "f", "parameters": {big}}}, {{"name": "g", "param"#);
    assert_eq!(args(&ToolMode::Required, &cut), [want]);
    let auto = ToolMode::Auto {
        tools: vec!["f".into()],
        parser: Some(ToolParser::Hermes),
        parallel: true,
    };
    let text = format!("<tool_call>\n{{\"name\": \"f\", \"arguments\": {big}}}\n</tool_call>");
    assert_eq!(args(&auto, &text), [want]);
    let twice = r#"{"a": 1, "a": 2}"#;
    assert_eq!(
        args(&ToolMode::Named("f".into()), twice),
        [r#"{"a":1,"a":2}"#]
    );
}

/// `"auto"`: the parser's calls of offered functions, with the text beside them; a call of
/// a function not offered leaves the answer as text; `parallel_tool_calls: false` keeps
/// the first call.
#[test]
fn auto_answers_become_calls_of_offered_functions() {
    let auto = |parallel| ToolMode::Auto {
        tools: vec!["f".into(), "g".into()],
        parser: Some(ToolParser::Hermes),
        parallel,
    };
    let text = "Checking.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
    let (content, c) = calls(&auto(true), text, None).unwrap();
    assert_eq!(content.as_deref(), Some("Checking.\n\n"));
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[0]["function"],
        json!({"name": "f", "arguments": "{\"x\":1}"})
    );
    assert_eq!(calls(&auto(false), text, None).unwrap().1.len(), 1);
    let unoffered = text.replace("\"g\"", "\"h\"");
    assert!(calls(&auto(true), &unoffered, None).is_none());
    // Only the call kept is checked.
    assert_eq!(calls(&auto(false), &unoffered, None).unwrap().1.len(), 1);
    assert!(calls(&auto(true), "Just text.", None).is_none());
    // No `tool_choice` with tools is "auto".
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    for choice in [None, Some(json!("auto"))] {
        let (mode, format) = tool_call(Some(tools.clone()), choice, None)
            .unwrap()
            .unwrap();
        assert!(format.is_none());
        assert!(matches!(
            mode,
            ToolMode::Auto {
                parser: None,
                parallel: true,
                ..
            }
        ));
    }
}

#[test]
fn tool_choice_picks_the_grammar() {
    let tools = json!([{"type": "function", "function": {"name": "f", "strict": true,
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
        {"type": "function", "function": {"name": "g"}}]);
    let named = json!({"type": "function", "function": {"name": "f"}});
    let (mode, format) = tool_call(Some(tools.clone()), Some(named), None)
        .unwrap()
        .unwrap();
    assert_eq!(mode, ToolMode::Named("f".into()));
    // `strict` closes the parameters; a compile error would name this tool's schema.
    let Some((OutputFormat::JsonSchema(s), param)) = format else {
        panic!()
    };
    assert_eq!(param, "tools[0].function.parameters");
    assert_eq!(s["additionalProperties"], false);
    let (mode, format) = tool_call(Some(tools.clone()), Some(json!("required")), Some(false))
        .unwrap()
        .unwrap();
    assert_eq!(mode, ToolMode::Required);
    let Some((OutputFormat::JsonSchema(s), _)) = format else {
        panic!()
    };
    assert_eq!(s["maxItems"], 1);
    assert_eq!(s["items"]["anyOf"][1]["properties"]["name"]["const"], "g");
    assert!(tool_call(Some(tools.clone()), Some(json!("none")), None)
        .unwrap()
        .is_none());
    // A tool without parameters takes an empty object.
    let g = json!({"type": "function", "function": {"name": "g"}});
    let (_, f) = tool_call(Some(tools), Some(g), None).unwrap().unwrap();
    let empty = json!({"type": "object", "properties": {}, "additionalProperties": false});
    assert_eq!(
        f,
        Some((
            OutputFormat::JsonSchema(empty),
            "tools[1].function.parameters".into()
        ))
    );
    assert!(tool_call(None, None, None).unwrap().is_none());
}

/// With "required", each tool's `$defs` (and `definitions`) move to the list's root, where
/// `#/...` references resolve; two tools defining one name differently are refused.
#[test]
fn required_hoists_definitions() {
    let tool = |name: &str, defs_key: &str, inner: Value| {
        json!({"type": "function", "function": {"name": name, "parameters": {
            "type": "object", defs_key: {"Addr": inner},
            "properties": {"a": {"$ref": format!("#/{defs_key}/Addr")}}}}})
    };
    let street = json!({"type": "object", "properties": {"street": {"type": "string"}}});
    let tools = json!([
        tool("f", "$defs", street.clone()),
        tool("g", "definitions", street.clone())
    ]);
    let (_, f) = tool_call(Some(tools), Some(json!("required")), None)
        .unwrap()
        .unwrap();
    let Some((OutputFormat::JsonSchema(s), _)) = f else {
        panic!()
    };
    assert_eq!(s["$defs"]["Addr"], street);
    let g = &s["items"]["anyOf"][1]["properties"]["parameters"];
    assert_eq!(g["properties"]["a"]["$ref"], "#/$defs/Addr");
    assert!(g.get("definitions").is_none());
    let clash = json!([
        tool("f", "$defs", street),
        tool("g", "$defs", json!({"type": "integer"}))
    ]);
    assert!(tool_call(Some(clash), Some(json!("required")), None).is_err());
}

/// With "required", a tool's references into its own schema (`#`, `#/properties/v`) follow
/// it into the list (they resolved against the list's root, failing or naming the list).
#[test]
fn required_rebases_references_into_each_tool() {
    let params = |name: &str| {
        json!({"type": "function", "function": {"name": name, "parameters": {
            "type": "object", "$defs": {"N": {"$ref": "#/properties/v"}},
            "properties": {"v": {"type": "integer"}, "w": {"$ref": "#/properties/v"},
                           "child": {"$ref": "#"}, "n": {"$ref": "#/$defs/N"}}}}})
    };
    let tools = json!([params("f"), {"type": "function", "function": {"name": "g"}}]);
    let (_, f) = tool_call(Some(tools), Some(json!("required")), None)
        .unwrap()
        .unwrap();
    let Some((OutputFormat::JsonSchema(s), _)) = f else {
        panic!()
    };
    let base = "#/items/anyOf/0/properties/parameters";
    let p = &s["items"]["anyOf"][0]["properties"]["parameters"]["properties"];
    assert_eq!(p["w"]["$ref"], format!("{base}/properties/v"));
    assert_eq!(p["child"]["$ref"], base);
    assert_eq!(p["n"]["$ref"], "#/$defs/N");
    // A moved definition's references into its tool follow the tool too.
    assert_eq!(s["$defs"]["N"]["$ref"], format!("{base}/properties/v"));
    // An anchor is no pointer; a `const` holds data; a property named `const` is a schema;
    // a tool with an `$id` resolves its references itself; `definitions` entries' own
    // references to `definitions` follow them to `$defs`.
    let tools = json!([
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
            "definitions": {"A": {"$ref": "#/definitions/B"}, "B": {"type": "integer"}},
            "properties": {"a": {"$ref": "#node"}, "b": {"const": {"$ref": "#"}},
                           "e": {"enum": [{"$ref": "#/definitions/B"}]},
                           "const": {"$ref": "#/properties/a"}, "c": {"$ref": "#/definitions/A"}}}}},
        {"type": "function", "function": {"name": "g", "parameters": {"$id": "urn:g",
            "type": "object", "$defs": {"C": {"type": "string"}},
            "properties": {"c": {"$ref": "#/$defs/C"}, "d": {"$ref": "#/properties/c"}}}}}
    ]);
    let (_, f) = tool_call(Some(tools.clone()), Some(json!("required")), None)
        .unwrap()
        .unwrap();
    let Some((OutputFormat::JsonSchema(s), _)) = f else {
        panic!()
    };
    let p = &s["items"]["anyOf"][0]["properties"]["parameters"]["properties"];
    assert_eq!(p["a"]["$ref"], "#node");
    assert_eq!(p["b"]["const"], json!({"$ref": "#"}));
    assert_eq!(p["e"]["enum"][0], json!({"$ref": "#/definitions/B"}));
    assert_eq!(p["const"]["$ref"], format!("{base}/properties/a"));
    assert_eq!(p["c"]["$ref"], "#/$defs/A");
    assert_eq!(s["$defs"]["A"]["$ref"], "#/$defs/B");
    assert_eq!(
        s["items"]["anyOf"][1]["properties"]["parameters"],
        tools[1]["function"]["parameters"]
    );
}

/// A call sent back is written as what was generated for it.
#[test]
fn calls_sent_back_become_their_text() {
    // As the request's check leaves them: arguments parsed into objects.
    let call = |n: &str, a: Value| json!({"id": "c", "type": "function", "function": {"name": n, "arguments": a}});
    let msg = |calls: Value| {
        let Value::Object(o) = json!({"role": "assistant", "content": null, "tool_calls": calls})
        else {
            unreachable!()
        };
        ChatMessage::try_from(o).unwrap()
    };
    let mut m = vec![
        ChatMessage::new("user", "hi"),
        msg(json!([call("f", json!({"x": 1}))])),
        msg(json!([call("f", json!({"x": 1})), call("g", json!({}))])),
    ];
    write_calls(&mut m, Some(&ToolMode::Named("f".into())), None);
    assert_eq!(m[0].text(), "hi");
    assert_eq!(m[1].text(), r#"{"x": 1}"#);
    assert!(!m[1].fields().contains_key("tool_calls"));
    assert_eq!(
        m[2].text(),
        r#"[{"name": "f", "parameters": {"x": 1}}, {"name": "g", "parameters": {}}]"#
    );
    // With "auto", in the parser's syntax, after the turn's own text.
    let mut m = vec![msg(json!([call("f", json!({"x": 1}))]))];
    let mut o: serde_json::Map<String, Value> = m[0].clone().into();
    o.insert("content".into(), json!("Let me see."));
    m[0] = ChatMessage::try_from(o).unwrap();
    let auto = ToolMode::Auto {
        tools: vec!["f".into()],
        parser: Some(ToolParser::Hermes),
        parallel: true,
    };
    let sent = m.clone();
    write_calls(&mut m, Some(&auto), Some(ToolParser::Hermes));
    let hermes =
        "Let me see.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>";
    assert_eq!(m[0].text(), hermes);
    // No call forced (`"none"`, or /tokenize): the server's syntax, else the list.
    let mut m = sent.clone();
    write_calls(&mut m, None, Some(ToolParser::Hermes));
    assert_eq!(m[0].text(), hermes);
    let mut m = sent;
    write_calls(&mut m, None, None);
    assert_eq!(
        m[0].text(),
        "Let me see.\n[{\"name\": \"f\", \"parameters\": {\"x\": 1}}]"
    );
}
