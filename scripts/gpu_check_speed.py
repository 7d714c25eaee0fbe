"""The speed stage of scripts/gpu_check.py: lora_bench, the real-shape golden check
(gpu_check_golden.py, on the first model made), `dlp-run serve` exercised as clients would
(gpu_check_serve.py), then `dlp-run bench` by priority on the random
models, transformers+PEFT beside it, the per-kernel profile, and the probes that find which
unverified piece breaks the every-path mode."""
import glob
import os
import shutil
import sys
import time

import gpu_check_report as report
from gpu_check_core import (BACKEND, BENCH_CAP, EXP_FIRST, FULL, G, LOGS, MODE_FLAGS, MODES,
                            OUT, PATHS,
                            PEERS, PIECES, PROBE_CAP, PROBES_BUDGET, PROFILE_CAP, PROFILE_ONLY,
                            RUST_ENV, SHAPES, SHORT, SIZE, SWEEP, SWEEP_ARGS,
                            LORA_SWEEP, BUDGET, T0, WORK,
                            lock, paths_in, record, run, runs, say, with_paths)
from gpu_check_golden import golden
from gpu_check_serve import serve

def bench_cmd(bins, shape, flags):
    """`dlp-run bench` on `shape`'s model with its 8 adapters, in `flags`' mode."""
    d = os.path.join(WORK, shape)
    cmd = [bins["dlp-run"], "bench", "--backend", BACKEND, "--model", os.path.join(d, "model")]
    return cmd + [f"--adapter=a{i}={d}/adapters/a{i}" for i in range(8)] + list(flags)


def bench(bins, shape, mode, flags, extra, cap=BENCH_CAP, stage="speed", env=None):
    cmd = bench_cmd(bins, shape, flags) + list(extra)
    if stage == "speed":
        cmd += ["--json", os.path.join(LOGS, f"bench-{shape}-{mode}.json")]
    log = os.path.join(LOGS, f"bench-{shape}-{mode}.log")
    return run(stage, f"{shape} {mode}", cmd, log, cap, env=env or RUST_ENV)


def sweep(bins, shape, label, flags):
    """The kernel tuning sweep (SWEEP): `flags`' mode (named `label`) benched once per
    DLP_CUDA_TUNE setting, "default" for none, each a row `tune-<setting>` of the speed table,
    all with the same short scenarios so that they compare with each other."""
    for setting in SWEEP:
        env = dict(RUST_ENV)
        env.pop("DLP_CUDA_TUNE", None)
        if setting != "default":
            env["DLP_CUDA_TUNE"] = setting
        name = "tune-" + setting.replace("=", "").replace(",", "+")
        say(f"sweep {shape} {label}: {name}")
        bench(bins, shape, name, flags, SWEEP_ARGS, env=env)
        report.publish(runs, LOGS, OUT, T0, BUDGET)


def path_of_module(module):
    """The --cuda-experimental path a golden_cuda module `experimental::<module>` tests: the
    path of its name ('_' for '-'), or the longest path it extends (`fused_silu_inline`, the
    path under other switches: fused-silu); None for another module."""
    name = module.replace("_", "-")
    for p in sorted(PATHS, key=len, reverse=True):
        if name == p or name.startswith(p + "-"):
            return p
    return None


def distrusted():
    """The experimental paths whose own fixture tests (golden_cuda `experimental::<path>::*`)
    did not pass, and the paths that ride on them: {path: why}."""
    bad = {}
    for r in runs:
        if r.stage == "checks" and r.failed() and r.name.startswith("golden_cuda experimental::"):
            path = path_of_module(r.name.split("::")[1])
            if path:
                bad.setdefault(path, f"{r.name.split(' ', 1)[1]}: {r.status}")
    for path, under in PATHS.items():
        for p in under:
            if p in bad:
                bad.setdefault(path, f"rides on {p}")
    return bad


