"""The serve stage of scripts/gpu_check.py: `dlp-run serve` on the GPU, the production path,
which no test of the checks stage runs (they call the engine in one process, one step shape at
a time). One server on the smallest model of SHAPES if it is 1B or smaller, in the first mode of MODES (as narrowed by the
checks), with four of its adapters; then, as clients would:
- /v1/models lists the base model and the adapters;
- 12 completions at once, each with its own mixture (one, two or three adapters, or none),
  prompts of 7 words to about 2,000 bytes (prefill chunks beside running decodes: continuous
  batching),
  greedy and sampled, a third of them streamed: every one 200 with exactly 24 tokens
  (`ignore_eos`), a streamed one ending in its usage and [DONE];
- one greedy request alone, twice: the same text and token log-probabilities both times;
- an unknown adapter: a 404 with an OpenAI error body, and the server serves on;
- an adapter loaded at run time (/v1/load_lora_adapter, a copy of a0 under another name)
  answers exactly as a0 does, a0 answers as before it came and after it is unloaded, and an
  unloaded name is a 404: the adapter stacks are rebuilt while the server runs (and graphs
  recorded with the old ones must not replay);
- three choices of one prompt (`n`: 3) start as that prompt alone does (the first token's top
  log-probability within 0.05: a follower computes only the prompt's last token, over the rows
  it copied) and, where the server shares prompt prefixes (on the CPU; on CUDA with
  --cuda-experimental kv-copy), the two later choices copy the first one's KV rows (/metrics'
  dlp_prefix_shared_tokens_total grows): the prefix copy on the GPU, which no other stage
  serves. Greedy texts are not compared: a batch of 3 rows may round otherwise than 1 row, and
  a random model's near-ties then pick other tokens;
- /metrics counts the requests;
- SIGTERM: exit 0.
Where the first mode fails, the server runs again in f32 (the parity reference), so that the
summary says whether the server or a path broke. On the CPU (GPU_CHECK_BACKEND=cpu) f32 only.
`exercise(url)` is the client part, for scripts/gpu_check_selftest.py.
"""
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from gpu_check_core import (BACKEND, LOGS, MODE_FLAGS, MODES, RUST_ENV, SHAPES, SIZE, WORK,
                            kill_group, left, live, lock, paths_in, record, say, stopping)

TOKENS = 24
ADAPTERS = ["a0", "a1", "a2", "a3"]
MIXTURES = [{"a0": 1.0}, {"a1": 0.6, "a2": 0.4}, {"a0": 0.5, "a1": 0.3, "a2": 0.2}, None]
TRY_CAP = 120  # one server's start, requests and stop, in seconds
SHUTDOWN_GRACE = 5  # --shutdown-grace: seconds the server lets running requests finish
CONTEXT = 2048  # --max-context: 16 slots of a 1B model's f32 KV cache in 2 GiB


def post(url, body, timeout=60):
    """(status, the parsed JSON body, or the raw text of a stream) of a POST."""
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read().decode("utf-8", "replace"), e.code
    if body.get("stream"):
        return status, text
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


PHRASE = "The cat sat on the mat "


