"""The real-shape golden stage of scripts/gpu_check.py: `dlp-run score` on a random model of a
real shape (the speed stage's 1B one: hidden 2048, 16 layers, GQA 32/8, vocabulary 49152) with
a mixture of three of its PEFT adapters, against transformers + PEFT in float64 on the same
machine (scripts/real_shape_reference.py). The shared fixtures are tiny or SmolLM2 (too large
to carry to the GPU machine), so this is where the CUDA kernels' real widths (several blocks
per row, fused q/k/v and gate/up, the wide lm_head) meet an implementation nobody on this
project wrote, in prefill and in decode through the KV cache.

Judged: the f32 mode (the parity reference), by the fixtures' rule: every logit within 2e-3 of
float64 and the greedy token equal wherever the reference's top-1/top-2 margin exceeds 1e-2
(measured on the CPU backend at this shape: 3.7e-5). Measured and reported, not judged: the
first mode of MODES (bf16c-fast-prefetch by default), whose bound is stated for the fixtures only (its
rounding's effect grows with the model); logits that are not finite fail in any mode.

GOLDEN_SHAPE: the shape to check (default: the smallest of SHAPES if it is 1B or smaller, else
none; "none" skips the stage).
GOLDEN_REFERENCE: another reference command, given real_shape_reference.py's arguments
(scripts/gpu_check_selftest.py's stand-in, on a machine without torch).
"""
import array
import heapq
import json
import math
import os
import random
import shlex
import struct
import sys

from gpu_check_core import (BACKEND, LOGS, MODE_FLAGS, MODES, RUST_ENV, SHAPES, SIZE, WORK,
                            record, run, say)

TOL, MARGIN = 2e-3, 1e-2  # ../shared/fixtures/README.md: f32 against the float64 oracle
MIX = "a0=0.5,a1=0.3,a2=0.2"
LEN = 48  # positions scored (prefill), and decoded one by one


def golden_shape():
    """The shape the stage checks: GOLDEN_SHAPE, else the smallest of SHAPES if it is 1B or
    smaller (a float64 7B reference would take minutes of the budget); or None."""
    want = os.environ.get("GOLDEN_SHAPE", "")
    if want == "none" or not SHAPES:
        return None
    smallest = min(SHAPES, key=lambda s: SIZE.get(s, 9))
    return want or (smallest if SIZE.get(smallest, 9) <= SIZE["1b"] else None)


def token_ids(model_dir):
    """LEN fixed pseudo-random ids of the model's vocabulary (random weights: any text is
    noise; ids below 3 are left to special tokens)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    r = random.Random(2410)
    return ",".join(str(r.randrange(3, vocab)) for _ in range(LEN))


def read_logits(path):
    """Tensor `logits` ([rows, cols], F32 or F64) of a safetensors file: (rows, cols, values),
    read without numpy (the selftest's Python may lack it)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        t = json.loads(f.read(n))["logits"]
        start, end = t["data_offsets"]
        f.seek(8 + n + start)
        raw = f.read(end - start)
    values = array.array({"F32": "f", "F64": "d"}[t["dtype"]])
    values.frombytes(raw)  # safetensors is little-endian, as are the machines this runs on
    rows, cols = t["shape"]
    if len(values) != rows * cols:
        raise ValueError(f"{path}: {len(values)} values for shape {t['shape']}")
    return rows, cols, values


def compare(ref_path, got_path):
    """(max |got - ref| over every logit, inf where one is not finite; positions whose greedy
    token differs where the reference's top-1/top-2 margin exceeds MARGIN; positions)."""
    rows, cols, ref = read_logits(ref_path)
    got_rows, got_cols, got = read_logits(got_path)
    if (got_rows, got_cols) != (rows, cols):
        raise ValueError(f"logits of shape {[got_rows, got_cols]}, the reference's {[rows, cols]}")
    if not all(map(math.isfinite, ref)):
        raise ValueError(f"{ref_path}: the reference has logits that are not finite")
    worst, differ = 0.0, 0
    for r in range(rows):
        a, b = ref[r * cols:(r + 1) * cols], got[r * cols:(r + 1) * cols]
        if not all(map(math.isfinite, b)):
            worst = float("inf")
        else:
            worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
        top1, top2 = heapq.nlargest(2, a)
        if top1 - top2 > MARGIN and max(range(cols), key=b.__getitem__) != a.index(top1):
            differ += 1
    return worst, differ, rows


def golden(bins, maker):
    """The stage: the reference once, then each mode's prefill and decode against it."""
    shape = golden_shape()
    if shape is None:
        return
    if shape not in SHAPES:
        record("golden", shape, f"not run (GOLDEN_SHAPE {shape} is not one of SHAPES, whose "
                                "models the run makes)")
        return
    if not maker.ready(shape):
        record("golden", shape, "not run (no model)")
        return
    d = os.path.join(WORK, shape)
    model = os.path.join(d, "model")
    names = [n.split("=")[0] for n in MIX.split(",")]
    adapters = [f"{n}={d}/adapters/{n}" for n in names]
    ids = token_ids(model)
    ref = os.path.join(LOGS, f"golden-{shape}-reference.safetensors")
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = shlex.split(os.environ.get("GOLDEN_REFERENCE", "")) or [
        sys.executable, os.path.join(here, "real_shape_reference.py")]
    cmd += ["--model", model, "--mix", MIX, "--ids", ids, "--out", ref]
    cmd += [x for a in adapters for x in ("--adapter", a)]
    name = f"{shape} reference (transformers+PEFT, float64)"
    if run("golden", name, cmd, os.path.join(LOGS, f"golden-{shape}-reference.log"), 150) != "pass":
        return
    # The CPU backend (GPU_CHECK_BACKEND=cpu) takes no --cuda-* flag: f32 only.
    modes = ["f32"] + ([MODES[0]] if BACKEND == "cuda" and MODES[0] != "f32" else [])
    for mode in modes:
        for how in ("prefill", "decode"):
            label = f"{shape} {mode} {how}"
            out = os.path.join(LOGS, f"golden-{shape}-{mode}-{how}.safetensors")
            cmd = [bins["dlp-run"], "score", "--backend", BACKEND, "--model", model, "--mix",
                   MIX, "--ids", ids, "--out", out, "--mode", how] + MODE_FLAGS[mode]
            cmd += [x for a in adapters for x in ("--adapter", a)]
            log = os.path.join(LOGS, f"golden-{shape}-{mode}-{how}.log")
            if run("golden", label + " (score)", cmd, log, 120, env=RUST_ENV) != "pass":
                continue
            try:
                worst, differ, n = compare(ref, out)
            except Exception as e:
                record("golden", label, f"FAIL (compare: {type(e).__name__}: {e})")
                continue
            figures = (f"max |logit - float64| {worst:.2e}, greedy differs at {differ} of {n} "
                       f"positions with margin > {MARGIN:g}")
            if worst == float("inf"):
                record("golden", label, f"FAIL ({figures}: logits that are not finite)")
            elif mode != "f32":
                record("golden", label, f"measured ({figures}; not judged: no stated bound "
                                        f"at this shape)")
            elif worst <= TOL and differ == 0:
                record("golden", label, f"pass ({figures}; bound {TOL:g})")
            else:
                record("golden", label, f"FAIL ({figures}; bound {TOL:g})")
    say(f"golden: {shape} done")