def narrow_first_mode():
    """bf16c-exp, and the modes of MODES derived from it (bf16c-fast too), without the paths
    whose tests failed
    (a hang or a fault there would cost a bench its whole cap, then a probe's), each recorded as
    a `plan` step; returns the pieces left for the probes."""
    bad = distrusted()
    if not bad:
        return PIECES
    keep = [p for p in PATHS if p not in bad]
    flags = [f for f in MODE_FLAGS["bf16c-exp"] if f not in ("--cuda-experimental", "all")]
    MODE_FLAGS["bf16c-exp"] = with_paths(flags, keep)
    record("plan", "bf16c-exp", "narrowed, without "
           + "; ".join(f"{p} ({why})" for p, why in bad.items())
           + ": " + " ".join(MODE_FLAGS["bf16c-exp"]))
    # The modes derived from it (bf16c-exp-without-...) lose the same paths: each still
    # differs from bf16c-exp by the paths it names only.
    for mode in MODES:
        f = MODE_FLAGS[mode]
        if mode != "bf16c-exp" and "--cuda-experimental" in f:
            i = f.index("--cuda-experimental")
            MODE_FLAGS[mode] = with_paths(f[:i], [p for p in paths_in(f) if p not in bad])
            record("plan", mode, "narrowed as bf16c-exp: " + " ".join(MODE_FLAGS[mode]))
    return [(n, f) for n, f in PIECES
            if f[0] != "--cuda-experimental" or not any(p in bad for p in f[1].split(","))]


def safe_flags(bins, shape, pieces):
    """bf16c, then each of `pieces` (of bf16c-exp) alone on top of it, in short benches on
    `shape`, within PROBES_BUDGET: (flags of bf16c with the pieces that passed, whether every
    piece passed); (None, False) when bf16c itself fails."""
    stop = time.monotonic() + PROBES_BUDGET
    if bench(bins, shape, "probe-bf16c", MODE_FLAGS["bf16c"], SHORT, PROBE_CAP, "probe") != "pass":
        return None, False
    ok, paths, passed = [], [], 0
    for name, flags in pieces:
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
    return MODE_FLAGS["bf16c"] + ok, passed == len(pieces)


def find_tool(name, patterns):
    """`name` on PATH, else the first match of the glob `patterns` (where NVIDIA installs it)."""
    found = sorted(g for p in patterns for g in glob.glob(p))
    return shutil.which(name) or (found[-1] if found else None)