def request(i, prompt_bytes):
    """Completion i of the concurrent batch: its mixture, prompt length (up to `prompt_bytes`),
    sampling, streaming."""
    reps = max(1, prompt_bytes // len(PHRASE) * (i % 6) // 5)
    body = {"model": "base", "prompt": PHRASE * reps + str(i),
            "max_tokens": TOKENS, "ignore_eos": True, "temperature": 0 if i % 2 == 0 else 0.9,
            "seed": i}
    if MIXTURES[i % 4]:
        body["lora_mixture"] = MIXTURES[i % 4]
    if i % 3 == 2:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def problem_of(i, status, got):
    """What is wrong with completion i's answer, or None."""
    if status != 200:
        return f"request {i}: HTTP {status}: {str(got)[:300]}"
    if isinstance(got, str):  # a stream
        events = [line[6:] for line in got.splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return f"request {i} (stream): no [DONE] at its end: {got[-300:]}"
        usage = [json.loads(e).get("usage") for e in events[:-1]]
        usage = [u for u in usage if u]
        n = usage[-1].get("completion_tokens") if usage else None
        return None if n == TOKENS else f"request {i} (stream): usage {usage[-1:]} not {TOKENS}"
    n = (got.get("usage") or {}).get("completion_tokens")
    choice = (got.get("choices") or [{}])[0]
    if n != TOKENS or not isinstance(choice.get("text"), str):
        return f"request {i}: {n} tokens (want {TOKENS}), choice {str(choice)[:200]}"
    if choice.get("finish_reason") != "length":
        return f"request {i}: finish_reason {choice.get('finish_reason')!r}, not 'length'"
    return None


def greedy(url, mixture):
    """A greedy 24-token completion of one fixed prompt under `mixture` (None: the base
    model), with each token's log-probability: (status, body)."""
    body = {"model": "base", "prompt": "Once upon a time", "max_tokens": TOKENS,
            "ignore_eos": True, "temperature": 0, "logprobs": 1}
    if mixture:
        body["lora_mixture"] = mixture
    return post(url + "/v1/completions", body)


def answer(a):
    """A completion's (text, token log-probabilities): equal only where the logits were."""
    c = a[1]["choices"][0]
    return c["text"], tuple(c["logprobs"]["token_logprobs"])


def runtime_adapters(url):
    """Loads a0's folder again as `late`, compares, unloads it: the problems found."""
    problems = []
    answers = {"base": greedy(url, None), "before": greedy(url, {"a0": 1.0})}
    status, text = post(url + "/v1/load_lora_adapter", {"lora_name": "late", "lora_path": "a0"})
    if status != 200:
        return [f"/v1/load_lora_adapter: HTTP {status}: {str(text)[:200]}"]
    answers["late"] = greedy(url, {"late": 1.0})
    answers["a0 beside late"] = greedy(url, {"a0": 1.0})
    status, text = post(url + "/v1/unload_lora_adapter", {"lora_name": "late"})
    if status != 200:
        problems.append(f"/v1/unload_lora_adapter: HTTP {status}: {str(text)[:200]}")
    status, gone = greedy(url, {"late": 1.0})
    if status != 404:
        problems.append(f"after unloading `late`, a request naming it: HTTP {status}, not 404")
    answers["a0 after"] = greedy(url, {"a0": 1.0})
    for i, (what, a) in enumerate(answers.items()):
        if (p := problem_of(200 + i, *a)):
            problems.append(f"{what}: {p}")
    if not problems:
        got = {what: answer(a) for what, a in answers.items()}
        base = got.pop("base")
        if len(set(got.values())) != 1:
            problems.append(f"a0 and its runtime copy do not answer alike: {got}")
        elif base == got["before"]:
            problems.append("a0 leaves the base model's log-probabilities as they were: this "
                            "check proves nothing with it")
    return problems


def shares_prefixes(flags):
    """Whether `dlp-run serve` with `flags` shares prompt prefixes: on the CPU always, on CUDA
    with --cuda-experimental kv-copy (or fast, or all)."""
    return BACKEND != "cuda" or "kv-copy" in paths_in(flags)


def shared_tokens(url):
    """/metrics' dlp_prefix_shared_tokens_total (None where it is missing)."""
    _, metrics = get(url + "/metrics")
    for line in metrics.splitlines():
        if line.startswith("dlp_prefix_shared_tokens_total"):
            return float(line.split()[-1])
    return None


def first_top_logprob(choice):
    """The top log-probability at a completion choice's first token (None when missing)."""
    try:
        return max(choice["logprobs"]["top_logprobs"][0].values())
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def choices_alike(url, shares):
    """Three choices of one prompt against that prompt alone, their first tokens' top
    log-probabilities within 0.05; with `shares`, the later choices must have copied the first
    one's KV rows: the problems found."""
    body = {"model": "base", "prompt": PHRASE * 4, "max_tokens": 4, "ignore_eos": True,
            "temperature": 0, "logprobs": 1, "lora_mixture": MIXTURES[1]}
    before = shared_tokens(url)
    status, alone = post(url + "/v1/completions", body)
    status3, three = post(url + "/v1/completions", {**body, "n": 3})
    if status != 200 or status3 != 200:
        return [f"n=3: HTTP {status} alone, {status3} with n=3: {str(three)[:200]}"]
    want = first_top_logprob(alone["choices"][0])
    got = [first_top_logprob(c) for c in sorted(three["choices"], key=lambda c: c["index"])]
    problems = []
    if want is None or len(got) != 3 or any(g is None or abs(g - want) > 0.05 for g in got):
        problems.append(f"n=3: the first tokens' top log-probabilities {got} are not the prompt "
                        f"alone's {want} (within 0.05)")
    after = shared_tokens(url)
    if shares and not (before is not None and after is not None and after > before):
        problems.append(f"n=3 shared no prompt tokens (dlp_prefix_shared_tokens_total {before} "
                        f"then {after})")
    return problems


def exercise(url, prompt_bytes=2400, names=ADAPTERS, runtime=True, shares=None):
    """The clients' part against a server at `url` (http://host:port) that serves the base
    model as `base` and adapters `names`, prompts of up to `prompt_bytes` (a byte-level
    tokenizer makes a token of each), and with `runtime` loads adapters from under its
    --adapter-root (which holds a0), and unless `shares` is None checks `n` choices
    (`choices_alike`): the list of problems found (empty: all as expected)."""
    problems = []
    _, models = get(url + "/v1/models")
    ids = {m["id"] for m in json.loads(models)["data"]}
    if not {"base", *names} <= ids:
        problems.append(f"/v1/models lists {sorted(ids)}, not base and {names}")
    with cf.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: post(url + "/v1/completions", request(i, prompt_bytes)),
                                range(12)))
    problems += [p for i, a in enumerate(answers) if (p := problem_of(i, *a))]
    first, second = greedy(url, MIXTURES[2]), greedy(url, MIXTURES[2])
    problems += [p for p in (problem_of(100, *first), problem_of(101, *second)) if p]
    if not problems and answer(first) != answer(second):
        problems.append(f"one greedy request alone gave two answers: {answer(first)} then "
                        f"{answer(second)}")
    status, err = greedy(url, {"nope": 1.0})
    if status != 404 or not isinstance(err, dict) or "message" not in err.get("error", {}):
        problems.append(f"unknown adapter: HTTP {status} {str(err)[:200]}, not a 404 error body")
    if problem_of(102, *greedy(url, MIXTURES[2])):
        problems.append("the server did not serve on after the 404")
    if shares is not None and not problems:
        problems += choices_alike(url, shares)
    if runtime and not problems:
        problems += runtime_adapters(url)
    status, metrics = get(url + "/metrics")
    if status != 200 or "dlp_requests_total" not in metrics:
        problems.append(f"/metrics: HTTP {status}, no dlp_requests_total")
    return problems


