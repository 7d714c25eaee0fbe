#!/usr/bin/env python3
"""The speed table of scripts/gpu-check.sh: dlp-run bench JSONs (bench-<shape>-<mode>.json; modes f32, bf16 (weights), bf16c
(bf16 compute), bf16c-exp (bf16 compute, --cuda-lora-bf16, --cuda-kv-bf16, --cuda-experimental all), bf16c-safe (bf16c with
the pieces of bf16c-exp that passed alone, when bf16c-exp failed), ctx4k-<mode> (~3,900 prompt tokens, in that mode),
sampled-<mode> (temperature 1, top-p 0.9: batch 32's pick ms is the host's sampling time a decode step); base host ms is
the host's other work a batch-1 decode step (scheduling, the plan, callbacks: time the GPU waits)) and
transformers+PEFT JSONs (peer-<shape>.json, from ../shared/gpu/peer_gpu.py) in one folder,
against the CUDA speed issue's goals. Usage: gpu_speed_table.py DIR"""
import glob, json, os, sys

d = sys.argv[1]


def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def scen(b, name, key="decode_tokens_per_s"):
    for s in b.get("scenarios", []):
        if s["name"] == name:
            return s.get(key)
    return None


def f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


rows = []
for p in sorted(glob.glob(os.path.join(d, "bench-*.json"))):
    shape, mode = os.path.basename(p)[6:-5].split("-", 1)
    b = load(p)
    if "error" in b:
        rows.append(f"| {shape} | {mode} | {b['error'][:60]} |" + " |" * 11)
        continue
    peer = load(os.path.join(d, f"peer-{shape}.json"))
    base, fused3 = scen(b, "base"), scen(b, "fused3")
    mem = b.get("memory") or {}
    copy = mem.get("device_copy_gbs")
    share = None
    if copy and scen(b, "base", "decode_gbs"):
        share = 100 * scen(b, "base", "decode_gbs") / copy
    pb = (peer.get("base") or {}).get("decode_tok_s") if isinstance(peer.get("base"), dict) else None
    pf = (peer.get("fused3") or {}).get("decode_tok_s") if isinstance(peer.get("fused3"), dict) else None
    if mode.startswith("ctx4k"):
        pb = pf = None  # the peer decodes after a short prompt: no like-for-like ratio
    rows.append(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            shape, mode, b.get("prompt_tokens", "-"), f(base), f((b.get("ratios") or {}).get("fused3_over_base"), "{:.2f}"),
            f(scen(b, "base", "prefill_tokens_per_s"), "{:.0f}"), f(scen(b, "batch32"), "{:.0f}"),
            f(scen(b, "batch32", "decode_pick_ms_per_step"), "{:.2f}"),
            f(scen(b, "base", "decode_host_ms_per_step"), "{:.3f}"),
            f(copy, "{:.0f}"), f(share, "{:.0f}%"),
            f(pb), f(base / pb if base and pb else None, "{:.1f}x"),
            f(fused3 / pf if fused3 and pf else None, "{:.1f}x")))
print("| shape | mode | prompt tokens | base decode t/s | fused3/base (step time) | prefill t/s | batch32 t/s | batch32 pick ms | base host ms | copy GB/s | base: % of copy | peer base t/s | vs peer base | fused3 vs peer fused3 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows) if rows else "| (no bench results) |")
print("goals (7B, bf16): base >= 220 t/s (70% of the bound), fused3/base <= 1.05, prefill >= 8000, "
      "batch32 >= 3000, >= 5x peer base, >= 15x peer fused3; 1B: base >= 60% of its bound")
