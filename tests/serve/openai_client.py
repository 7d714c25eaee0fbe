#!/usr/bin/env python3
"""The official `openai` client against `dlp-run serve`.

Checks what clients rely on: listing models, chat (plain and streamed), completions with
`echo` + `logprobs` (lm-evaluation-harness's `local-completions` scoring), `model: "auto"`
(the DLP router) and an explicit `lora_mixture`, structured output (`parse` with a pydantic
model, `json_object`, `guided_choice`), forced tool calls (a named function, `required`), and
the Responses API (`responses.create`, `responses.stream`, `responses.parse`, function call
items and their outputs sent back); greedy texts must equal `dlp-run generate`
byte for byte, echoed log-probabilities must equal `dlp-run score`'s within 1e-4, and errors
must surface as the client's typed exceptions.

Usage: openai_client.py --base-url URL --dlp-run BIN --router DIR -- MODEL_ARGS...
(MODEL_ARGS: the server's --model/--backend/--adapter flags, passed on to generate/score.)
"""

import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile

import openai

QUESTION = ("Please answer the following question with true or false, question: "
            "is the sun a star?\n\nAnswer format: true/false")
TWO_TASKS = ("Which is better for cutting bread, a knife or a spoon? "
             "Tom has 3 apples and buys 4 more. How many apples does he have?")
MAX_TOKENS = 24
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def generate(args, extra):
    cmd = [args.dlp_run, "generate", *args.model_args, "--json", "--max-tokens", str(MAX_TOKENS), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]


def score_logprobs(args, ids, mix):
    """Log-probabilities of ids[1:] from `dlp-run score`'s logits (safetensors, read by hand)."""
    with tempfile.TemporaryDirectory() as d:
        path = d + "/l.safetensors"
        subprocess.run([args.dlp_run, "score", *args.model_args, "--ids", ",".join(map(str, ids)),
                        "--mix", mix, "--out", path], check=True, capture_output=True)
        raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    t = header["logits"]
    start, end = t["data_offsets"]
    data = raw[8 + n + start:8 + n + end]
    vocab = t["shape"][1]
    vals = struct.unpack(f"<{len(data) // 4}f", data)
    out = []
    for i in range(1, len(ids)):
        row = vals[(i - 1) * vocab:i * vocab]
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        out.append(row[ids[i]] - lse)
    return out