def profile(bins, shape, label, flags):
    """Where a decode run's GPU time goes, kernel by kernel, in `flags`' mode (named `label`):
    Nsight Systems' kernel summary (times; the report stays in GPU_WORK) and Nsight Compute's
    time and DRAM throughput per launch (the first 1,000 launches of the decode steps alone,
    marked by `bench --profile-decode`; real clocks), each where installed; the tables go to the
    summary. A run whose log holds no table does not pass."""
    app = bench_cmd(bins, shape, flags)
    nsys = find_tool("nsys", ["/usr/local/cuda*/bin/nsys", "/opt/nvidia/nsight-systems/*/bin/nsys",
                              "/usr/local/cuda*/nsight-systems-*/bin/nsys"])
    ncu = find_tool("ncu", ["/usr/local/cuda*/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu",
                            "/usr/local/cuda*/nsight-compute-*/ncu"])
    if not nsys and not ncu:
        return record("profile", f"{shape} {label}", "not run (neither nsys nor ncu here)")
    for tool, path, cmd, table in [
        ("nsys", nsys, ["profile", "--stats=true", "--force-overwrite=true", "--trace=cuda",
                        "--cuda-graph-trace=node", "-o", os.path.join(WORK, f"prof-{shape}")]
         + app + ["--only", PROFILE_ONLY or "base,fused3", "--new-tokens", "32",
                  "--rounds", "1"],
         report.kernel_table),
        ("ncu", ncu, ["--csv", "--clock-control", "none", "--profile-from-start", "off",
                      "--launch-count", "1000", "--metrics",
                      "gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed"]
         + app + ["--only", PROFILE_ONLY or "base", "--new-tokens", "8", "--rounds", "1",
                  "--profile-decode"],
         report.ncu_table),
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
    tokens of context, the serve stage, the profile, the probes where the first mode failed, sampled decode
    (temperature 1, top-p 0.9; SAMPLED=none skips it), the other shapes at
    ~4,000 tokens, then the other modes shape by shape."""
    run("bench", "lora_bench", [bins["lora_bench"]], os.path.join(LOGS, "lora_bench.log"), 90,
        env=RUST_ENV)
    for setting in LORA_SWEEP:
        name = "lora_bench-" + setting.replace("=", "").replace(",", "+")
        run("bench", name, [bins["lora_bench"]], os.path.join(LOGS, name + ".log"), 60,
            env=dict(RUST_ENV, DLP_CUDA_TUNE=setting))
    report.publish(runs, LOGS, OUT, T0, BUDGET)
    if not SHAPES:
        return
    first, rest = MODES[0], MODES[1:]
    pieces = narrow_first_mode() if first in EXP_FIRST else PIECES
    golden(bins, maker)  # after the narrowing: its first-mode runs take the narrowed flags
    report.publish(runs, LOGS, OUT, T0, BUDGET)
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

    ctx4k = os.environ.get("CTX4K") != "none"
    plan = [item for s in SHAPES
            for item in [(s, first), (s, "peer")] + ([(s, "ctx4k")] if s == "1b" and ctx4k else [])]
    # The production path (the server), once the first figures are in.
    plan += [(None, "serve")]
    plan += [(SHAPES[0], "sweep")] if SWEEP else []
    plan += [(SHAPES[0], "profile")] if PROFILE_ONLY != "none" else []
    plan += [(None, "probes")]
    # Decode as servers' requests sample (the host picks from downloaded rows), on Llama 3's
    # 128,256-entry vocabulary where the 1B shape runs; after the probes, which may change
    # the mode it runs in.
    if os.environ.get("SAMPLED") != "none":
        plan += [("1b" if "1b" in SHAPES else SHAPES[0], "sampled")]
    # The other shapes at ~4,000 tokens of context too (the issue asks for decode speed there).
    plan += [(s, "ctx4k") for s in SHAPES if s != "1b" and ctx4k]
    plan += [(s, m) for m in rest for s in SHAPES]
    for shape, mode in plan:
        if mode == "serve":
            serve(bins, maker, bool(failed))  # the first mode as narrowed, unless it failed
            report.publish(runs, LOGS, OUT, T0, BUDGET)
            continue
        if mode == "probes":
            if failed and first in EXP_FIRST:
                made = [s for s in SHAPES if maker.made.get(s)]
                probe_shape = min(made, key=lambda s: SIZE.get(s, 9)) if made else failed[0]
                probed["flags"], probed["all"] = safe_flags(bins, probe_shape, pieces)
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
        if mode == "peer" and not PEERS:
            record("speed", f"{shape} peer", "not run (PEERS=none)")
        elif mode == "peer":
            d = os.path.join(WORK, shape)
            paths = ",".join(f"{d}/adapters/a{i}" for i in range(8))
            cmd = [sys.executable, os.path.join(G, "gpu", "peer_gpu.py"), "--model", f"{d}/model",
                   "--adapters", paths, "--dtype", "bf16", "--repeats", "2",
                   "--json", os.path.join(LOGS, f"peer-{shape}.json")]
            run("speed", f"{shape} peer", cmd, os.path.join(LOGS, f"peer-{shape}.log"), BENCH_CAP)
        elif mode in ("ctx4k", "profile", "sweep", "sampled"):
            label, flags = fallback()
            if mode == "profile":
                profile(bins, shape, label, flags)
            elif mode == "sweep":
                sweep(bins, shape, label, flags)
            elif mode == "sampled":
                # Temperature 1 (a server's default request: device-sampling draws it on the
                # GPU where the mode has it), then with top-p 0.9 as clients often send (the
                # host draws): the table's pick ms is the host's time a batch-32 decode step
                # spends sampling. Without device-sampling too, where the mode has it.
                sampled = ["--only", "base,batch32", "--new-tokens", "32", "--rounds", "1",
                           "--temperature", "1"]
                bench(bins, shape, f"sampled-{label}", flags, sampled)
                paths = paths_in(flags)
                if "device-sampling" in paths:
                    i = flags.index("--cuda-experimental")
                    host = with_paths(flags[:i], [p for p in paths if p != "device-sampling"])
                    bench(bins, shape, f"sampled-{label}-host", host, sampled)
                bench(bins, shape, f"sampled-top-p-{label}", flags, sampled + ["--top-p", "0.9"])
            else:
                # ~3,900 prompt tokens (7 per sentence with this tokenizer).
                bench(bins, shape, f"ctx4k-{label}", flags,
                      ["--only", "base,fused3", "--new-tokens", "64", "--rounds", "2", "--prompt",
                       "The cat sat on the mat. " * 560])
        elif mode == first and failed and first in EXP_FIRST:
            record("speed", f"{shape} {mode}", f"not run (failed on {failed[0]}; the probes run "
                   "after the first figures)")
            failed.append(shape)
        else:
            st = bench(bins, shape, mode, MODE_FLAGS[mode], FULL)
            if mode == first and st.startswith(("FAIL", "TIMEOUT")):
                failed.append(shape)
        report.publish(runs, LOGS, OUT, T0, BUDGET)
