"""What scripts/gpu_check.py hands back: the summary (printed, and summary.md) and, in $OUT,
the three files the device tool returns (it returns at most 8, named in letters, digits, '.',
'_' and '-'): summary.md, results.json (every bench and peer JSON, and each step's status) and
logs.tar.xz (every log of the run). `publish` may run many times: each writes all three anew."""
import csv
import glob
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from typing import NamedTuple, Optional

# Failures shown with their message in full; the rest by name (the device tool returns the
# output's last 12,000 characters, and summary.md comes back whole).
SHOWN_FAILURES = 12


class Run(NamedTuple):
    """One step of the run: a test, a model made, a benchmark, a probe."""
    stage: str
    name: str
    status: str
    secs: float
    log: Optional[str]

    def failed(self):
        return self.status.startswith(("FAIL", "TIMEOUT", "ERROR", "STOPPED"))


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def why(run, seen):
    """The lines that say why `run` failed: a test's panic message (once per distinct
    message), else the last non-empty lines of its log."""
    text = read(run.log).splitlines() if run.log else []
    for i, line in enumerate(text):
        if "panicked at" in line:
            msg = [x for x in text[i + 1:i + 4]
                   if x.strip() and not x.startswith(("stack backtrace", "note:", "  "))][:2]
            if tuple(msg) in seen:
                return ["(the same panic message as above)"]
            seen.add(tuple(msg))
            return [line[:240]] + [x[:240] for x in msg]
    return [x[:240] for x in [x for x in text if x.strip()][-3:]]


def kernel_table(log, rows=20):
    """The first `rows` rows of the per-kernel GPU time table of an nsys stats log."""
    text = read(log).splitlines()
    for i, line in enumerate(text):
        if "cuda_gpu_kern_sum" in line:
            return [x[:160] for x in text[i:i + rows + 4]]
    return []


def ncu_table(log, rows=20):
    """Nsight Compute's `--csv` rows (one per launch and metric) summed per kernel: launches,
    total and mean time, the share of the profiled time, and the mean DRAM throughput as a
    share of its peak (how close a kernel comes to the bandwidth bound)."""
    units = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
             "second": 1e6, "s": 1e6}
    header, agg = None, {}
    for line in read(log).splitlines():
        if not line.startswith('"'):
            continue
        row = next(csv.reader([line]))
        if header is None:
            if "Metric Name" in row:
                header = row
            continue
        if len(row) != len(header):
            continue
        r = dict(zip(header, row))
        name = r.get("Kernel Name") or r.get("Function Name") or r.get("Demangled Name") or "?"
        name = name.split("(")[0][:60]
        try:
            value = float(r.get("Metric Value", "").replace(",", ""))
        except ValueError:
            continue
        a = agg.setdefault(name, {"ids": set(), "us": 0.0, "dram": [], "grid": r.get("Grid Size", "")})
        a["ids"].add(r.get("ID"))
        if r.get("Metric Name", "").startswith("gpu__time_duration"):
            a["us"] += value * units.get(r.get("Metric Unit", "").strip(), 1e-3)
        elif r.get("Metric Name", "").startswith("dram__throughput"):
            a["dram"].append(value)
    total = sum(a["us"] for a in agg.values()) or 1.0
    out = ["| kernel | launches | total ms | share | mean us | DRAM % of peak | grid |",
           "|---|---|---|---|---|---|---|"]
    for name, a in sorted(agg.items(), key=lambda kv: -kv[1]["us"])[:rows]:
        n = len(a["ids"])
        dram = sum(a["dram"]) / len(a["dram"]) if a["dram"] else float("nan")
        out.append(f"| {name} | {n} | {a['us'] / 1e3:.3f} | {100 * a['us'] / total:.0f}% | "
                   f"{a['us'] / n:.1f} | {dram:.0f} | {a['grid']} |")
    return out if agg else []


def warnings(logs, limit=10):
    """Distinct WARN lines of the benchmark and profile logs, with the log they came from: a
    path that quietly fell back (a graph capture refused, dependent launches turned off) runs
    slower without failing."""
    seen, out = set(), []
    for log in sorted(glob.glob(os.path.join(logs, "bench-*.log"))
                      + glob.glob(os.path.join(logs, "n*-*.log"))):
        for line in read(log).splitlines():
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # tracing colours its levels
            if " WARN " not in line:
                continue
            text = line[line.index(" WARN ") + 6:].strip()[:200]
            if text not in seen:
                seen.add(text)
                out.append(f"- {os.path.basename(log)}: {text}")
    return out[:limit] + ([f"- ... {len(out) - limit} more"] if len(out) > limit else [])


