#!/usr/bin/env python3
"""The run stage of scripts/gpu-check.sh: the CUDA speed issue's one prepared GPU run, made to
fit one device call and to say as much as it can even when a path written without a GPU breaks.

  scripts/gpu_check.py            # on the GPU machine, from the repository root, with .gpu/

Why it is shaped this way:
- Every CUDA test runs in its own process (`--exact`), several at once, each under a timeout:
  a kernel fault poisons the CUDA context of its whole process, and a hang would eat the call,
  so one broken path must not fail or stall the tests of the others.
- The random models of the speed stage are made in the background while the tests run
  (smallest first; they need the GPU for seconds and the disk for the rest), never while a
  benchmark is timed if it can be helped.
- The whole run keeps to a budget (GPU_CHECK_BUDGET seconds, default 560, under the device
  tool's 600 s per call): the tests get at most CHECKS_BUDGET (default 200) of it, then the
  benchmarks run by priority (each shape's first mode and its transformers+PEFT peer, the 1B
  shape at ~4,000 tokens of context, a per-kernel profile of a decode run on the first shape
  (Nsight Systems and Nsight Compute, where installed), then the other modes); what no longer
  fits is reported as not run.
- When the first mode (every unverified path on) fails on a shape, bf16c is benched alone and
  then each piece on top of it, and the mode runs again with the pieces that passed
  (`bf16c-safe`).
- The device tool returns at most 8 files from $OUT, so everything is written to
  .gpu-run/out and $OUT gets three, rewritten after every stage (a run cut short keeps what
  it had): summary.md (the tables printed at the end), results.json (every bench and peer
  JSON) and logs.tar.xz (every log). Benchmarks do not check results: read the speed table
  next to the checks.

Environment: SHAPES (default "7b 1b"; "none" skips the speed stage), MODES (default
"bf16c-exp bf16c f32 bf16"), GPU_WORK (where models are made, default .gpu-run/models),
GPU_CHECK_JOBS (test processes at once), CHECKS=none (skip the tests), GPU_CHECK_BUDGET (set it
to about the device call's timeout_s - 40 when that is under 600), GPU_CHECK_BACKEND (the
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

import gpu_check_report as report

T0 = time.monotonic()
G = ".gpu"  # what `prepare` packed, as it travels (binaries xz-compressed)
R = ".gpu-run"  # what a run makes: binaries unpacked, PTX cache, models, logs (never carried)
LOGS = os.path.join(R, "out")
OUT = os.environ.get("OUT") or LOGS
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET", 560))
CHECKS_BUDGET = float(os.environ.get("CHECKS_BUDGET", 200))
TEST_CAP, BENCH_CAP, PROBE_CAP, PROFILE_CAP = 150, 150, 60, 90
PROBES_BUDGET = 180  # all the probes together, after the first figures
SHAPES = [s for s in os.environ.get("SHAPES", "7b 1b").split() if s != "none"]
MODES = os.environ.get("MODES", "bf16c-exp bf16c f32 bf16").split() or ["bf16c"]
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
# (fused-lora rides on decode-matvec). `cli/tests/cli.rs` lists the same paths.
PIECES = [
    ("lora-bf16", ["--cuda-lora-bf16"]),
    ("kv-bf16", ["--cuda-kv-bf16"]),
] + [(p.replace(",", "-and-"), ["--cuda-experimental", p]) for p in (
    "decode-matvec", "decode-matvec,fused-lora", "wide-grids", "split-attention", "graphs",
    "sgmv", "fused-norm", "fused-rope", "fused-kv-store")]
# Model sizes, for making the small ones first.
SIZE = {"tiny": 0, "small": 1, "1b": 2, "7b": 3, "8b": 4}
FULL = ["--only", "base,single,fused3,batch32", "--new-tokens", "64", "--rounds", "3"]
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
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
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


def setup_env():
    """The Rust binaries' environment: CUDA libraries (the toolkit, the driver mount, the
    image's pip wheels; not for the Python helpers, whose torch brings its own), the checks'
    strict mode, and a fresh PTX cache the test processes share (the first compiles it)."""
    libs = ["/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"]
    try:
        import site
        for s in site.getsitepackages():
            libs += sorted(glob.glob(s + "/nvidia/*/lib")) + sorted(glob.glob(s + "/nvidia/cu*/lib"))
    except Exception:
        pass
    old = os.environ.get("LD_LIBRARY_PATH")
    cache = os.path.abspath(os.path.join(R, "ptx-cache"))
    shutil.rmtree(cache, ignore_errors=True)
    RUST_ENV.update(LD_LIBRARY_PATH=":".join(libs + ([old] if old else [])), DLP_REQUIRE_CUDA="1",
                    DLP_REQUIRE_NVRTC="1", DLP_CUDA_CACHE=cache, RUST_BACKTRACE="1",
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
        with lzma.open(z) as src, open(exe + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(exe + ".tmp", 0o755)
        os.replace(exe + ".tmp", exe)  # a partial unpack never passes for a binary
    version = report.read(os.path.join(G, "VERSION")).strip()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        head = ""  # no git (the device machine's copy has no .git): nothing to compare
    if head and version.split(" ")[0] != head:
        say(f"warning: {G} holds binaries of {version or 'an unknown commit'}, not of HEAD "
            f"{head}: run 'scripts/gpu-check.sh prepare' again")
    need = ["dlp-run", "nvrtc_compile", "op_parity_cuda", "golden_cuda", "lora_bench"]
    missing = [b for b in need if not os.path.exists(os.path.join(bindir, b))]
    if missing:
        raise RuntimeError(f"{G}/bin lacks {', '.join(missing)}: run 'scripts/gpu-check.sh "
                           f"prepare' where cargo is, and carry {G}")
    return {b: os.path.abspath(os.path.join(bindir, b)) for b in need}


def list_tests(exe):
    """The test names of a libtest binary (`--list --format terse`: `name: test`)."""
    r = subprocess.run([exe, "--list", "--format", "terse"], capture_output=True, text=True,
                       env=RUST_ENV, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"--list: rc {r.returncode}: {r.stderr.strip()[-300:]}")
    return [line[:-6] for line in r.stdout.splitlines() if line.endswith(": test")]


def checks(bins):
    """The NVRTC check and every op-parity and fixture test, each in its own process: the
    kernel-level op-parity tests first (the most telling, should the stop come)."""
    tdir = os.path.join(LOGS, "tests")
    os.makedirs(tdir, exist_ok=True)
    todo = [("nvrtc_compile", None)]
    for b in ("op_parity_cuda", "golden_cuda"):
        try:
            todo += [(b, t) for t in list_tests(bins[b])]
        except Exception as e:
            record("checks", f"{b} (listing its tests)", f"FAIL ({e})")
    say(f"checks: {len(todo)} tests, {JOBS} at a time")
    stop = T0 + min(CHECKS_BUDGET, BUDGET)

    def one(bt):
        b, t = bt
        cap = min(TEST_CAP, stop - time.monotonic())
        name = f"{b} {t}" if t else b
        cmd = [bins[b], "--exact", t, "--nocapture"] if t else [bins[b], "--nocapture"]
        log = os.path.join(tdir, f"{b}.{t.replace('::', '.')}.log" if t else f"{b}.log")
        return run("checks", name, cmd, log, cap, env=RUST_ENV, test=bool(t))

    pool = cf.ThreadPoolExecutor(JOBS)
    futures = {pool.submit(one, bt): bt for bt in todo}
    try:
        pending = set(futures)
        while pending:
            # What has finished goes to $OUT every 20 s: a call killed outright keeps it.
            done, pending = cf.wait(pending, timeout=20)
            for f in done:
                f.result()
            report.publish(runs, LOGS, OUT, T0, BUDGET)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for f, (b, t) in futures.items():
            if f.cancelled():
                record("checks", f"{b} {t}" if t else b, "not run (stopped)")


class Maker(threading.Thread):
    """Makes the random models of SHAPES (../shared/gpu/make_model.py), smallest first; each
    shape's event is set when it is done, made or not (`made` says which)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.made = {}
        self.done = {s: threading.Event() for s in SHAPES}

    def run(self):
        for shape in sorted(SHAPES, key=lambda s: SIZE.get(s, 9)):
            d = os.path.join(WORK, shape)
            mark = os.path.join(d, "made.ok")  # written once make_model.py has succeeded
            try:
                if not os.path.exists(mark) and not stopping.is_set():
                    cmd = [sys.executable, os.path.join(G, "gpu", "make_model.py"), "--out", d,
                           "--shape", shape, "--adapters", "8", "--rank", "8", "--tokenizer",
                           os.path.join(G, "tokenizer")]
                    log = os.path.join(LOGS, f"make-{shape}.log")
                    if run("make", shape, cmd, log, CHECKS_BUDGET + 120) == "pass":
                        open(mark, "w").close()
                self.made[shape] = os.path.exists(mark)
            except Exception as e:
                record("make", shape, f"FAIL ({e})")
            finally:
                self.done[shape].set()

    def ready(self, shape):
        """Waits (within the budget) until `shape` is made or given up on; whether it was made."""
        self.done[shape].wait(max(0.0, left() - 60))
        return self.made.get(shape, False)


