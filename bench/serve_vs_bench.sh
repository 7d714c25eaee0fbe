#!/usr/bin/env bash
# Serving throughput against `dlp-run bench`'s batch figures, in one run: starts `dlp-run serve`
# with the given model/adapter flags, drives it with bench/serve_load.py at 1, 8 and 32
# clients (every request its own model/mixture, NEW_TOKENS generated, EOS ignored), stops it,
# then runs `dlp-run bench --only base,batch32` with the same flags and token count, and
# prints served tokens/s next to bench's decode tokens/s.
#
#   bench/serve_vs_bench.sh --model M.gguf --adapter a=DIR ... [--router DIR]
# Environment: DLP_RUN (binary, default target/release/dlp-run), CLIENTS (1,8,32),
# DURATION (60 s per client count), NEW_TOKENS (64), PORT (8199).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${DLP_RUN:-target/release/dlp-run}
clients=${CLIENTS:-1,8,32} duration=${DURATION:-60} tokens=${NEW_TOKENS:-64} port=${PORT:-8199}
out=$(mktemp -d)
# The router flag is a serve flag only; bench takes it too.
"$run" serve "$@" --port "$port" 2>"$out/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 300); do grep -q "listening on" "$out/serve.log" 2>/dev/null && break; sleep 0.2; done
python3 bench/serve_load.py --base-url "http://127.0.0.1:$port/v1" --clients "$clients" \
  --duration "$duration" --max-tokens "$tokens" --ignore-eos --server-pid $pid --json "$out/load.json"
kill -TERM $pid; wait $pid || true
"$run" bench "$@" --only base,batch32 --rounds 3 --new-tokens "$tokens" --json "$out/bench.json" >/dev/null
python3 - "$out/load.json" "$out/bench.json" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))["runs"]
bench = {s["name"]: s for s in json.load(open(sys.argv[2]))["scenarios"]}
b1, b32 = bench["base"]["decode_tokens_per_s"], bench["batch32"]["decode_tokens_per_s"]
print(f"\nbench: base (batch 1) decode {b1:.1f} tok/s, batch32 (32 mixtures) decode {b32:.1f} tok/s")
print(f"{'clients':>7} {'served tok/s':>12} {'vs bench batch32':>16} {'ttft p50 ms':>11} {'itl p50 ms':>10} {'errors':>6} {'lost':>4}")
for r in load:
    print(f"{r['clients']:>7} {r['generated_tokens_per_s']:>12.1f} {r['generated_tokens_per_s'] / b32:>16.2f} "
          f"{r['ttft_ms_p50']!s:>11} {r['itl_ms_p50']!s:>10} {r['errors']:>6} {r['lost']:>4}")
PY
