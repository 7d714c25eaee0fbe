#!/usr/bin/env python3
"""The run stage of scripts/gpu-check.sh: the CUDA speed issue's one prepared GPU run, made to
fit one device call and to say as much as it can even when a path written without a GPU breaks.

  scripts/gpu_check.py            # on the GPU machine, from the repository root, with .gpu/

Why it is shaped this way:
- Every CUDA test runs in its own process (`--exact`), several at once, each under a timeout:
  a kernel fault poisons the CUDA context of its whole process, and a hang would eat the call,
  so one broken path must not fail or stall the tests of the others.
- The random models of the speed stage are made in the background while the tests run (they
  need the GPU for seconds and the disk for the rest), never while a benchmark is timed.
- The whole run keeps to a budget (GPU_CHECK_BUDGET seconds, default 560, under the device
  tool's 600 s per call): the tests get at most CHECKS_BUDGET (default 200) of it, then the
  benchmarks run by priority (each shape's first mode and its transformers+PEFT peer first, then
  the other modes) and what no longer fits is reported as not run.
- Where `nsys` is installed, one short decode run on the first shape is profiled kernel by
  kernel (Nsight Systems' GPU kernel summary), to show where a decode step's time goes.
- When the first mode (every unverified path on) fails on a shape, each path is tried alone in
  a short bench, and the mode is run again with the paths that passed (`bf16c-safe`).
- Every figure and log lands in $OUT (default .gpu-run/out); summary.md there holds the tables
  printed at the end. What a run makes stays out of .gpu, so that .gpu can travel again.

Environment: SHAPES (default "7b 1b"; "none" skips the speed stage), MODES (default
"bf16c-exp bf16c f32 bf16"), GPU_WORK (where models are made, default .gpu-run/models),
GPU_CHECK_JOBS (test processes at once), CHECKS=none (skip the tests), GPU_CHECK_BACKEND (the
bench's --backend, default cuda; `cpu` exercises this script on a machine without a GPU).
"""
import concurrent.futures as cf
import glob
import lzma
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

T0 = time.monotonic()
G = ".gpu"  # what `prepare` packed, as it travels (binaries xz-compressed)
R = ".gpu-run"  # what a run makes: binaries unpacked, PTX cache, models, logs (never carried)
OUT = os.environ.get("OUT") or os.path.join(R, "out")
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", 560))
CHECKS_BUDGET = float(os.environ.get("CHECKS_BUDGET", 200))
TEST_CAP = 150
BENCH_CAP = 150
PROBE_CAP = 60
SHAPES = [s for s in os.environ.get("SHAPES", "7b 1b").split() if s != "none"]
MODES = os.environ.get("MODES", "bf16c-exp bf16c f32 bf16").split()
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
# The unverified pieces of bf16c-exp, each tried alone on top of bf16c when bf16c-exp fails
# (fused-lora rides on decode-matvec).
PIECES = [
    ("lora-bf16", ["--cuda-lora-bf16"]),
    ("kv-bf16", ["--cuda-kv-bf16"]),
] + [(p, ["--cuda-experimental", p]) for p in (
    "decode-matvec", "decode-matvec,fused-lora", "wide-grids", "split-attention", "graphs",
    "sgmv", "fused-norm", "fused-rope")]

runs = []  # (stage, name, status, seconds), in the order they finished
lock = threading.Lock()


def left():
    return BUDGET - (time.monotonic() - T0)


def say(msg):
    print(f"[{time.monotonic() - T0:4.0f} s] {msg}", flush=True)


def run(stage, name, cmd, log, cap, skips=False):
    """Runs `cmd` with stdout and stderr to `log`, under min(cap, budget left); records and
    returns its status: pass, FAIL (rc N), TIMEOUT (N s) or `not run (budget)`; with `skips`, a
    pass whose log records a skip (`SKIPPED [kind]`, see tests/skip) is `skipped [kind]`."""
    limit = min(cap, left() - 5)
    t = time.monotonic()
    if limit < 10:
        status = "not run (budget)"
    else:
        with open(log, "w") as f:
            try:
                # Its own process group: a timeout kills what it started too (nsys's child, a
                # wrapper's), so nothing keeps running on the GPU beside the next step.
                p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    rc = p.wait(timeout=limit)
                    status = "pass" if rc == 0 else f"FAIL (rc {rc})"
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    status = f"TIMEOUT ({limit:.0f} s)"
            except OSError as e:
                status = f"FAIL ({e})"
        if skips and status == "pass":
            for line in open(log, errors="replace"):
                if line.startswith("SKIPPED ["):
                    status = "skipped " + line[8:line.index("]") + 1]
                    break
    secs = time.monotonic() - t
    with lock:
        runs.append((stage, name, status, secs))
    say(f"{stage} {name}: {status} ({secs:.1f} s)")
    return status