def bench(bins, shape, mode, flags, extra, cap=BENCH_CAP, stage="speed"):
    d = os.path.join(WORK, shape)
    cmd = [bins["dlp-run"], "bench", "--backend", BACKEND, "--model", os.path.join(d, "model")]
    cmd += [f"--adapter=a{i}={d}/adapters/a{i}" for i in range(8)]
    cmd += list(flags) + list(extra)
    if stage == "speed":
        cmd += ["--json", os.path.join(LOGS, f"bench-{shape}-{mode}.json")]
    log = os.path.join(LOGS, f"bench-{shape}-{mode}.log")
    return run(stage, f"{shape} {mode}", cmd, log, cap, env=RUST_ENV)


def safe_flags(bins, shape):
    """bf16c, then each piece of bf16c-exp alone on top of it, in short benches on `shape`,
    within PROBES_BUDGET: (flags of bf16c with the pieces that passed, whether every piece
    passed); (None, False) when bf16c itself fails."""
    stop = time.monotonic() + PROBES_BUDGET
    if bench(bins, shape, "probe-bf16c", MODE_FLAGS["bf16c"], SHORT, PROBE_CAP, "probe") != "pass":
        return None, False
    ok, paths, passed = [], [], 0
    for name, flags in PIECES:
        cap = min(PROBE_CAP, stop - time.monotonic())
        if bench(bins, shape, f"probe-{name}", MODE_FLAGS["bf16c"] + flags, SHORT, cap,
                 "probe") == "pass":
            passed += 1
            if flags[0] == "--cuda-experimental":
                paths += flags[1].split(",")
            else:
                ok += flags
    if paths:
        ok += ["--cuda-experimental", ",".join(dict.fromkeys(paths))]
    return MODE_FLAGS["bf16c"] + ok, passed == len(PIECES)