def start(cmd, log, until):
    """Starts the server (stderr and stdout to `log`; killed with the run should it stop):
    (process, url), url None when it exited or had not said where it listens by `until`
    (a monotonic time)."""
    with open(log, "w") as f, lock:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=RUST_ENV,
                             start_new_session=True)
        live.add(p)
    while time.monotonic() < until and p.poll() is None and not stopping.is_set():
        with open(log, errors="replace") as r:
            for line in r:
                # Whole lines only: the port may not have been written yet.
                if "listening on http://" in line and line.endswith("\n"):
                    return p, line.split("listening on ")[1].strip()
        time.sleep(0.5)
    return p, None


def stop(p):
    """SIGTERM (the server was started with a grace of SHUTDOWN_GRACE s), then SIGKILL to its
    process group 5 s past that: the exit status, None when it had to be killed."""
    try:
        if stopping.is_set():  # the run is ending: no grace
            kill_group(p)
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=SHUTDOWN_GRACE + 5)
        except subprocess.TimeoutExpired:
            kill_group(p)
            return None
    finally:
        if p.poll() is not None:  # else kill_live tries again at the end
            with lock:
                live.discard(p)


def serve_once(bins, shape, mode):
    """One server in `mode`, exercised and stopped within TRY_CAP s; records the step and
    returns its status."""
    d = os.path.join(WORK, shape)
    cmd = [bins["dlp-run"], "serve", "--backend", BACKEND, "--model", os.path.join(d, "model"),
           "--port", "0", "--served-model-name", "base", "--max-concurrent", "16",
           "--max-context", str(CONTEXT), "--allow-runtime-adapters", "--adapter-root",
           os.path.join(d, "adapters"), "--shutdown-grace", str(SHUTDOWN_GRACE)]
    flags = MODE_FLAGS[mode]
    cmd += [f"--adapter={a}={d}/adapters/{a}" for a in ADAPTERS] + flags
    log = os.path.join(LOGS, f"serve-{shape}-{mode}.log")
    name = f"{shape} {mode}"
    # The try's deadline, its stop included (SHUTDOWN_GRACE + 15 s at most).
    until = time.monotonic() + min(TRY_CAP, left() - 10) - SHUTDOWN_GRACE - 15
    if until - time.monotonic() < 30 or stopping.is_set():
        return record("serve", name, "not run (budget)")
    try:
        with open(os.path.join(d, "model", "config.json")) as f:
            positions = json.load(f).get("max_position_embeddings") or 8192
    except (OSError, ValueError):
        positions = 8192
    prompt_bytes = max(16, min(positions, CONTEXT) - TOKENS - 32)
    t = time.monotonic()
    p, url = start(cmd, log, until)
    try:
        if url is None and p.poll() is None and not stopping.is_set():
            problems = [f"TIMEOUT (not listening after {time.monotonic() - t:.0f} s)"]
        elif url is None:
            problems = [f"not listening (exit status {p.poll()})"]
        else:
            # On a thread of its own (a daemon: a client stuck on a dead server must not keep
            # the run from ending); stopping the server ends what it waits on.
            out = []

            def clients():
                try:
                    out.append(exercise(url, prompt_bytes, shares=shares_prefixes(flags)))
                except Exception as e:  # a refused connection, a body that is not JSON, a hang
                    hung = isinstance(e, TimeoutError) or "timed out" in str(e)
                    out.append([("TIMEOUT (a request had no answer: " if hung else "(")
                                + f"{type(e).__name__}: {e})"])

            client = threading.Thread(target=clients, daemon=True)
            client.start()
            client.join(max(1.0, until - time.monotonic()))
            problems = out[0] if out else [
                f"TIMEOUT (the clients had no answer after {time.monotonic() - t:.0f} s)"]
    finally:
        rc = stop(p)
    if not problems and rc != 0:
        problems.append(f"exit status {rc} after SIGTERM (want 0)")
    with open(log, "a") as f:
        f.write("\n".join(["", "== gpu_check_serve =="] + (problems or ["all as expected"])) + "\n")
    if not problems:
        status = "pass"
    elif problems[0].startswith("TIMEOUT"):
        status = problems[0][:200]
    else:
        status = f"FAIL ({problems[0][:200]})"
    return record("serve", name, status, time.monotonic() - t, log)


def serve(bins, maker, first_failed=False):
    """The stage: the first mode on the smallest model made, then f32 where that failed; f32
    alone when the first mode's benchmark already failed (`first_failed`)."""
    if not SHAPES:
        return None
    if os.environ.get("SERVE") == "none":
        return record("serve", "-", "not run (SERVE=none)")
    shape = min(SHAPES, key=lambda s: SIZE.get(s, 9))
    if SIZE.get(shape, 9) > SIZE["1b"]:
        # As the golden stage: a larger model's load would take the benchmarks' time.
        return record("serve", shape, "not run (no model of 1B or smaller in SHAPES)")
    if not maker.ready(shape):
        return record("serve", shape, "not run (no model)")
    first = MODES[0] if BACKEND == "cuda" and not first_failed else "f32"
    say(f"serve: {shape} {first}")
    status = serve_once(bins, shape, first)
    # f32 tells a broken path from a broken server; not after a hang (TIMEOUT: it would take
    # as long again).
    if status.startswith("FAIL") and first != "f32":
        serve_once(bins, shape, "f32")