def setup_env():
    """CUDA libraries (the toolkit, the driver mount, the image's pip wheels), the checks' strict
    mode, and a fresh PTX cache shared by the test processes (the first compiles, the rest read)."""
    libs = ["/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"]
    try:
        import site
        for s in site.getsitepackages():
            libs += sorted(glob.glob(s + "/nvidia/*/lib")) + sorted(glob.glob(s + "/nvidia/cu*/lib"))
    except Exception:
        pass
    old = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = ":".join(libs + ([old] if old else []))
    cache = os.path.abspath(os.path.join(R, "ptx-cache"))
    shutil.rmtree(cache, ignore_errors=True)
    os.environ.update(DLP_REQUIRE_CUDA="1", DLP_REQUIRE_NVRTC="1", DLP_CUDA_CACHE=cache,
                      DLP_FIXTURES=os.path.abspath(os.path.join(G, "fixtures")))


def binaries():
    """The prepared binaries, unpacked into .gpu-run/bin; `prepare` runs first when they are
    missing and cargo is here."""
    if not glob.glob(os.path.join(G, "bin", "*.xz")) and shutil.which("cargo"):
        subprocess.run(["scripts/gpu-check.sh", "prepare"], check=True)
    bindir = os.path.join(R, "bin")
    os.makedirs(bindir, exist_ok=True)
    for z in glob.glob(os.path.join(G, "bin", "*.xz")):
        exe = os.path.join(bindir, os.path.basename(z)[:-3])
        if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(z):
            continue
        with lzma.open(z) as src, open(exe, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(exe, 0o755)
    need = ["dlp-run", "nvrtc_compile", "op_parity_cuda", "golden_cuda", "lora_bench"]
    missing = [b for b in need if not os.path.exists(os.path.join(bindir, b))]
    if missing:
        sys.exit(f"{G}/bin lacks {', '.join(missing)}: run 'scripts/gpu-check.sh prepare' "
                 f"where cargo is, and carry {G}")
    return {b: os.path.abspath(os.path.join(bindir, b)) for b in need}


def list_tests(exe):
    """The test names of a libtest binary (`--list --format terse`: `name: test`)."""
    r = subprocess.run([exe, "--list", "--format", "terse"], capture_output=True, text=True)
    return [line[:-6] for line in r.stdout.splitlines() if line.endswith(": test")]


def checks(bins):
    """The NVRTC check, then every op-parity and fixture test in its own process."""
    tdir = os.path.join(OUT, "tests")
    os.makedirs(tdir, exist_ok=True)
    run("checks", "nvrtc_compile", [bins["nvrtc_compile"], "--nocapture"],
        os.path.join(tdir, "nvrtc_compile.log"), TEST_CAP)
    # The fixture tests build many backends each: longest first.
    todo = [(b, t) for b in ("golden_cuda", "op_parity_cuda") for t in list_tests(bins[b])]
    say(f"checks: {len(todo)} tests, {JOBS} at a time")
    stop = T0 + min(CHECKS_BUDGET, BUDGET)

    def one(bt):
        b, t = bt
        cap = min(TEST_CAP, stop - time.monotonic())
        return run("checks", f"{b} {t}", [bins[b], "--exact", t, "--nocapture"],
                   os.path.join(tdir, f"{b}.{t.replace('::', '.')}.log"), cap, skips=True)

    with cf.ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(one, todo))


class Maker(threading.Thread):
    """Makes the random models of SHAPES (../shared/gpu/make_model.py) one after another."""

    def __init__(self):
        super().__init__(daemon=True)
        self.made = {}

    def run(self):
        for shape in SHAPES:
            d = os.path.join(WORK, shape)
            if os.path.isdir(os.path.join(d, "adapters", "a7")):
                self.made[shape] = True
                continue
            cmd = [sys.executable, os.path.join(G, "gpu", "make_model.py"), "--out", d, "--shape",
                   shape, "--adapters", "8", "--rank", "8", "--tokenizer", os.path.join(G, "tokenizer")]
            st = run("make", shape, cmd, os.path.join(OUT, f"make-{shape}.log"), BUDGET)
            self.made[shape] = st == "pass"


def bench(bins, shape, mode, flags, extra=(), cap=BENCH_CAP, stage="speed"):
    d = os.path.join(WORK, shape)
    cmd = [bins["dlp-run"], "bench", "--backend", BACKEND, "--model", os.path.join(d, "model")]
    for i in range(8):
        cmd += ["--adapter", f"a{i}={d}/adapters/a{i}"]
    cmd += list(flags) + list(extra)
    if stage == "speed":
        cmd += ["--json", os.path.join(OUT, f"bench-{shape}-{mode}.json")]
    log = os.path.join(OUT, f"bench-{shape}-{mode.replace(',', '+')}.log")
    return run(stage, f"{shape} {mode}", cmd, log, cap)