def find_tool(name, patterns):
    """`name` on PATH, else the first match of the glob `patterns` (where NVIDIA installs it)."""
    found = sorted(g for p in patterns for g in glob.glob(p))
    return shutil.which(name) or (found[-1] if found else None)


def profile(bins, shape, label, flags):
    """Where a decode run's GPU time goes, kernel by kernel, in `flags`' mode (named `label`):
    Nsight Systems' kernel summary (times; the report stays in GPU_WORK) and Nsight Compute's
    time and DRAM throughput per launch (the first 1,000 launches: load, prefill, the first
    decode steps; real clocks), each where installed; the tables go to the summary. A run whose
    log holds no table does not pass."""
    d = os.path.join(WORK, shape)
    app = [bins["dlp-run"], "bench", "--backend", BACKEND, "--model", os.path.join(d, "model")]
    app += [f"--adapter=a{i}={d}/adapters/a{i}" for i in range(8)] + list(flags)
    nsys = find_tool("nsys", ["/usr/local/cuda*/bin/nsys", "/opt/nvidia/nsight-systems/*/bin/nsys",
                              "/usr/local/cuda*/nsight-systems-*/bin/nsys"])
    ncu = find_tool("ncu", ["/usr/local/cuda*/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu",
                            "/usr/local/cuda*/nsight-compute-*/ncu"])
    if not nsys and not ncu:
        return record("profile", f"{shape} {label}", "not run (neither nsys nor ncu here)")
    for tool, path, cmd, table in [
        ("nsys", nsys, ["profile", "--stats=true", "--force-overwrite=true", "--trace=cuda",
                        "--cuda-graph-trace=node", "-o", os.path.join(WORK, f"prof-{shape}")]
         + app + ["--only", "base,fused3", "--new-tokens", "32", "--rounds", "1"],
         report.kernel_table),
        ("ncu", ncu, ["--csv", "--clock-control", "none", "--launch-count", "1000", "--metrics",
                      "gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed"]
         + app + ["--only", "base", "--new-tokens", "8", "--rounds", "1"], report.ncu_table),
    ]:
        if not path:
            continue
        log = os.path.join(LOGS, f"{tool}-{shape}-{label}.log")
        if run("profile", f"{shape} {label} {tool}", [path] + cmd, log, PROFILE_CAP,
               env=RUST_ENV) == "pass" and not table(log):
            with lock:
                last = runs.pop()
            record("profile", last.name, "FAIL (no kernel table in the log)", last.secs, log)