def structured_output(client):
    """What the SDK sends for structured output: `parse` with a pydantic model (a strict
    json_schema), `response_format` json_object, and vLLM's `guided_choice` in extra_body."""
    import pydantic

    class Verdict(pydantic.BaseModel):
        answer: bool
        reason: str = pydantic.Field(max_length=40)

    msgs = [{"role": "user", "content": QUESTION}]
    # Newer SDKs have `parse` on chat.completions, older ones under beta.
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    r = parse(model="boolq", messages=msgs, temperature=0, max_tokens=100, response_format=Verdict)
    v = r.choices[0].message.parsed
    check(isinstance(v, Verdict) and isinstance(v.answer, bool) and len(v.reason) <= 40,
          f"parse with a pydantic model: {r.choices[0].message.content!r}")
    # parse()'s message sent back as history, as OpenAI's agent loops do: with `parsed`.
    history = msgs + [r.choices[0].message.model_dump(), {"role": "user", "content": "Sure?"}]
    check("parsed" in history[1], f"the SDK dumps parsed: {history[1]}")
    again = parse(model="boolq", messages=history, temperature=0, max_tokens=100,
                  response_format=Verdict)
    check(isinstance(again.choices[0].message.parsed, Verdict), "a parsed turn is taken as history")
    r = client.chat.completions.create(model="boolq", messages=msgs, temperature=0, max_tokens=100,
                                       response_format={"type": "json_object"})
    try:
        ok = isinstance(json.loads(r.choices[0].message.content), dict)
    except ValueError:
        ok = False
    check(ok, f"response_format json_object: {r.choices[0].message.content!r}")
    r = client.chat.completions.create(model="boolq", messages=msgs, temperature=0, max_tokens=8,
                                       extra_body={"guided_choice": ["yes", "no"]})
    check(r.choices[0].message.content in ("yes", "no"),
          f"guided_choice: {r.choices[0].message.content!r}")
    # A forced tool call: a named function (plain and streamed) and "required".
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": False}}}]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(model="boolq", messages=ask, tools=tools, tool_choice=named,
                                       temperature=0, max_tokens=60)
    call = (r.choices[0].message.tool_calls or [None])[0]
    # A named function's call ends with "stop", as OpenAI's and vLLM's ("tool_calls" is for
    # "auto" and "required").
    ok = call is not None and call.function.name == "get_weather" and r.choices[0].finish_reason == "stop"
    args = json.loads(call.function.arguments) if ok else {}
    check(ok and isinstance(args.get("city"), str) and r.choices[0].message.content is None,
          f"a named tool_choice gives its call: {r.choices[0].message}")
    # The call sent back with its result (instructor's retry, an agent loop): SmolLM2's template
    # never reads tool_calls, so the turn is written as the arguments the model generated.
    if ok:
        # As the SDK dumps it: `refusal`, `audio`, `function_call`, ... as None.
        turn = r.choices[0].message.model_dump()
        again = ask + [turn, {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
        r2 = client.chat.completions.create(model="boolq", messages=again, tools=tools, tool_choice=named,
                                            temperature=0, max_tokens=60)
        check(r2.choices[0].finish_reason == "stop" and r2.choices[0].message.tool_calls,
              f"a second turn after a call: {r2.choices[0]}")
    got = {}
    for chunk in client.chat.completions.create(model="boolq", messages=ask, tools=tools, tool_choice=named,
                                                temperature=0, max_tokens=60, stream=True):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                g = got.setdefault(tc.index, ["", ""])
                g[0] += tc.function.name or ""
                g[1] += tc.function.arguments or ""
    check(ok and got.get(0) == ["get_weather", call.function.arguments],
          f"the streamed call equals the plain one: {got}")
    r = client.chat.completions.create(model="boolq", messages=ask, tools=tools, tool_choice="required",
                                       temperature=0, max_tokens=80)
    calls = r.choices[0].message.tool_calls or []
    check(len(calls) >= 1 and all(c.function.name == "get_weather" for c in calls)
          and all(isinstance(json.loads(c.function.arguments).get("city"), str) for c in calls),
          f"tool_choice required gives calls: {calls}")
    try:
        client.chat.completions.create(model="boolq", messages=ask, tools=tools)
        check(False, "tools with tool_choice auto raise BadRequestError")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "tool_choice", "tools with tool_choice auto raise BadRequestError")

    try:
        client.chat.completions.create(model="boolq", messages=msgs, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 2, "maximum": 1}}})
        check(False, "an unsatisfiable schema raises BadRequestError")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "response_format", "an unsatisfiable schema raises BadRequestError")