FULL = ["--only", "base,single,fused3,batch32", "--new-tokens", "64", "--rounds", "3"]
SHORT = ["--only", "base,fused3,batch32", "--new-tokens", "8", "--rounds", "1"]


def profile(bins, shape, flags):
    """Nsight Systems' per-kernel summary of a short decode run (base and fused3) in `flags`'
    mode, when `nsys` is here: the report stays in GPU_WORK (large), its tables go to
    nsys-<shape>.log and the summary."""
    nsys = shutil.which("nsys") or next(iter(glob.glob("/usr/local/cuda*/bin/nsys")), None)
    if not nsys:
        with lock:
            runs.append(("profile", shape, "not run (no nsys)", 0.0))
        return
    d = os.path.join(WORK, shape)
    cmd = [nsys, "profile", "--stats=true", "--force-overwrite=true", "--trace=cuda",
           "--cuda-graph-trace=node", "-o", os.path.join(WORK, f"prof-{shape}"),
           bins["dlp-run"], "bench", "--backend", BACKEND, "--model", os.path.join(d, "model")]
    cmd += [f"--adapter=a{i}={d}/adapters/a{i}" for i in range(8)]
    cmd += list(flags) + ["--only", "base,fused3", "--new-tokens", "32", "--rounds", "1"]
    run("profile", shape, cmd, os.path.join(OUT, f"nsys-{shape}.log"), 120)


def kernel_table(log, rows=20):
    """The first `rows` rows of the per-kernel GPU time table in an nsys stats log."""
    try:
        text = open(log, errors="replace").read().splitlines()
    except OSError:
        return []
    for i, line in enumerate(text):
        if "cuda_gpu_kern_sum" in line:
            return text[i:i + rows + 4]
    return []


def safe_flags(bins, shape):
    """Each piece of bf16c-exp alone on top of bf16c, in a short bench on `shape`: the flags of
    the pieces that pass, or None when none does."""
    ok, paths = [], []
    for name, flags in PIECES:
        if bench(bins, shape, f"probe-{name}", MODE_FLAGS["bf16c"] + flags, SHORT, PROBE_CAP,
                 "probe") == "pass":
            if flags[0] == "--cuda-experimental":
                paths.append(flags[1])
            else:
                ok += flags
    if not ok and not paths:
        return None
    if paths:
        ok += ["--cuda-experimental", ",".join(dict.fromkeys(",".join(paths).split(",")))]
    return MODE_FLAGS["bf16c"] + ok


def speed(bins, maker):
    """The benchmarks by priority: each shape's first mode and its peer, the 1B shape at ~4,000
    tokens of context, then the other modes shape by shape."""
    if maker.is_alive():
        say("speed: waiting for the models")
    maker.join(max(0.0, left() - 60))
    # Alone on the GPU now (or the maker hangs: then it runs beside it, as the log says).
    run("bench", "lora_bench", [bins["lora_bench"]], os.path.join(OUT, "lora_bench.log"), 90)
    if maker.is_alive():
        say("speed: the models are still being made; stage not run")
        return
    first, rest = MODES[0], MODES[1:]
    safe = {}  # flags that replace bf16c-exp once a probe found its broken pieces
    plan = [item for s in SHAPES for item in [(s, first), (s, "peer")] + ([(s, "ctx4k")] if s == "1b" else [])]
    # Where a decode step's time goes, kernel by kernel, on the largest shape.
    plan += [(SHAPES[0], "profile")] if SHAPES else []
    plan += [(s, m) for m in rest for s in SHAPES]
    for shape, mode in plan:
        if not maker.made.get(shape):
            with lock:
                runs.append(("speed", f"{shape} {mode}", "not run (no model)", 0.0))
            continue
        d = os.path.join(WORK, shape)
        if mode == "peer":
            paths = ",".join(f"{d}/adapters/a{i}" for i in range(8))
            cmd = [sys.executable, os.path.join(G, "gpu", "peer_gpu.py"), "--model", f"{d}/model",
                   "--adapters", paths, "--dtype", "bf16", "--json", os.path.join(OUT, f"peer-{shape}.json")]
            run("speed", f"{shape} peer", cmd, os.path.join(OUT, f"peer-{shape}.log"), BENCH_CAP)
            continue
        if mode == "ctx4k":
            # ~3,900 prompt tokens (7 per sentence with this tokenizer), in the first mode.
            flags = safe.get("flags", MODE_FLAGS.get(first, EXP_ALL))
            long = "The cat sat on the mat. " * 560
            bench(bins, shape, mode, flags, ["--only", "base,fused3", "--new-tokens", "64",
                                             "--rounds", "2", "--prompt", long])
            continue
        if mode == "profile":
            profile(bins, shape, safe.get("flags") or MODE_FLAGS.get(first, EXP_ALL))
            continue
        if mode not in MODE_FLAGS:
            say(f"unknown mode {mode} (known: {', '.join(MODE_FLAGS)})")
            continue
        if mode == "bf16c-exp" and "flags" in safe:
            if safe["flags"]:
                bench(bins, shape, "bf16c-safe", safe["flags"], FULL)
            continue
        st = bench(bins, shape, mode, MODE_FLAGS[mode], FULL)
        if mode == "bf16c-exp" and st != "pass" and "flags" not in safe:
            probe_shape = "1b" if maker.made.get("1b") else shape
            safe["flags"] = safe_flags(bins, probe_shape)
            say(f"bf16c-safe: {' '.join(safe['flags'] or ['(no piece passed)'])}")
            if safe["flags"]:
                bench(bins, shape, "bf16c-safe", safe["flags"], FULL)


