#!/usr/bin/env python3
"""Load generator for `dlp-run serve` (or any OpenAI-compatible server).

N concurrent clients stream chat completions for a bounded time, each request with its own
model or adapter mixture (the base model, each adapter, `auto` when the server has a router,
and two-adapter `lora_mixture`s), and report requests/s, generated tokens/s, time to first
token and inter-token latency (p50/p99), errors and lost responses (a stream that ended
without a finish_reason). With --server-pid, the server's resident memory is sampled after
the first minute and at the end.

  bench/serve_load.py --base-url http://127.0.0.1:8000/v1 --clients 1,8,32 --duration 60

Needs the `openai` package (pip install -r tests/serve/requirements.txt).
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

import openai

FALLBACK_PROMPTS = [
    "Please answer with true or false: is water wet?",
    "How do I keep bread fresh for longer?",
    "Natalia sold 48 clips in April and half as many in May. How many clips did she sell?",
    "Which is heavier, a kilogram of iron or a kilogram of feathers?",
]


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_prompts(data_dir, limit=50):
    if not data_dir:
        return FALLBACK_PROMPTS
    prompts = []
    for task in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, task, "dev.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                for line in list(f)[:limit]:
                    prompts.append(json.loads(line)["instruction"])
    return prompts or FALLBACK_PROMPTS


async def selections(client):
    models = [m.id for m in (await client.models.list()).data]
    base = models[0]
    adapters = [m for m in models[1:] if m != "auto"]
    sel = [{"model": m} for m in models]
    for a, b in zip(adapters, adapters[1:] + adapters[:1]):
        if a != b:
            sel.append({"model": base, "extra_body": {"lora_mixture": {a: 0.6, b: 0.4}}})
    return sel


async def client_loop(i, client, args, prompts, sel, deadline, stats):
    rng = random.Random(args.seed * 1000 + i)
    while time.monotonic() < deadline:
        s = rng.choice(sel)
        t0 = time.monotonic()
        first, last, chunks, finished, usage = None, None, 0, False, None
        try:
            stream = await client.chat.completions.create(
                model=s["model"], extra_body=s.get("extra_body"),
                messages=[{"role": "user", "content": rng.choice(prompts)}],
                max_tokens=args.max_tokens, temperature=args.temperature, stream=True,
                stream_options={"include_usage": True})
            async for chunk in stream:
                now = time.monotonic()
                for c in chunk.choices:
                    if c.delta.content:
                        if first is None:
                            first = now
                            stats["ttft"].append(now - t0)
                        else:
                            stats["itl"].append(now - last)
                        last = now
                        chunks += 1
                    if c.finish_reason:
                        finished = True
                if chunk.usage:
                    usage = chunk.usage
        except Exception as e:  # every failure counts, whatever its kind
            stats["errors"] += 1
            stats["error_samples"].append(f"{type(e).__name__}: {e}"[:200])
            continue
        if not finished:
            stats["lost"] += 1
            continue
        stats["requests"] += 1
        stats["tokens"] += usage.completion_tokens if usage else chunks


async def run(args, clients, prompts):
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key or "unused",
                                max_retries=0, timeout=600)
    sel = await selections(client)
    stats = {"requests": 0, "tokens": 0, "errors": 0, "lost": 0, "ttft": [], "itl": [],
             "error_samples": []}
    t0 = time.monotonic()
    deadline = t0 + args.duration
    rss = {}
    if args.server_pid:
        async def sample():
            await asyncio.sleep(min(60, args.duration / 2))
            rss["after_first_minute"] = rss_mib(args.server_pid)
        sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client_loop(i, client, args, prompts, sel, deadline, stats)
                           for i in range(clients)))
    wall = time.monotonic() - t0
    if args.server_pid:
        await sampler
        rss["end"] = rss_mib(args.server_pid)
    ms = lambda x: None if x is None else round(x * 1000, 2)
    return {
        "clients": clients, "duration_s": round(wall, 2), "requests": stats["requests"],
        "requests_per_s": round(stats["requests"] / wall, 3),
        "generated_tokens": stats["tokens"],
        "generated_tokens_per_s": round(stats["tokens"] / wall, 2),
        "ttft_ms_p50": ms(percentile(stats["ttft"], 50)), "ttft_ms_p99": ms(percentile(stats["ttft"], 99)),
        "itl_ms_p50": ms(percentile(stats["itl"], 50)), "itl_ms_p99": ms(percentile(stats["itl"], 99)),
        "errors": stats["errors"], "lost": stats["lost"], "error_samples": stats["error_samples"][:5],
        "server_rss_mib": rss or None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default=os.environ.get("DLP_API_KEY"))
    p.add_argument("--clients", default="16", help="concurrent clients; a list (1,8,32) runs each in turn")
    p.add_argument("--duration", type=float, default=60, help="seconds per client count")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--data", help="task folder (data/tasks): prompts from its dev splits")
    p.add_argument("--server-pid", type=int, help="sample this process's resident memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here")
    args = p.parse_args()
    prompts = load_prompts(args.data)
    runs = []
    print(f"{'clients':>7} {'req/s':>8} {'tok/s':>9} {'ttft p50':>9} {'ttft p99':>9} "
          f"{'itl p50':>8} {'itl p99':>8} {'errors':>6} {'lost':>5}")
    for n in [int(x) for x in args.clients.split(",")]:
        r = asyncio.run(run(args, n, prompts))
        runs.append(r)
        print(f"{n:>7} {r['requests_per_s']:>8} {r['generated_tokens_per_s']:>9} "
              f"{r['ttft_ms_p50']!s:>9} {r['ttft_ms_p99']!s:>9} {r['itl_ms_p50']!s:>8} "
              f"{r['itl_ms_p99']!s:>8} {r['errors']:>6} {r['lost']:>5}", flush=True)
        for e in r["error_samples"]:
            print("   error:", e, file=sys.stderr)
        if r["server_rss_mib"]:
            print(f"        server RSS MiB: {r['server_rss_mib']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs}, f, indent=2)
    sys.exit(1 if any(r["errors"] or r["lost"] for r in runs) else 0)


if __name__ == "__main__":
    main()
