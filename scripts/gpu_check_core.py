"""Shared by scripts/gpu_check.py and scripts/gpu_check_speed.py: the run's settings (from the
environment; gpu_check.py's docstring lists them), its state (the steps recorded, the processes
running, the stop flag) and the step runner, which keeps every step inside the budget, kills a
timed-out step's whole process group and records each step's status."""
import os
import shlex
import signal
import subprocess
import threading
import time

import gpu_check_report as report

T0 = time.monotonic()
G = ".gpu"  # what `prepare` packed, as it travels (binaries xz-compressed)
# What a run makes: binaries unpacked, PTX cache, models, logs (never carried).
R = os.environ.get("GPU_CHECK_RUN_DIR", ".gpu-run")
LOGS = os.path.join(R, "out")
OUT = os.environ.get("OUT") or LOGS
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", 560))
CHECKS_BUDGET = float(os.environ.get("CHECKS_BUDGET", 200))
TEST_CAP, BENCH_CAP, PROBE_CAP, PROFILE_CAP = 150, 150, 60, 90
PROBES_BUDGET = 180  # all the probes together, after the first figures
SHAPES = [s for s in os.environ.get("SHAPES", "7b 1b").split() if s != "none"]
MODES = (os.environ.get("MODES", "bf16c-fast-prefetch bf16c-fast bf16c-exp bf16c f32 bf16").split()
         or ["bf16c"])
