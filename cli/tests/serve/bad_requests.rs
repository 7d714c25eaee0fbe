//! A catalogue of bad requests: each gets its status and an OpenAI error object that names
//! the field, and the server keeps giving the same correct answers afterwards.

use serde_json::{json, Value};

use crate::harness::{assets, Server};

/// What one bad request must get.
struct Case {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    status: u16,
    /// Words the error message must contain.
    words: &'static [&'static str],
    /// The `param` it must name, if any.
    param: Option<&'static str>,
}

fn chat_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = json!({"model": "boolq", "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Is the sky blue?"}]});
    edit(&mut v);
    v.to_string().into_bytes()
}

fn case(
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    status: u16,
    words: &'static [&'static str],
    param: Option<&'static str>,
) -> Case {
    Case {
        name,
        path,
        body,
        status,
        words,
        param,
    }
}

/// `body` (UTF-8 JSON) as UTF-16LE, as PowerShell 5 and some .NET clients send it.
fn utf16le(body: &[u8], bom: bool) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

const CHAT: &str = "/v1/chat/completions";
const COMPL: &str = "/v1/completions";

fn catalogue() -> Vec<Case> {
    let long_prompt = "word ".repeat(400);
    vec![
        case("malformed JSON", CHAT, b"{\"model\": \"boolq\",".to_vec(), 400, &["not valid JSON"], None),
        case("malformed JSON deep in the body, named where", CHAT, b"{\"model\": \"boolq\", \"messages\": [{\"role\": \"user\", \"content\": \"hi}]}".to_vec(), 400, &["not valid JSON", "EOF while parsing a string", "(inside `messages[0].content`)"], None),
        case("empty body", CHAT, Vec::new(), 400, &["empty"], None),
        case("not an object", CHAT, b"[1, 2]".to_vec(), 400, &["must be a JSON object"], None),
        case("a byte order mark before the object", CHAT, [b"\xEF\xBB\xBF".to_vec(), chat_with(|_| ())].concat(), 400, &["byte order mark"], None),
        case("UTF-16LE with its byte order mark", CHAT, utf16le(&chat_with(|_| ()), true), 400, &["not UTF-8", "UTF-16"], None),
        case("UTF-16LE without a byte order mark", CHAT, utf16le(&chat_with(|_| ()), false), 400, &["not UTF-8", "UTF-16"], None),
        case("gzip without Content-Encoding", CHAT, b"\x1f\x8b\x08\x00\x00\x00\x00\x00".to_vec(), 400, &["gzip-compressed", "uncompressed"], None),
        case("a seed past 64 bits", CHAT, chat_with(|v| v["seed"] = json!(2f64.powi(70))), 400, &["expected an integer from -2^63 to 2^63-1"], Some("seed")),
        // serde reads an array's elements as the struct's fields, in order.
        case("the fields as an array", COMPL, json!(["boolq", null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, "hi", 2]).to_string().into_bytes(), 400, &["must be a JSON object"], None),
        case("data after the object", CHAT, [chat_with(|_| ()), b"xyz".to_vec()].concat(), 400, &["not valid JSON", "trailing", "after the object"], None),
        case("two objects", CHAT, [chat_with(|_| ()), chat_with(|_| ())].concat(), 400, &["not valid JSON", "after the object"], None),
        case(
            "invalid UTF-8",
            CHAT,
            b"{\"model\": \"boolq\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            400,
            &["not valid JSON"],
            None,
        ),
        case("temperature of the wrong type", CHAT, chat_with(|v| v["temperature"] = json!("hot")), 400, &["temperature"], Some("temperature")),
        case("negative temperature", CHAT, chat_with(|v| v["temperature"] = json!(-1)), 400, &[">= 0"], Some("temperature")),
        case("temperature past f32", CHAT, chat_with(|v| v["temperature"] = json!(1e40)), 400, &[">= 0 and at most 3.4e38"], Some("temperature")),
        case("repetition_penalty past f32", CHAT, chat_with(|v| v["repetition_penalty"] = json!(1e40)), 400, &["3.4e38"], Some("repetition_penalty")),
        case("repetition_penalty 0 in f32", CHAT, chat_with(|v| v["repetition_penalty"] = json!(1e-50)), 400, &["1e-45"], Some("repetition_penalty")),
        case("top_p 0 in f32", CHAT, chat_with(|v| v["top_p"] = json!(1e-50)), 400, &["(0, 1]"], Some("top_p")),
        case("top_p 0", CHAT, chat_with(|v| v["top_p"] = json!(0)), 400, &["(0, 1]"], Some("top_p")),
        case("top_p above 1", CHAT, chat_with(|v| v["top_p"] = json!(1.5)), 400, &["(0, 1]"], Some("top_p")),
        case("min_p above 1", CHAT, chat_with(|v| v["min_p"] = json!(2)), 400, &["[0, 1]"], Some("min_p")),
        case("top_k below -1", CHAT, chat_with(|v| v["top_k"] = json!(-5)), 400, &["top_k"], Some("top_k")),
        case("repetition_penalty 0", CHAT, chat_with(|v| v["repetition_penalty"] = json!(0)), 400, &["> 0"], Some("repetition_penalty")),
        case("n 0", CHAT, chat_with(|v| v["n"] = json!(0)), 400, &["1 to 16"], Some("n")),
        case("n 17", CHAT, chat_with(|v| v["n"] = json!(17)), 400, &["1 to 16"], Some("n")),
        case("unknown field", CHAT, chat_with(|v| v["frobnicate"] = json!(1)), 400, &["frobnicate"], Some("frobnicate")),
        case("repeated key", CHAT, br#"{"model": "boolq", "messages": [], "max_tokens": 1, "max_tokens": 2}"#.to_vec(), 400, &["duplicate field"], Some("max_tokens")),
        case("repeated key inside a message", CHAT, br#"{"model": "boolq", "messages": [{"role": "user", "content": "a", "content": "b"}]}"#.to_vec(), 400, &["duplicate field"], Some("messages[0].content")),
        case("missing model", CHAT, chat_with(|v| {v.as_object_mut().unwrap().remove("model");}), 400, &["required"], Some("model")),
        case("unknown model", CHAT, chat_with(|v| v["model"] = json!("gpt-9")), 404, &["gpt-9", "does not exist"], Some("model")),
        case("a misspelt model", CHAT, chat_with(|v| v["model"] = json!("boolqq")), 404, &["`boolqq` does not exist", "did you mean `boolq`?"], Some("model")),
        case("a misspelt field", CHAT, chat_with(|v| v["max_token"] = json!(4)), 400, &["unknown field `max_token` (did you mean `max_tokens`?)"], Some("max_token")),
        case("a misspelt field inside one", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f", "paramters": {}}}]); v["tool_choice"] = json!("required"); }), 400, &["(did you mean `parameters`?)"], Some("tools[0].function.paramters")),
        case("unknown routing granularity", CHAT, chat_with(|v| {v["model"] = json!("auto"); v["dlp_route_by"] = json!("word")}), 400, &["request", "sentence"], Some("dlp_route_by")),
        case("auto without a router", CHAT, chat_with(|v| v["model"] = json!("auto")), 404, &["router"], Some("model")),
        case("unknown adapter in lora_mixture", CHAT, chat_with(|v| v["lora_mixture"] = json!({"boolq": 0.5, "nope": 0.5})), 404, &["nope", "not loaded"], Some("lora_mixture.nope")),
        case("negative mixture weight", CHAT, chat_with(|v| v["lora_mixture"] = json!({"boolq": -0.5})), 400, &["-0.5", ">= 0"], Some("lora_mixture.boolq")),
        case("non-numeric mixture weight", CHAT, chat_with(|v| v["lora_mixture"] = json!({"boolq": "half"})), 400, &["must be a number"], Some("lora_mixture.boolq")),
        case(
            "non-finite mixture weight",
            CHAT,
            b"{\"model\": \"boolq\", \"lora_mixture\": {\"boolq\": 1e999}, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_vec(),
            400,
            &["invalid request field `lora_mixture.boolq`", "number out of range"],
            Some("lora_mixture.boolq"),
        ),
        case("overflowing mixture weight", CHAT, chat_with(|v| v["lora_mixture"] = json!({"boolq": 1e30})), 400, &["at most 100"], Some("lora_mixture.boolq")),
        case(
            "a name twice in lora_mixture",
            CHAT,
            b"{\"model\": \"boolq\", \"lora_mixture\": {\"boolq\": 5, \"boolq\": 0}, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_vec(),
            400,
            &["duplicate field", "`lora_mixture.boolq`"],
            Some("lora_mixture.boolq"),
        ),
        case("continuous usage without include_usage", CHAT, chat_with(|v| {v["stream"] = json!(true); v["stream_options"] = json!({"continuous_usage_stats": true})}), 400, &["needs `include_usage: true`"], Some("stream_options.continuous_usage_stats")),
        case("unknown stream_options field", CHAT, chat_with(|v| {v["stream"] = json!(true); v["stream_options"] = json!({"x": 1})}), 400, &["`x`"], Some("stream_options.x")),
        case("prompt_logprobs past 20", CHAT, chat_with(|v| v["prompt_logprobs"] = json!(21)), 400, &["from 0 to 20"], Some("prompt_logprobs")),
        case("prompt_logprobs while streaming", CHAT, chat_with(|v| {v["stream"] = json!(true); v["prompt_logprobs"] = json!(1)}), 400, &["not available with `stream: true`"], Some("prompt_logprobs")),
        case("truncate_prompt_tokens 0", CHAT, chat_with(|v| v["truncate_prompt_tokens"] = json!(0)), 400, &["-1", ">= 1"], Some("truncate_prompt_tokens")),
        case("truncate_prompt_tokens past the context", CHAT, chat_with(|v| v["truncate_prompt_tokens"] = json!(1u64 << 40)), 400, &["below this model's maximum context length"], Some("truncate_prompt_tokens")),
        case("skip_special_tokens not a bool", CHAT, chat_with(|v| v["skip_special_tokens"] = json!("no")), 400, &["skip_special_tokens"], Some("skip_special_tokens")),
        case("max_tokens and max_completion_tokens that differ", CHAT, chat_with(|v| v["max_completion_tokens"] = json!(7)), 400, &["differ", "give one"], Some("max_completion_tokens")),
        case("max_completion_tokens 0", CHAT, chat_with(|v| {v.as_object_mut().unwrap().remove("max_tokens"); v["max_completion_tokens"] = json!(0)}), 400, &["at least 1"], Some("max_completion_tokens")),
        case("a call sent back with arguments that are not JSON", CHAT, chat_with(|v| {
                v["messages"] = json!([{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": "}}]}])
            }), 400, &["a JSON object"], Some("messages[1].tool_calls[0].function.arguments")),
        case("a call sent back without a name", CHAT, chat_with(|v| {
                v["messages"] = json!([{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"arguments": "{}"}}]}])
            }), 400, &["must be a string"], Some("messages[1].tool_calls[0].function.name")),
        case("tool_calls not a list", CHAT, chat_with(|v| {
                v["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": {"id": "c1"}}])
            }), 400, &["a list of calls"], Some("messages[1].tool_calls")),
        case("a user turn with a refusal", CHAT, chat_with(|v| v["messages"] = json!([{"role": "user", "content": "hi", "refusal": "I can't"}])), 400, &["not supported"], Some("messages[0].refusal")),
        case("an assistant turn with audio", CHAT, chat_with(|v| v["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "audio": {"id": "a1"}}, {"role": "user", "content": "why?"}])), 400, &["does not take audio"], Some("messages[1].audio")),
        case("a legacy function_call", CHAT, chat_with(|v| v["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}, {"role": "user", "content": "why?"}])), 400, &["legacy `function_call`"], Some("messages[1].function_call")),
        case("an empty tool_calls and no content", CHAT, chat_with(|v| v["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [], "refusal": null}, {"role": "user", "content": "why?"}])), 400, &["is missing"], Some("messages[1].content")),
        case("a tool with an unknown field", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f", "paramters": {}}}]); v["tool_choice"] = json!("required"); }), 400, &["unknown field `paramters`"], Some("tools[0].function.paramters")),
        case("a tool with an unknown field beside function", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f", "description": null}, "extra": 1}]); v["tool_choice"] = json!("required"); }), 400, &["unknown field `extra`"], Some("tools[0].extra")),
        case("a call of a custom type sent back", CHAT, chat_with(|v| v["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "custom", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "user", "content": "why?"}])), 400, &["of type \"function\""], Some("messages[1].tool_calls[0].type")),
        case("parameters that are not an object", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]); v["tool_choice"] = json!("required"); }), 400, &["must describe an object", "\"array\""], Some("tools[0].function.parameters")),
        case("text part without text", CHAT, chat_with(|v| v["messages"][0]["content"] = json!([{"type": "text"}])), 400, &["without a string `text`"], Some("messages[0].content[0]")),
        case("lora_mixture not an object", CHAT, chat_with(|v| v["lora_mixture"] = json!([1, 2])), 400, &["object"], Some("lora_mixture")),
        case("missing messages", CHAT, chat_with(|v| {v.as_object_mut().unwrap().remove("messages");}), 400, &["required"], Some("messages")),
        case("empty messages", CHAT, chat_with(|v| v["messages"] = json!([])), 400, &["empty"], Some("messages")),
        case("unknown role", CHAT, chat_with(|v| v["messages"][0]["role"] = json!("robot")), 400, &["robot"], Some("messages[0].role")),
        case("image part", CHAT, chat_with(|v| v["messages"][0]["content"] = json!([{"type": "image_url", "image_url": {"url": "x"}}])), 400, &["text parts only"], Some("messages[0].content[0]")),
        case("prompt past the context", CHAT, chat_with(|v| v["messages"][0]["content"] = json!(long_prompt)), 400, &["maximum context length is 256", "the prompt has"], Some("messages")),
        // Past the context by its length alone (256 x 81 characters: SmolLM2's longest token
        // covers 81): refused before tokenizing, with a bound rather than a count.
        case("prompt provably past the context", COMPL, json!({"model": "boolq", "prompt": "x".repeat(256 * 81)}).to_string().into_bytes(), 400, &["maximum context length is 256", "at least 256 tokens (20736 bytes", "covers more than 81"], Some("prompt")),
        case("prompt provably past the context, in a batch", COMPL, json!({"model": "boolq", "prompt": ["hi", "x".repeat(30_000)]}).to_string().into_bytes(), 400, &["at least 371 tokens"], Some("prompt[1]")),
        case("token ids past the context", COMPL, json!({"model": "boolq", "prompt": vec![1; 256]}).to_string().into_bytes(), 400, &["the prompt has 256 tokens"], Some("prompt")),
        case("more prompts than the server has room for", COMPL, json!({"model": "boolq", "prompt": vec!["hi"; 289]}).to_string().into_bytes(), 400, &["needs 289 sequences", "room for 288"], Some("prompt")),
        case("max_tokens past the context", CHAT, chat_with(|v| v["max_tokens"] = json!(250)), 400, &["maximum context length is 256", "for the completion"], Some("max_tokens")),
        case("huge max_tokens", COMPL, json!({"model": "boolq", "prompt": "hi", "max_tokens": 1_000_000_000_000u64}).to_string().into_bytes(), 400, &["1000000000000 for the completion"], Some("max_tokens")),
        case("negative max_tokens", CHAT, chat_with(|v| v["max_tokens"] = json!(-1)), 400, &["max_tokens"], Some("max_tokens")),
        case("chat max_tokens 0", CHAT, chat_with(|v| v["max_tokens"] = json!(0)), 400, &["at least 1"], Some("max_tokens")),
        case("too many stop strings", CHAT, chat_with(|v| v["stop"] = json!(vec!["x"; 17])), 400, &["at most 16"], Some("stop")),
        case("stop of the wrong type", CHAT, chat_with(|v| v["stop"] = json!([1])), 400, &["must be a string"], Some("stop[0]")),
        case("presence_penalty past 2", CHAT, chat_with(|v| v["presence_penalty"] = json!(2.5)), 400, &["from -2 to 2"], Some("presence_penalty")),
        case("frequency_penalty past -2", COMPL, json!({"model": "boolq", "prompt": "a", "frequency_penalty": -3}).to_string().into_bytes(), 400, &["from -2 to 2"], Some("frequency_penalty")),
        case("logit_bias key not an id", CHAT, chat_with(|v| v["logit_bias"] = json!({"abc": 1})), 400, &["not a token id"], Some("logit_bias.abc")),
        case("logit_bias key with a leading zero", CHAT, chat_with(|v| v["logit_bias"] = json!({"007": 1})), 400, &["not a token id"], Some("logit_bias.007")),
        case("logit_bias past 100", CHAT, chat_with(|v| v["logit_bias"] = json!({"5": 101})), 400, &["from -100 to 100"], Some("logit_bias.5")),
        case("logit_bias not a number", COMPL, json!({"model": "boolq", "prompt": "a", "logit_bias": {"5": "up"}}).to_string().into_bytes(), 400, &["from -100 to 100"], Some("logit_bias.5")),
        case("logit_bias past the vocabulary", CHAT, chat_with(|v| v["logit_bias"] = json!({"3": 1, "49152": -100})), 400, &["outside the vocabulary", "49152"], Some("logit_bias.49152")),
        case("logprobs past 20", COMPL, json!({"model": "boolq", "prompt": "hi", "logprobs": 50}).to_string().into_bytes(), 400, &["0 to 20"], Some("logprobs")),
        case("top_logprobs without logprobs", CHAT, chat_with(|v| v["top_logprobs"] = json!(3)), 400, &["logprobs: true"], Some("top_logprobs")),
        case("a stop string past 1024 bytes", COMPL, json!({"model": "boolq", "prompt": "hi", "stop": ["ok", "x".repeat(1025)]}).to_string().into_bytes(), 400, &["`stop[1]` is 1025 bytes long"], Some("stop[1]")),
        case("token id outside the vocabulary", COMPL, json!({"model": "boolq", "prompt": [1, 99999999]}).to_string().into_bytes(), 400, &["outside the vocabulary"], Some("prompt[1]")),
        case("token id outside the vocabulary, in a batch", COMPL, json!({"model": "boolq", "prompt": [[1, 2], [5, 99999999]]}).to_string().into_bytes(), 400, &["`prompt[1][1]` = 99999999"], Some("prompt[1][1]")),
        case("token id outside the vocabulary, in a batch of one", COMPL, json!({"model": "boolq", "prompt": [[5, 99999999]]}).to_string().into_bytes(), 400, &["`prompt[0][1]` = 99999999"], Some("prompt[0][1]")),
        case("max_tokens past the context, without wrapping", COMPL, json!({"model": "boolq", "prompt": "hi", "max_tokens": u64::MAX}).to_string().into_bytes(), 400, &["18446744073709551615 for the completion"], Some("max_tokens")),
        case("max_completion_tokens past the context", CHAT, chat_with(|v| {
            v.as_object_mut().unwrap().remove("max_tokens");
            v["max_completion_tokens"] = json!(1u64 << 40);
        }), 400, &["maximum context length"], Some("max_completion_tokens")),
        case("a message name that is not a string", CHAT, chat_with(|v| v["messages"][0]["name"] = json!({"a": 1})), 400, &["must be a string"], Some("messages[0].name")),
        case("negative token id", COMPL, json!({"model": "boolq", "prompt": [1, -3]}).to_string().into_bytes(), 400, &["integers >= 0"], Some("prompt[1]")),
        case("negative token id in a batch", COMPL, json!({"model": "boolq", "prompt": [[1], [2], [-5]]}).to_string().into_bytes(), 400, &["`prompt[2][0]` is -5"], Some("prompt[2][0]")),
        case("empty prompt", COMPL, json!({"model": "boolq", "prompt": ""}).to_string().into_bytes(), 400, &["empty"], Some("prompt")),
        case("prompt of the wrong type", COMPL, json!({"model": "boolq", "prompt": {"a": 1}}).to_string().into_bytes(), 400, &["must be a string"], Some("prompt")),
        case("a tool without a function", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function"}]); v["tool_choice"] = json!("required"); }), 400, &["must be {\"type\": \"function\""], Some("tools[0]")),
        case("tools with the default tool_choice", CHAT, chat_with(|v| v["tools"] = json!([{"type": "function", "function": {"name": "f"}}])), 400, &["\"auto\"", "--tool-call-parser", "required"], Some("tool_choice")),
        case("a named function whose parameters do not compile", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g", "parameters": {"properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}}]); v["tool_choice"] = json!({"type": "function", "function": {"name": "g"}}); }), 400, &["`tools[1].function.parameters` cannot be used"], Some("tools[1].function.parameters")),
        case("required tools whose parameters do not compile", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "g", "parameters": {"properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}}]); v["tool_choice"] = json!("required"); }), 400, &["`tools` cannot be used"], Some("tools")),
        case("a named function not among tools", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f"}}]); v["tool_choice"] = json!({"type": "function", "function": {"name": "g"}}); }), 400, &["`g`", "not among `tools`"], Some("tool_choice.function.name")),
        case("tool_choice without tools", CHAT, chat_with(|v| v["tool_choice"] = json!("required")), 400, &["needs `tools`"], Some("tool_choice")),
        case("a function name with a space", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "get weather"}}]); v["tool_choice"] = json!("required"); }), 400, &["1 to 64 letters"], Some("tools[0].function.name")),
        case("a function description that is a number", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f", "description": 1}}]); }), 400, &["must be a string"], Some("tools[0].function.description")),
        case("a strict that is a string", CHAT, chat_with(|v| { v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}}); }), 400, &["true or false"], Some("response_format.json_schema.strict")),
        case("a function given twice", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]); v["tool_choice"] = json!("required"); }), 400, &["given twice"], Some("tools[1]")),
        case("min_tokens past max_tokens", COMPL, json!({"model": "boolq", "prompt": "hi", "max_tokens": 4, "min_tokens": 5}).to_string().into_bytes(), 400, &["`min_tokens` (5)", "`max_tokens` (4)"], Some("min_tokens")),
        case("min_tokens past the default max_tokens", COMPL, json!({"model": "boolq", "prompt": "hi", "min_tokens": 17}).to_string().into_bytes(), 400, &["default `max_tokens` (16)"], Some("min_tokens")),
        case("stop_token_ids not a list", COMPL, json!({"model": "boolq", "prompt": "hi", "stop_token_ids": 2}).to_string().into_bytes(), 400, &["a list of token ids"], Some("stop_token_ids")),
        case("a negative stop token id", COMPL, json!({"model": "boolq", "prompt": "hi", "stop_token_ids": [2, -1]}).to_string().into_bytes(), 400, &["found -1"], Some("stop_token_ids[1]")),
        case("a stop token id past the vocabulary", COMPL, json!({"model": "boolq", "prompt": "hi", "stop_token_ids": [49152]}).to_string().into_bytes(), 400, &["outside the vocabulary"], Some("stop_token_ids[0]")),
        case("a malformed GBNF grammar", CHAT, chat_with(|v| v["guided_grammar"] = json!("root ::= \"yes\" | [a-")), 400, &["GBNF line 1"], Some("guided_grammar")),
        case("a grammar that does not parse", CHAT, chat_with(|v| v["structured_outputs"] = json!({"grammar": "start: (\"a\""})), 400, &["cannot be used"], Some("structured_outputs.grammar")),
        case("structured_outputs asking for nothing", CHAT, chat_with(|v| v["structured_outputs"] = json!({"disable_fallback": true})), 400, &["asks for no format"], Some("structured_outputs")),
        case("structured_outputs with two formats", CHAT, chat_with(|v| v["structured_outputs"] = json!({"regex": "a", "choice": ["b"]})), 400, &["both set"], Some("structured_outputs.choice")),
        case("structured_outputs beside guided_regex", CHAT, chat_with(|v| { v["structured_outputs"] = json!({"regex": "a"}); v["guided_regex"] = json!("b"); }), 400, &["both set"], Some("guided_regex")),
        case("an unknown structured_outputs field", CHAT, chat_with(|v| v["structured_outputs"] = json!({"regex": "a", "backend": "xgrammar"})), 400, &["unknown field `backend`"], Some("structured_outputs.backend")),
        case("a structured_outputs flag not a bool", CHAT, chat_with(|v| v["structured_outputs"] = json!({"json_object": "yes"})), 400, &["true or false"], Some("structured_outputs.json_object")),
        case("continue_final_message with add_generation_prompt", CHAT, chat_with(|v| { v["continue_final_message"] = json!(true); v["add_generation_prompt"] = json!(true); }), 400, &["cannot both be true"], Some("continue_final_message")),
        case("a template kwarg that is a request field", CHAT, chat_with(|v| v["chat_template_kwargs"] = json!({"messages": []})), 400, &["the request's own field `messages`; give it there"], Some("chat_template_kwargs.messages")),
        case("a template kwarg the server sets", CHAT, chat_with(|v| v["chat_template_kwargs"] = json!({"bos_token": "X"})), 400, &["sets `bos_token` itself (from the model's tokenizer"], Some("chat_template_kwargs.bos_token")),
        case("documents not a list of objects", CHAT, chat_with(|v| v["documents"] = json!(["text"])), 400, &["list of objects"], Some("documents")),
        case("tokenize continue_final_message with a prompt", "/tokenize", json!({"prompt": "hi", "continue_final_message": true}).to_string().into_bytes(), 400, &["applies to `messages`"], Some("continue_final_message")),
        case("allowed_token_ids empty", COMPL, json!({"model": "boolq", "prompt": "hi", "allowed_token_ids": []}).to_string().into_bytes(), 400, &["is empty"], Some("allowed_token_ids")),
        case("allowed_token_ids past the vocabulary", COMPL, json!({"model": "boolq", "prompt": "hi", "allowed_token_ids": [5, 49152]}).to_string().into_bytes(), 400, &["`allowed_token_ids[1]` is 49152", "outside the vocabulary"], Some("allowed_token_ids[1]")),
        case("a blank bad word", COMPL, json!({"model": "boolq", "prompt": "hi", "bad_words": ["a", " "]}).to_string().into_bytes(), 400, &["non-blank string"], Some("bad_words[1]")),
        case("tool_choice auto with a format", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f"}}]); v["tool_choice"] = json!("auto"); v["guided_regex"] = json!("a+"); }), 400, &["could never write a call"], Some("tool_choice")),
        case("tokenize tools with a prompt", "/tokenize", json!({"prompt": "hi", "tools": []}).to_string().into_bytes(), 400, &["applies to `messages`"], Some("tools")),
        case("tokenize a tool without a name", "/tokenize", json!({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]}).to_string().into_bytes(), 400, &["1 to 64 letters"], Some("tools[0].function.name")),
        case("tool_choice with response_format", CHAT, chat_with(|v| { v["tools"] = json!([{"type": "function", "function": {"name": "f"}}]); v["tool_choice"] = json!("required"); v["response_format"] = json!({"type": "json_object"}); }), 400, &["both set"], Some("tool_choice")),
        case("functions", CHAT, chat_with(|v| v["functions"] = json!([{"name": "f"}])), 400, &["use `tools`"], Some("functions")),
        case("response_format of an unknown type", CHAT, chat_with(|v| v["response_format"] = json!({"type": "xml"})), 400, &["json_object", "json_schema"], Some("response_format.type")),
        case("a json_schema name OpenAI refuses", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "a b!", "schema": {}}})), 400, &["1 to 64 letters", "\"a b!\""], Some("response_format.json_schema.name")),
        case("json_schema without a schema", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x"}})), 400, &["needs `json_schema.schema`"], Some("response_format.json_schema.schema")),
        case("an unsatisfiable schema", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 1}}})), 400, &["cannot be used", "nsatisfiable"], Some("response_format")),
        case("a schema that is not an object", COMPL, json!({"model": "boolq", "prompt": "a", "guided_json": [1]}).to_string().into_bytes(), 400, &["must be a JSON schema"], Some("guided_json")),
        case("guided_json text that is not JSON", COMPL, json!({"model": "boolq", "prompt": "a", "guided_json": "{nope"}).to_string().into_bytes(), 400, &["not JSON"], Some("guided_json")),
        case("a malformed regex", COMPL, json!({"model": "boolq", "prompt": "a", "guided_regex": "(a"}).to_string().into_bytes(), 400, &["cannot be used", "unclosed group"], Some("guided_regex")),
        case("a regex that admits no text", COMPL, json!({"model": "boolq", "prompt": "a", "guided_regex": "[^\\s\\S]"}).to_string().into_bytes(), 400, &["cannot be used"], Some("guided_regex")),
        case("a schema of too many pattern properties", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "patternProperties": (0..50).map(|i| (format!("^k{i}[a-z]*$"), json!({"type": "integer"}))).collect::<serde_json::Map<String, Value>>()}}})), 400, &["cannot be used", "50 patterns in all (1225 pairs)"], Some("response_format")),
        case("a schema that only refers to itself", COMPL, json!({"model": "boolq", "prompt": "a", "guided_json": {"$ref": "#"}}).to_string().into_bytes(), 400, &["cannot be used"], Some("guided_json")),
        case("a schema beside json_object", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_object", "schema": {"type": "integer"}})), 400, &["unknown field `schema`"], Some("response_format.schema")),
        case("an unknown key in json_schema", CHAT, chat_with(|v| v["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "shema": {}}})), 400, &["unknown field `shema`"], Some("response_format.json_schema.shema")),
        case("an empty choice list", CHAT, chat_with(|v| v["guided_choice"] = json!([])), 400, &["empty"], Some("guided_choice")),
        case("a choice that is not a string", CHAT, chat_with(|v| v["guided_choice"] = json!(["a", 2])), 400, &["guided_choice[1]"], Some("guided_choice")),
        case("two formats", CHAT, chat_with(|v| { v["guided_regex"] = json!("a+"); v["response_format"] = json!({"type": "json_object"}); }), 400, &["both set the output format"], Some("guided_regex")),
        case("ignore_eos with a format", CHAT, chat_with(|v| { v["ignore_eos"] = json!(true); v["guided_choice"] = json!(["a"]); }), 400, &["cannot go with `guided_choice`"], Some("ignore_eos")),
        case("seed of the wrong type", CHAT, chat_with(|v| v["seed"] = json!("abc")), 400, &["seed"], Some("seed")),
        case("body past --max-body-mib", CHAT, vec![b' '; 2 << 20], 413, &["at most 1048576 are accepted (--max-body-mib)"], None),
        case("tokenize with prompt and messages", "/tokenize", json!({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}).to_string().into_bytes(), 400, &["not both"], Some("messages")),
        case("tokenize without either", "/tokenize", json!({"model": "boolq"}).to_string().into_bytes(), 400, &["is required"], Some("prompt")),
        case("tokenize of an unknown model", "/tokenize", json!({"model": "nope", "prompt": "hi"}).to_string().into_bytes(), 404, &["`nope` does not exist"], Some("model")),
        case("tokenize with an empty model", "/tokenize", json!({"model": "", "prompt": "hi"}).to_string().into_bytes(), 400, &["`model` is empty"], Some("model")),
        case("tokenize with an unknown field", "/tokenize", json!({"prompt": "hi", "chat_template": "x"}).to_string().into_bytes(), 400, &["chat_template"], Some("chat_template")),
        case("tokenize past the context", "/tokenize", json!({"prompt": "x".repeat(256 * 81)}).to_string().into_bytes(), 400, &["at least 256 tokens"], Some("prompt")),
        case("tokenize: add_special_tokens with messages", "/tokenize", json!({"messages": [{"role": "user", "content": "hi"}], "add_special_tokens": true}).to_string().into_bytes(), 400, &["applies to `prompt`"], Some("add_special_tokens")),
        case("tokenize: add_generation_prompt with a prompt", "/tokenize", json!({"prompt": "hi", "add_generation_prompt": false}).to_string().into_bytes(), 400, &["applies to `messages`"], Some("add_generation_prompt")),
        case("detokenize outside the vocabulary", "/detokenize", json!({"tokens": [1, 49152]}).to_string().into_bytes(), 400, &["`tokens[1]` = 49152"], Some("tokens[1]")),
        case("detokenize past the context", "/detokenize", json!({"tokens": vec![1; 257]}).to_string().into_bytes(), 400, &["holds 257 ids; at most 256"], Some("tokens")),
        case("an unknown key in a text part", CHAT, chat_with(|v| v["messages"][0]["content"] = json!([{"type": "text", "text": "hi", "detail": "high"}])), 400, &["`messages[0].content[0].detail`"], Some("messages[0].content[0].detail")),
        case("a prompt list of mixed kinds", COMPL, json!({"model": "boolq", "prompt": [[1], 5]}).to_string().into_bytes(), 400, &["`prompt[1]` must be a list of token ids"], Some("prompt[1]")),
        case("detokenize without tokens", "/detokenize", json!({"model": "boolq"}).to_string().into_bytes(), 400, &["is required"], Some("tokens")),
        case("runtime loading off", "/v1/load_lora_adapter", json!({"lora_name": "x", "lora_path": "y"}).to_string().into_bytes(), 403, &["--allow-runtime-adapters"], None),
        case("unknown route", "/v1/embeddings", b"{}".to_vec(), 404, &["no route"], None),
    ]
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let Some(a) = assets() else { return };
    let mut args = a.model_args();
    args.extend(["--max-context", "256", "--max-body-mib", "1"].map(String::from));
    let s = Server::start(&args);
    let good = json!({"model": "piqa", "temperature": 0, "max_tokens": 16,
                      "messages": [{"role": "user", "content": "How do I keep bread fresh?"}]});
    let before = s.ok(CHAT, &good)["choices"][0]["message"]["content"].clone();
    let cases = catalogue();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for c in &cases {
        let r = if c.body.len() > 1 << 20 {
            s.post_oversized(c.path, c.body.clone())
        } else {
            s.post_raw(c.path, &c.body, &[])
        };
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.body);
        let v = r.json();
        let e = &v["error"];
        let msg = e["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {v}", c.name));
        for w in c.words {
            assert!(msg.contains(w), "{}: message {msg:?} lacks {w:?}", c.name);
        }
        assert!(
            e["type"].is_string() && e.get("code").is_some(),
            "{}: {v}",
            c.name
        );
        if let Some(p) = c.param {
            assert_eq!(e["param"], p, "{}: {v}", c.name);
        }
        // A `param` is a field of the request, never a placeholder.
        let param = e["param"].as_str().unwrap_or("");
        assert!(!param.contains('?'), "{}: {v}", c.name);
        if c.name == "malformed JSON" {
            assert!(e["param"].is_null(), "{}: {v}", c.name);
        }
    }
    // Wrong method: 405 with the same error shape.
    let r = s.get(CHAT);
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["message"].is_string());
    // Still serving, with the same answer as before.
    assert_eq!(
        s.ok(CHAT, &good)["choices"][0]["message"]["content"],
        before
    );
    assert!(!s.log().contains("panicked"), "{}", s.log());
    assert_eq!(
        s.metric("dlp_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"),
        2.0
    );
}

/// An adapter whose update overflows the forward pass (its B scaled by 1e30, finite, so it
/// loads) is the server's fault, not the request's: 500 `non_finite_logits` naming the cause,
/// and the server serves on.
#[test]
fn an_overflowing_adapter_gets_a_500_and_the_server_serves_on() {
    let Some(a) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge");
    dlp_tests::broken::scaled_lora_b(&a.adapters.join("boolq"), &huge, 1e30);
    let mut args = a.model_args();
    args.extend(["--adapter".to_string(), format!("huge={}", huge.display())]);
    let s = Server::start(&args);
    let chat = |model: &str| {
        json!({"model": model, "temperature": 0, "max_tokens": 4,
               "messages": [{"role": "user", "content": "Is the sky blue?"}]})
    };
    let r = s.post(CHAT, &chat("huge"));
    assert_eq!(r.status, 500, "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "non_finite_logits", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("no finite logit"), "{msg}");
    assert!(s.ok(CHAT, &chat("boolq"))["choices"][0]["message"]["content"].is_string());
    assert!(!s.log().contains("panicked"), "{}", s.log());
}