def speed(bins, maker):
    """The benchmarks by priority: each shape's first mode and its peer, the 1B shape at ~4,000
    tokens of context, the profile, the probes where the first mode failed, then the other
    modes shape by shape."""
    run("bench", "lora_bench", [bins["lora_bench"]], os.path.join(LOGS, "lora_bench.log"), 90,
        env=RUST_ENV)
    report.publish(runs, LOGS, OUT, T0, BUDGET)
    if not SHAPES:
        return
    first, rest = MODES[0], MODES[1:]
    failed = []  # shapes where the first mode (bf16c-exp) failed
    probed = {}  # "flags"/"all": the probes' findings, once they ran

    def fallback():
        """(label, flags) for ctx4k and the profile: the first mode while it has not failed,
        else what the probes found, else bf16c (f32 when bf16c failed too)."""
        if not failed:
            return first, MODE_FLAGS[first]
        if "flags" not in probed:
            return "bf16c", MODE_FLAGS["bf16c"]
        if probed["flags"] is None:
            return "f32", MODE_FLAGS["f32"]
        return ("bf16c", MODE_FLAGS["bf16c"]) if probed["all"] else ("bf16c-safe", probed["flags"])

    plan = [item for s in SHAPES
            for item in [(s, first), (s, "peer")] + ([(s, "ctx4k")] if s == "1b" else [])]
    plan += [(SHAPES[0], "profile"), (None, "probes")] + [(s, m) for m in rest for s in SHAPES]
    for shape, mode in plan:
        if mode == "probes":
            if failed and first == "bf16c-exp":
                made = [s for s in SHAPES if maker.made.get(s)]
                probe_shape = min(made, key=lambda s: SIZE.get(s, 9)) if made else failed[0]
                probed["flags"], probed["all"] = safe_flags(bins, probe_shape)
                say("bf16c-safe: " + " ".join(probed["flags"] or ["(bf16c itself fails)"]))
                for s in failed:
                    if probed["flags"] is None:
                        record("speed", f"{s} bf16c-safe", "not run (bf16c itself fails)")
                    elif probed["all"]:
                        record("speed", f"{s} bf16c-safe",
                               "not run (every piece passes alone: bf16c-exp fails in combination)")
                    else:
                        bench(bins, s, "bf16c-safe", probed["flags"], FULL)
            continue
        if not maker.ready(shape):
            record("speed", f"{shape} {mode}", "not run (no model)")
            continue
        if mode == "peer":
            d = os.path.join(WORK, shape)
            paths = ",".join(f"{d}/adapters/a{i}" for i in range(8))
            cmd = [sys.executable, os.path.join(G, "gpu", "peer_gpu.py"), "--model", f"{d}/model",
                   "--adapters", paths, "--dtype", "bf16", "--repeats", "2",
                   "--json", os.path.join(LOGS, f"peer-{shape}.json")]
            run("speed", f"{shape} peer", cmd, os.path.join(LOGS, f"peer-{shape}.log"), BENCH_CAP)
        elif mode in ("ctx4k", "profile"):
            label, flags = fallback()
            if mode == "profile":
                profile(bins, shape, label, flags)
            else:
                # ~3,900 prompt tokens (7 per sentence with this tokenizer).
                bench(bins, shape, f"ctx4k-{label}", flags,
                      ["--only", "base,fused3", "--new-tokens", "64", "--rounds", "2", "--prompt",
                       "The cat sat on the mat. " * 560])
        elif mode == first and failed and first == "bf16c-exp":
            record("speed", f"{shape} {mode}", f"not run (failed on {failed[0]}; the probes run "
                   "after the first figures)")
            failed.append(shape)
        else:
            st = bench(bins, shape, mode, MODE_FLAGS[mode], FULL)
            if mode == first and st.startswith(("FAIL", "TIMEOUT")):
                failed.append(shape)
        report.publish(runs, LOGS, OUT, T0, BUDGET)