# First modes whose paths are narrowed to those whose tests passed, and probed when they fail:
# every path on, the fastest set (--cuda-experimental fast), and that set with lora-prefetch,
# device-argmax, device-sampling and packed-upload.
EXP_FIRST = ("bf16c-exp", "bf16c-fast", "bf16c-fast-prefetch")
# The bench scenarios the profilers run (e.g. "batch32"; "none": no profile); default: nsys
# base,fused3, ncu base.
PROFILE_ONLY = os.environ.get("PROFILE_ONLY", "")
# Kernel tuning settings (DLP_CUDA_TUNE values, cuda/src/tune.rs; "default" for none), each
# benched on the first shape after the first figures: SWEEP="default matvec_unroll=8".
SWEEP = os.environ.get("SWEEP", "").split()
SWEEP_ARGS = ["--only", "base,fused3,batch32", "--new-tokens", "32", "--rounds", "2"]
# Tuning settings lora_bench runs again with, after its default run (seconds each; e.g.
# LORA_SWEEP="tiled_rows=1 tiled_rows=4"): the tiled LoRA pair's shape by measurement.
LORA_SWEEP = os.environ.get("LORA_SWEEP", "").split()
# PEERS=none: no transformers+PEFT timing (a short rerun, when the peers' figures are known).
PEERS = os.environ.get("PEERS") != "none"
WORK = os.path.abspath(os.environ.get("GPU_WORK", os.path.join(R, "models")))
BACKEND = os.environ.get("GPU_CHECK_BACKEND", "cuda")
JOBS = int(os.environ.get("GPU_CHECK_JOBS", min(6, max(1, (os.cpu_count() or 2) // 2))))
EXP_ALL = ["--cuda-bf16-compute", "--cuda-lora-bf16", "--cuda-kv-bf16", "--cuda-experimental", "all"]
MODE_FLAGS = {
    "f32": [],
    "bf16": ["--cuda-bf16-weights"],
    "bf16c": ["--cuda-bf16-compute"],
    "bf16c-exp": EXP_ALL,
}
# Every --cuda-experimental path (`cli/tests/cli.rs` lists the same), each with the paths it
# rides on; golden_cuda tests each alone in its module `experimental::<path, '_' for '-'>`.
PATHS = {"decode-matvec": [], "fused-lora": ["decode-matvec"], "wide-grids": [],
         "split-attention": [], "graphs": [], "sgmv": [], "fused-norm": [], "fused-rope": [],
         "fused-kv-store": [], "fused-shrink": ["decode-matvec", "fused-lora"],
         "dependent-launch": ["decode-matvec"], "batch-lora": [],
         "inline-shrink": ["decode-matvec", "fused-lora", "dependent-launch"],
         "tiled-lora": [], "inline-combine": ["split-attention"],
         "rope-in-attention": ["fused-kv-store"], "fused-silu": ["decode-matvec"],
         "norm-in-matvec": ["decode-matvec"], "kv-copy": [],
         "expand-launch": ["decode-matvec", "fused-lora"],
         "lora-prefetch": ["decode-matvec", "fused-lora", "expand-launch", "dependent-launch"],
         "device-argmax": [], "device-sampling": [], "packed-upload": []}
WITHOUT = "bf16c-exp-without-"
# The paths `--cuda-experimental fast` leaves out (cli/src/common.rs): three measured slower on
# the H200, and lora-prefetch, device-argmax, device-sampling and packed-upload, not yet run
# on a GPU.
# One line: cli/src/common.rs's test reads it.
LEFT_OUT_OF_FAST = {"fused-silu", "norm-in-matvec", "inline-shrink", "lora-prefetch", "device-argmax", "device-sampling", "packed-upload"}


def without_mode(name):
    """The flags of mode `bf16c-exp-without-<path>[+<path>...]`: bf16c-exp with those
    --cuda-experimental paths off, and the paths that ride on them (PATHS); None for a name of
    another form. MODES="bf16c-exp bf16c-exp-without-inline-combine" times a path's effect in one
    run. Raises ValueError naming a path that does not exist."""
    if not name.startswith(WITHOUT):
        return None
    drop = name[len(WITHOUT):].split("+")
    bad = [p for p in drop if p not in PATHS]
    if bad:
        raise ValueError(f"MODES: {name}: no path {', '.join(map(repr, bad))} "
                         f"(paths: {', '.join(PATHS)})")
    keep = [p for p in PATHS if p not in drop and not set(PATHS[p]) & set(drop)]
    return with_paths(EXP_ALL[:-2], keep)


def paths_in(flags):
    """The --cuda-experimental paths that `flags` turn on (`all`: every path of PATHS)."""
    if "--cuda-experimental" not in flags:
        return []
    named = flags[flags.index("--cuda-experimental") + 1].split(",")
    if "all" in named:
        return list(PATHS)
    if "fast" in named:
        return [p for p in PATHS if p not in LEFT_OUT_OF_FAST or p in named]
    return named


def with_paths(flags, paths):
    """`flags` with `--cuda-experimental paths`, or without it when `paths` is empty."""
    return flags + (["--cuda-experimental", ",".join(paths)] if paths else [])


# bf16c-exp without batch-lora (decode batches' LoRA on tiled-lora, sgmv in the last H200 run;
# the other paths as bf16c-exp), the name earlier runs used.
MODE_FLAGS["bf16c-exp-no-batch-lora"] = without_mode(WITHOUT + "batch-lora")
# --cuda-experimental fast (every path but the three measured slower on the H200 and
# those not yet run on a GPU: LEFT_OUT_OF_FAST), as the other flags of bf16c-exp.
MODE_FLAGS["bf16c-fast"] = EXP_ALL[:-1] + ["fast"]
# bf16c-fast with lora-prefetch, device-argmax, device-sampling and packed-upload (not yet run
# on a GPU, so not in fast): their effect against bf16c-fast; device-argmax and packed-upload
# move base decode (no LoRA for lora-prefetch), device-sampling only the sampled bench (greedy
# benches do not sample).
MODE_FLAGS["bf16c-fast-prefetch"] = EXP_ALL[:-1] + ["fast,lora-prefetch,device-argmax,device-sampling,packed-upload"]
# bf16c-exp with the LoRA stacks in f32 (no --cuda-lora-bf16): that flag's effect alone.
MODE_FLAGS["bf16c-exp-lora-f32"] = [f for f in EXP_ALL if f != "--cuda-lora-bf16"]
for _mode in MODES:
    try:
        _flags = without_mode(_mode)
    except ValueError:
        continue  # gpu_check.py reports it, inside the run
    if _flags is not None:
        MODE_FLAGS[_mode] = _flags
# The unverified pieces of bf16c-exp, each tried alone on top of bf16c when bf16c-exp fails.
PIECES = [
    ("lora-bf16", ["--cuda-lora-bf16"]),
    ("kv-bf16", ["--cuda-kv-bf16"]),
] + [("-and-".join(PATHS[p] + [p]), ["--cuda-experimental", ",".join(PATHS[p] + [p])])
     for p in PATHS]
# Model sizes, for making the small ones first.
SIZE = {"tiny": 0, "small": 1, "1b": 2, "7b": 3, "8b": 4}
# The benches' scenarios; BENCH_ARGS replaces them (e.g. "--only base,single,fused3
# --new-tokens 32 --rounds 2" for a run of many modes that times the LoRA paths alone).
FULL = (shlex.split(os.environ["BENCH_ARGS"]) if os.environ.get("BENCH_ARGS") else
        ["--only", "base,single,fused3,batch32", "--new-tokens", "64", "--rounds", "3"])
SHORT = ["--only", "base,fused3,batch32", "--new-tokens", "8", "--rounds", "1"]

runs = []  # report.Run records, in the order they finished
live = set()  # the processes running now (killed when the run is stopped)
lock = threading.RLock()
RUST_ENV = dict(os.environ)  # the Rust binaries' environment (CUDA libraries, strict checks)


class Stop(BaseException):
    """SIGTERM (the device call's own timeout): end the run, but write what it has. Not an
    `Exception`, so that no step's own error handling can swallow it."""


stopping = threading.Event()  # set once the run is being stopped: start nothing more


def left():
    return BUDGET - (time.monotonic() - T0)


def say(msg):
    print(f"[{time.monotonic() - T0:4.0f} s] {msg}", flush=True)


def record(stage, name, status, secs=0.0, log=None):
    with lock:
        runs.append(report.Run(stage, name, status, secs, log))
    say(f"{stage} {name}: {status} ({secs:.1f} s)")
    return status


def run(stage, name, cmd, log, cap, env=None, test=False):
    """Runs `cmd` with stdout and stderr to `log`, under min(cap, budget left); records and
    returns its status: pass, FAIL (...), TIMEOUT (N s) or `not run (budget)`. With `test`
    (one libtest test), a pass must say `1 passed`, and one whose log records a skip
    (`SKIPPED [kind]`, tests/skip) is `skipped [kind]`."""
    limit = min(cap, left() - 5)
    t = time.monotonic()
    if stopping.is_set():
        return record(stage, name, "not run (stopped)")
    if limit < 10:
        return record(stage, name, "not run (budget)")
    try:
        with open(log, "w") as f:
            with lock:
                if stopping.is_set():
                    return record(stage, name, "not run (stopped)")
                # Its own process group: a timeout kills what it started too (nsys's child, a
                # wrapper's), so nothing keeps running on the GPU beside the next step.
                p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
                live.add(p)
            try:
                rc = p.wait(timeout=limit)
                status = "pass" if rc == 0 else f"FAIL (rc {rc})"
            except (subprocess.TimeoutExpired, Stop) as e:
                kill_group(p)
                if isinstance(e, Stop):
                    raise
                status = f"TIMEOUT ({limit:.0f} s)"
            finally:
                with lock:
                    live.discard(p)
        if stopping.is_set() and status != "pass":
            status = "STOPPED (killed when the run was stopped)"
        if test and status == "pass":
            text = open(log, errors="replace").read()
            if " 1 passed;" not in text:
                status = "FAIL (no test ran)"
            elif "SKIPPED [" in text:
                i = text.index("SKIPPED [") + 8
                status = "skipped " + text[i:text.index("]", i) + 1]
    except Stop:
        record(stage, name, "STOPPED (device call timeout)", time.monotonic() - t, log)
        raise
    except Exception as e:  # an unreadable log, a missing binary: this step's failure only
        status = f"FAIL ({type(e).__name__}: {e})"
    return record(stage, name, status, time.monotonic() - t, log)


def kill_group(p):
    """SIGKILL to `p`'s process group (what it started dies with it), then up to 10 s for it to
    go (a process stuck in the driver may not: kill_live tries again at the end)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def kill_live():
    """Kills every process still running (the tests in the pool's threads, a make)."""
    with lock:
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