def summary(runs, logs, t0, budget):
    lines = ["== GPU ==", read(os.path.join(logs, "gpu.txt")).strip() or "(unknown)", ""]
    tests = [r for r in runs if r.stage == "checks"]
    skipped = [r for r in tests if r.status.startswith("skipped")]
    bad = [r for r in tests if r.status != "pass" and r not in skipped]
    passed = len(tests) - len(bad) - len(skipped)
    lines.append(f"== checks: {passed} of {len(tests)} passed, {len(skipped)} skipped, "
                 f"{len(bad)} not passed (each test in its own process) ==")
    kinds = {}
    for r in skipped:
        kinds.setdefault(r.status[8:], []).append(r.name.split(" ")[-1])
    for kind, names in sorted(kinds.items()):
        lines.append(f"skipped {kind}: {', '.join(names)}")
    seen = set()
    for n, r in enumerate(bad):
        lines.append(f"- {r.name}: {r.status} ({r.secs:.0f} s)")
        if n < SHOWN_FAILURES:
            lines += ["    " + x for x in why(r, seen)]
    lines += ["", "== models, benchmarks, probes =="]
    for r in runs:
        if r.stage == "checks":
            continue
        lines.append(f"- {r.stage} {r.name}: {r.status} ({r.secs:.0f} s)")
        if r.failed():
            lines += ["    " + x for x in why(r, seen)]
    for pattern, title, table in [
            ("nsys-*.log", "where a decode run's GPU time goes, Nsight Systems", kernel_table),
            ("ncu-*.log", "per kernel, Nsight Compute (the first decode steps)",
             ncu_table)]:
        for log in sorted(glob.glob(os.path.join(logs, pattern))):
            lines += ["", f"== {title}: {os.path.basename(log)} (shape-mode) =="]
            try:
                lines += table(log) or ["(no kernel table in the log)"]
            except Exception as e:  # a format this parser does not know: the log is in the tarball
                lines.append(f"(unreadable: {type(e).__name__}: {e})")
    lb = read(os.path.join(logs, "lora_bench.log")).strip()
    if lb:
        lines += ["", "== lora_bench (the LoRA pair against the copy bandwidth) ==", lb[-2500:]]
    for log in sorted(glob.glob(os.path.join(logs, "lora_bench-*.log"))):
        rows = [l for l in read(log).splitlines() if l.startswith("| lora") or "FAIL" in l]
        lines += ["", f"== {os.path.basename(log)[:-4]} (LORA_SWEEP) =="] + (rows or ["(no table)"])
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        t = subprocess.run([sys.executable, os.path.join(here, "gpu_speed_table.py"), logs],
                           capture_output=True, text=True, timeout=30)
        table = t.stdout.strip() or t.stderr.strip()
    except Exception as e:
        table = f"(no speed table: {e})"
    lines += ["", "== speed (dlp-run bench --backend cuda; transformers+PEFT bf16, same GPU; "
              "benchmarks do not check results: read them with the checks above) ==", table]
    warned = warnings(logs)
    if warned:
        lines += ["", "== warnings in the benchmark logs (a fallback runs slower, not red) =="]
        lines += warned
    benches = [r for r in runs if r.stage == "speed"]
    # The real-shape golden stage (gpu_check_golden.py): its f32 comparisons, and any of its
    # steps that failed (a reference or score run that broke leaves no comparison).
    judged = [r for r in runs if r.stage == "golden" and (r.failed() or (
        not r.name.endswith(")") and r.status.startswith("pass")))]
    golden = (f"real-shape golden {sum(r.status.startswith('pass') for r in judged)} of "
              f"{len(judged)} passed; " if judged else "")
    served = [r for r in runs if r.stage == "serve" and not r.status.startswith("not run")]
    golden += (f"serve {sum(r.status == 'pass' for r in served)} of {len(served)} passed; "
               if served else "")
    lines.append(f"\nverdict: checks {passed} passed, {len(bad)} not passed, {len(skipped)} "
                 f"skipped; {golden}benchmarks {sum(r.status == 'pass' for r in benches)} of "
                 f"{len(benches)} ran; wall {time.monotonic() - t0:.0f} s of a {budget:.0f} s "
                 "budget")
    return "\n".join(lines)


def publish(runs, logs, out, t0, budget):
    """Writes summary.md (in `logs` and `out`), and in `out` results.json and logs.tar.xz;
    returns the summary. Never raises: a step that fails to write is noted in the summary."""
    runs = list(runs)
    notes = []
    try:
        text = summary(runs, logs, t0, budget)
    except Exception as e:
        text = f"(summary failed: {type(e).__name__}: {e})\n" + "\n".join(
            f"- {r.stage} {r.name}: {r.status}" for r in runs)
    results = {"runs": [r._asdict() for r in runs]}
    for p in sorted(glob.glob(os.path.join(logs, "*.json"))):
        try:
            results[os.path.basename(p)] = json.loads(read(p))
        except ValueError as e:
            results[os.path.basename(p)] = {"error": str(e)}
    try:
        write(os.path.join(out, "results.json"), json.dumps(results, indent=1))
    except (OSError, TypeError, ValueError) as e:
        notes.append(f"results.json not written: {e}")
    if os.path.abspath(out) != os.path.abspath(logs):
        for root, _, files in os.walk(logs):
            for name in files:
                p = os.path.join(root, name)
                if os.path.getsize(p) > MAX_LOG_BYTES:
                    notes.append(f"{os.path.relpath(p, logs)} left out of logs.tar.xz: "
                                 f"{os.path.getsize(p) >> 20} MiB")
        try:
            tmp = os.path.join(out, "logs.tar.xz.tmp")
            with tarfile.open(tmp, "w:xz") as tar:
                tar.add(logs, arcname="logs", filter=small)
            os.replace(tmp, os.path.join(out, "logs.tar.xz"))
        except (OSError, tarfile.TarError) as e:
            notes.append(f"logs.tar.xz not written: {e}")
    text += "".join(f"\n({n})" for n in notes)
    for d in {logs, out}:
        try:
            write(os.path.join(d, "summary.md"), text + "\n")
        except OSError:
            pass
    return text


def write(path, text):
    """Writes `path` whole or not at all (a kill mid-write leaves the last good copy)."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# A log over this size stays out of logs.tar.xz (the device tool returns 16 MiB per file).
MAX_LOG_BYTES = 8 << 20


def small(info):
    """tarfile filter: leaves out logs over MAX_LOG_BYTES (named in the summary's notes)."""
    return None if info.isfile() and info.size > MAX_LOG_BYTES else info