def kill_live():
    """Kills every process still running (the tests in the pool's threads, a make)."""
    with lock:
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main():
    # What an earlier run left (a warm machine keeps ignored folders) must not pass for this one's.
    shutil.rmtree(LOGS, ignore_errors=True)
    os.makedirs(LOGS, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)

    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the report
        stopping.set()
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        bad = [m for m in MODES if m not in MODE_FLAGS]
        if bad:
            raise ValueError(f"MODES: unknown {', '.join(bad)} (known: {', '.join(MODE_FLAGS)})")
        setup_env()
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
        except Exception as e:
            smi = f"no nvidia-smi ({type(e).__name__})"
        version = report.read(os.path.join(G, "VERSION")).strip() or "unknown"
        open(os.path.join(LOGS, "gpu.txt"), "w").write(f"{smi}\nbinaries of {version}\n")
        say(f"GPU: {smi}; binaries of {version}; budget {BUDGET:.0f} s")
        bins = binaries()
        maker = Maker()
        maker.start()
        if os.environ.get("CHECKS") != "none":
            checks(bins)
        report.publish(runs, LOGS, OUT, T0, BUDGET)
        speed(bins, maker)
    except (Stop, KeyboardInterrupt) as e:
        stopping.set()
        kill_live()
        record("run", "gpu_check.py", f"STOPPED ({type(e).__name__} at "
               f"{time.monotonic() - T0:.0f} s)")
    except Exception as e:
        record("run", "gpu_check.py", f"ERROR ({type(e).__name__}: {e})")
    finally:
        stopping.set()
        kill_live()
        # The pool's threads record what was killed or never started (3 s at most).
        until = time.monotonic() + 3
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join(max(0.0, until - time.monotonic()))
        text = report.publish(runs, LOGS, OUT, T0, BUDGET)
        print("\n" + text, flush=True)
    sys.exit(1 if any(r.failed() for r in runs) else 0)


if __name__ == "__main__":
    main()
