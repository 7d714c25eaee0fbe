#!/usr/bin/env python3
"""Load generator for `dlp-run serve` (or any OpenAI-compatible server).

N concurrent clients stream chat completions for a bounded time, each request with its own
model or adapter mixture (the base model, each adapter, `auto` when the server has a router,
and two-adapter `lora_mixture`s), and report requests/s, generated tokens/s, time to first
token and inter-token latency (p50/p99), errors and lost responses (a stream that ended
without a finish_reason). With --server-pid, the server's resident memory is sampled after
the first minute (halfway through a shorter run; `early_at_s` says when) and at the end.

  bench/serve_load.py --base-url http://127.0.0.1:8000/v1 --clients 1,8,32 --duration 60

Python 3.8+ standard library only (a small HTTP client of its own, so that it takes little CPU
from the server it measures).
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import urllib.parse

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


class Http:
    """A minimal HTTP/1.1 client on asyncio streams: light enough that on a small machine the
    load generator takes little CPU from the server it measures (the `openai` package parses
    every chunk into typed objects; tests/serve/openai_client.py checks that client)."""

    def __init__(self, base_url, api_key):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme != "http":
            raise SystemExit(f"--base-url {base_url}: only http:// is supported")
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.key = api_key

    async def request(self, method, path, body=None):
        """Opens a connection and sends a request; returns (status, reader, writer)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}",
                "Connection: close", "Content-Type: application/json",
                f"Content-Length: {len(data)}"]
        if self.key:
            head.append(f"Authorization: Bearer {self.key}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            if k.lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        return status, _body(reader, chunked), writer

    async def get_json(self, path):
        status, body, writer = await self.request("GET", path)
        data = b"".join([c async for c in body])
        writer.close()
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
        return json.loads(data)


async def _body(reader, chunked):
    if not chunked:
        yield await reader.read()
        return
    while True:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            return
        yield await reader.readexactly(size)
        await reader.readline()


async def selections(http):
    models = [m["id"] for m in (await http.get_json("/models"))["data"]]
    base = models[0]
    adapters = [m for m in models[1:] if m != "auto"]
    sel = [{"model": m} for m in models]
    for a, b in zip(adapters, adapters[1:] + adapters[:1]):
        if a != b:
            sel.append({"model": base, "lora_mixture": {a: 0.6, b: 0.4}})
    return sel


async def client_loop(i, http, args, prompts, sel, deadline, stats, clients):
    rng = random.Random(args.seed * 1000 + i)
    # Clients start spread over the ramp, as real traffic arrives: started together, requests
    # of one length would run in lockstep, prefilling and finishing in waves.
    await asyncio.sleep(args.ramp * i / clients)
    while time.monotonic() < deadline:
        body = dict(rng.choice(sel))
        body.update({"messages": [{"role": "user", "content": rng.choice(prompts)}],
                     "max_tokens": args.max_tokens, "temperature": args.temperature,
                     "stream": True, "stream_options": {"include_usage": True}})
        if args.ignore_eos:
            body["ignore_eos"] = True
        t0 = time.monotonic()
        first, last, chunks, finished, done, usage = None, None, 0, False, False, None
        writer = None
        try:
            status, stream, writer = await http.request("POST", "/chat/completions", body)
            buf = b""
            async for data in stream:
                buf += data
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if not event.startswith(b"data: "):
                        continue  # keep-alive comments
                    payload = event[6:]
                    if payload == b"[DONE]":
                        done = True
                        continue
                    v = json.loads(payload)
                    if status != 200 or "error" in v:
                        raise RuntimeError(f"{status}: {payload[:200]!r}")
                    now = time.monotonic()
                    for c in v.get("choices", []):
                        if c["delta"].get("content"):
                            if first is None:
                                first = now
                                stats["ttft"].append(now - t0)
                            else:
                                stats["itl"].append(now - last)
                            last = now
                            chunks += 1
                        if c.get("finish_reason"):
                            finished = True
                    if v.get("usage"):
                        usage = v["usage"]
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {buf[:200]!r}")
        except Exception as e:  # every failure counts, whatever its kind
            stats["errors"] += 1
            stats["error_samples"].append(f"{type(e).__name__}: {e}"[:200])
            continue
        finally:
            if writer is not None:
                writer.close()
        if not (finished and done):
            stats["lost"] += 1
            continue
        stats["requests"] += 1
        stats["tokens"] += usage["completion_tokens"] if usage else chunks


async def run(args, clients, prompts):
    http = Http(args.base_url, args.api_key)
    sel = await selections(http)
    stats = {"requests": 0, "tokens": 0, "errors": 0, "lost": 0, "ttft": [], "itl": [],
             "error_samples": []}
    t0 = time.monotonic()
    deadline = t0 + args.duration
    rss = {}
    if args.server_pid:
        async def sample():
            # After the first minute, or halfway through a shorter run (the time is recorded).
            at = min(60, args.duration / 2)
            await asyncio.sleep(at)
            rss["early_at_s"] = round(at, 1)
            rss["early"] = rss_mib(args.server_pid)
        sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client_loop(i, http, args, prompts, sel, deadline, stats, clients)
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
    p.add_argument("--ignore-eos", action="store_true",
                   help="generate exactly --max-tokens per request (the server's ignore_eos extension)")
    p.add_argument("--data", help="task folder (data/tasks): prompts from its dev splits")
    p.add_argument("--server-pid", type=int, help="sample this process's resident memory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ramp", type=float, default=5.0,
                   help="seconds over which the clients start (counted in --duration)")
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