def responses_api(client, args, chat, want):
    """The Responses API answers as chat does: the same greedy text and usage, plain and
    streamed, with `instructions`, structured output, a forced call and its output sent back."""
    import pydantic

    r = client.responses.create(model="boolq", input=QUESTION, temperature=0,
                                max_output_tokens=MAX_TOKENS)
    check(r.output_text == want["text"], f"responses.create equals generate: {r.output_text!r}")
    check(r.usage.output_tokens == chat.usage.completion_tokens
          and r.usage.input_tokens == chat.usage.prompt_tokens, f"responses usage: {r.usage}")
    check(r.status == ("incomplete" if chat.choices[0].finish_reason == "length" else "completed"),
          f"responses status {r.status} for finish {chat.choices[0].finish_reason}")
    kinds = []
    with client.responses.stream(model="boolq", input=QUESTION, temperature=0,
                                 max_output_tokens=MAX_TOKENS) as s:
        deltas = []
        for ev in s:
            kinds.append(ev.type)
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = s.get_final_response()
    check("".join(deltas) == want["text"] and final.output_text == want["text"],
          f"responses.stream equals generate: {''.join(deltas)!r}")
    check(kinds[:2] == ["response.created", "response.in_progress"]
          and kinds[-1] in ("response.completed", "response.incomplete"), f"event order: {kinds}")
    short = client.responses.create(model="boolq", input=QUESTION, max_output_tokens=2,
                                    temperature=0)
    check(short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens",
          f"max_output_tokens cut: {short.status} {short.incomplete_details}")
    system = "Answer in one word."
    r = client.responses.create(model="boolq", input=QUESTION, instructions=system, temperature=0,
                                max_output_tokens=MAX_TOKENS)
    c = client.chat.completions.create(model="boolq", temperature=0, max_tokens=MAX_TOKENS, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": QUESTION}])
    check(r.output_text == c.choices[0].message.content, "instructions are a system message")

    class Verdict(pydantic.BaseModel):
        answer: bool
        reason: str = pydantic.Field(max_length=40)

    p = client.responses.parse(model="boolq", input=QUESTION, text_format=Verdict, temperature=0,
                               max_output_tokens=100)
    check(isinstance(p.output_parsed, Verdict), f"responses.parse: {p.output_text!r}")
    # The parsed output sent back as the next turn's history (its parts carry `parsed`).
    follow = [{"role": "user", "content": QUESTION}] + p.output + [{"role": "user", "content": "Thanks."}]
    r = client.responses.create(model="boolq", input=follow, max_output_tokens=2)
    check(r.status in ("completed", "incomplete"), f"parsed output sent back: {r.status}")
    tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                             "required": ["city"], "additionalProperties": False}}]
    named = {"type": "function", "name": "get_weather"}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.responses.create(model="boolq", input=ask, tools=tools, tool_choice=named, temperature=0,
                                max_output_tokens=60)
    calls = [o for o in r.output if o.type == "function_call"]
    ok = len(calls) == 1 and calls[0].name == "get_weather"
    check(ok and isinstance(json.loads(calls[0].arguments).get("city"), str), f"a forced call: {r.output}")
    if ok:
        again = ask + r.output + [{"type": "function_call_output", "call_id": calls[0].call_id,
                                   "output": "Sunny, 21 C"}]
        r2 = client.responses.create(model="boolq", input=again, tools=tools, tool_choice=named,
                                     temperature=0, max_output_tokens=60)
        check([o.type for o in r2.output] == ["function_call"], f"outputs sent back: {r2.output}")
    for kw, param in [({"previous_response_id": "resp_x"}, "previous_response_id"),
                      ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
                       "input[0].content[0]")]:
        try:
            client.responses.create(**{"model": "boolq", "input": QUESTION, **kw})
            check(False, f"{param} raises BadRequestError")
        except openai.BadRequestError as e:
            check(e.body.get("param") == param, f"{param} raises BadRequestError")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--dlp-run", required=True)
    p.add_argument("--router", required=True)
    p.add_argument("model_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.model_args and args.model_args[0] == "--":
        args.model_args = args.model_args[1:]
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0)

    ids = [m.id for m in client.models.list().data]
    check("auto" in ids and "boolq" in ids and "piqa" in ids, f"models listed: {ids}")
    base = ids[0]
    check(all(m.model_extra.get("parent") == base for m in client.models.list().data[1:]),
          "adapters list the base model as parent")
    check(client.models.retrieve("boolq").model_extra.get("parent") == base,
          "models.retrieve finds an adapter")
    try:
        client.models.retrieve("boolk")
        check(False, "models.retrieve of an unknown model raises")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found", f"unknown model: code {e.code}")

    msgs = [{"role": "user", "content": QUESTION}]
    chat = client.chat.completions.create(model="boolq", messages=msgs, temperature=0,
                                          max_tokens=MAX_TOKENS)
    text = chat.choices[0].message.content
    check((chat._request_id or "").startswith("req_"), f"x-request-id: {chat._request_id!r}")
    # What the SDK's signature offers, sent as it and its wrappers send them (LangChain's
    # reasoning_effort, null audio, ...): accepted, as OpenAI accepts them.
    sdk = client.chat.completions.create(
        model="boolq", messages=msgs, temperature=0, max_tokens=MAX_TOKENS,
        extra_body={"safety_identifier": "user-1", "prompt_cache_key": "k",
                    "modalities": ["text"], "reasoning_effort": "minimal", "verbosity": "low",
                    "audio": None, "prediction": None, "web_search_options": None})
    check(sdk.choices[0].message.content == text, "SDK-only fields change nothing")
    want = generate(args, ["--mix", "boolq=1", "--chat", "--prompt", QUESTION])
    check(text == want["text"], f"chat equals generate: {text!r} vs {want['text']!r}")
    check(chat.usage.completion_tokens == want["completion_tokens"], "usage.completion_tokens")
    check(chat.model_extra["dlp"]["choices"][0]["segments"][0]["mixture"][0]["adapter"] == "boolq",
          "dlp object names the adapter")
    responses_api(client, args, chat, want)
    # The answer sent back as history as the SDK dumps it (`refusal: None`, `tool_calls: None`,
    # `annotations`, ...): OpenAI and vLLM take it.
    history = msgs + [chat.choices[0].message.model_dump(), {"role": "user", "content": "Why?"}]
    check(history[1].get("refusal", 0) is None and "tool_calls" in history[1],
          f"the SDK dumps null fields: {history[1]}")
    again = client.chat.completions.create(model="boolq", messages=history, temperature=0,
                                           max_tokens=4)
    check(isinstance(again.choices[0].message.content, str), "a dumped answer is taken as history")

    pieces, last = [], None
    for chunk in client.chat.completions.create(model="boolq", messages=msgs, temperature=0,
                                                max_tokens=MAX_TOKENS, stream=True,
                                                stream_options={"include_usage": True}):
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            if c.finish_reason:
                last = chunk
        if chunk.usage:
            check(chunk.usage.completion_tokens == want["completion_tokens"], "streamed usage")
    check("".join(pieces) == text, "streamed chat equals the plain one")
    check(last is not None and "dlp" in last.model_extra, "last stream chunk carries dlp")

    mixed = client.chat.completions.create(model=base, messages=msgs, temperature=0,
                                           max_tokens=MAX_TOKENS,
                                           extra_body={"lora_mixture": {"boolq": 0.7, "piqa": 0.3}})
    want = generate(args, ["--mix", "boolq=0.7,piqa=0.3", "--chat", "--prompt", QUESTION])
    check(mixed.choices[0].message.content == want["text"], "lora_mixture equals generate --mix")

    for by in ["request", "sentence"]:
        routed = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": TWO_TASKS}], temperature=0,
            max_tokens=MAX_TOKENS, extra_body={"dlp_route_by": by})
        want = generate(args, ["--router", args.router, "--route-by", by, "--chat", "--prompt", TWO_TASKS])
        check(routed.choices[0].message.content == want["text"], f"auto ({by}) equals generate --router")
        segs = routed.model_extra["dlp"]["choices"][0]["segments"]
        check(len(segs) == len(want["segments"]), f"auto ({by}): {len(segs)} segments like generate")

    prompt_ids = [504, 3575, 282, 4649, 314, 253, 1345, 30]
    comp = client.completions.create(model="boolq", prompt=prompt_ids, echo=True, max_tokens=0,
                                     logprobs=1, temperature=0)
    lp = comp.choices[0].logprobs
    ref = score_logprobs(args, prompt_ids, "boolq=1")
    check(lp.token_logprobs[0] is None and len(lp.token_logprobs) == len(prompt_ids),
          "echo returns every prompt token")
    worst = max(abs(a - b) for a, b in zip(lp.token_logprobs[1:], ref))
    check(worst < 1e-4, f"echoed logprobs equal score's (max diff {worst:.2e})")
    # lm-evaluation-harness sends a batch of token prompts with max_tokens 1.
    batch = client.completions.create(model="boolq", prompt=[prompt_ids, prompt_ids[:4]], echo=True,
                                      max_tokens=1, logprobs=1, temperature=0)
    check(len(batch.choices) == 2 and len(batch.choices[1].logprobs.tokens) == 5,
          "a batch of token prompts gives one choice each")

    n2 = client.chat.completions.create(model="piqa", messages=msgs, temperature=1.0, seed=7,
                                        max_tokens=8, n=2)
    check(len(n2.choices) == 2, "n=2 gives two choices")

    structured_output(client)

    try:
        client.chat.completions.create(model="nope", messages=msgs)
        check(False, "unknown model raises NotFoundError")
    except openai.NotFoundError as e:
        check("nope" in str(e), "unknown model raises NotFoundError")
    try:
        client.chat.completions.create(model="boolq", messages=msgs, temperature=-1)
        check(False, "bad temperature raises BadRequestError")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "temperature", "bad temperature raises BadRequestError")

    if failures:
        print(f"{len(failures)} checks failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