def summary():
    lines = ["== GPU ==", open(os.path.join(OUT, "gpu.txt")).read().strip(), ""]
    tests = [r for r in runs if r[0] == "checks"]
    skipped = [r for r in tests if r[2].startswith("skipped")]
    bad = [r for r in tests if r[2] != "pass" and r not in skipped]
    lines.append(f"== checks: {len(tests) - len(bad) - len(skipped)} of {len(tests)} passed, "
                 f"{len(skipped)} skipped, {len(bad)} not passed (each test its own process; "
                 f"logs in {OUT}/tests) ==")
    if skipped:
        lines.append("skipped: " + ", ".join(f"{r[1]} {r[2][8:]}" for r in skipped))
    # The first failures with their panic message; then names only (the device tool returns
    # the output's last 12,000 characters).
    seen = set()
    for n, (_, name, status, secs) in enumerate(bad):
        lines.append(f"- {name}: {status} ({secs:.0f} s)")
        if n >= 12:
            continue
        b, _, t = name.partition(" ")
        log = os.path.join(OUT, "tests", f"{b}.{t.replace('::', '.')}.log")
        try:
            text = open(log, errors="replace").read().splitlines()
        except OSError:
            text = []
        for i, l in enumerate(text):
            if "panicked at" in l:
                msg = [x for x in text[i + 1:i + 4] if x and not x.startswith(("stack backtrace",
                                                                                 "note:", "  "))]
                if tuple(msg) in seen:
                    lines.append("    (the same panic message as above)")
                else:
                    seen.add(tuple(msg))
                    lines += ["    " + x[:240] for x in [l] + msg[:2]]
                break
    lines += ["", "== benchmarks, probes and models =="]
    lines += [f"- {stage} {name}: {status} ({secs:.0f} s)" for stage, name, status, secs in runs
              if stage != "checks"]
    for log in sorted(glob.glob(os.path.join(OUT, "nsys-*.log"))):
        lines += ["", f"== where a decode step's GPU time goes ({os.path.basename(log)}) =="]
        lines += [l[:160] for l in kernel_table(log)] or ["(no kernel table in the log)"]
    lb = os.path.join(OUT, "lora_bench.log")
    if os.path.exists(lb):
        lines += ["", "== lora_bench (the LoRA pair against the copy bandwidth) ==",
                  open(lb, errors="replace").read().strip()[-3000:]]
    table = subprocess.run([sys.executable, "scripts/gpu_speed_table.py", OUT], capture_output=True,
                           text=True)
    lines += ["", "== speed (dlp-run bench --backend cuda; transformers+PEFT bf16, same GPU) ==",
              table.stdout.strip() or table.stderr.strip()]
    lines.append(f"\nwall {time.monotonic() - T0:.0f} s of a {BUDGET:.0f} s budget")
    text = "\n".join(lines)
    open(os.path.join(OUT, "summary.md"), "w").write(text + "\n")
    print("\n" + text)


def main():
    os.makedirs(OUT, exist_ok=True)
    setup_env()
    bins = binaries()
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True) \
        if shutil.which("nvidia-smi") else None
    open(os.path.join(OUT, "gpu.txt"), "w").write(smi.stdout if smi else "no nvidia-smi\n")
    say(f"GPU: {(smi.stdout.strip() if smi else 'no nvidia-smi')}; budget {BUDGET:.0f} s")
    maker = Maker()
    maker.start()
    if os.environ.get("CHECKS") != "none":
        checks(bins)
    speed(bins, maker)
    summary()
    failed = [r for r in runs if r[2] != "pass" and not r[2].startswith("skipped")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
