#!/usr/bin/env python3
"""A run of scripts/gpu_check.py on the CPU, so that the GPU run's script is tested where the
rare GPU run cannot be: `dlp-run bench --backend cpu` on a tiny model made from the tiny-llama
fixture (its weights, a byte-level tokenizer, its three PEFT adapters as a0..a7), stand-ins for
the test binaries, lora_bench and the profilers. Checks what the GPU run depends on: exactly the
three files the device tool returns, the speed table's row, the probe path that a failing
bf16c-exp takes (on the CPU every --cuda flag fails, so bf16c "itself fails"), the narrowing of
bf16c-exp and of the modes derived from it (bf16c-exp-without-...) after a path's failed test,
the profile tables, and the exit status. Run by cli/tests/cli.rs.

  scripts/gpu_check_selftest.py DLP_RUN    # from the repository root; DLP_FIXTURES as the tests
"""
import array
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

STUB = "#!/bin/sh\necho stand-in {name}: $@\n"
# lora_bench's stand-in prints a row of its table with the tuning it ran under (LORA_SWEEP).
LORA_BENCH = "#!/bin/sh\necho '| lora shrink+expand (tiled) | 1.00 | 1 | 0.1% |' tune=$DLP_CUDA_TUNE\n"
# golden_cuda's stand-in: two experimental paths' tests, fused-shrink's failing, so that the
# run narrows bf16c-exp to the paths whose tests passed.
GOLDEN = """#!/bin/sh
case "$*" in
  *--list*) echo "experimental::fused_shrink::tiny_llama: test"
            echo "experimental::fused_norm::tiny_llama: test" ;;
  *experimental::fused_shrink::*) echo "thread 'main' panicked at tests/golden_cuda.rs:1:1:"
            echo "stand-in failure"; exit 101 ;;
  *) [ "$DLP_CUDA_COMPILE_THREADS" = 1 ] || exit 101
     echo "test result: ok. 1 passed; 0 failed" ;;
esac
"""
# op_parity_cuda's stand-in: its f32 test fails unless modules load one at a time, as a
# backend whose threaded module load broke would, so that the run goes on with
# DLP_CUDA_COMPILE_THREADS=1; the golden stand-in's tests below pass only with it.
OP_PARITY = """#!/bin/sh
case "$*" in
  *--list*) echo "op_parity_cuda: test" ;;
  *) [ "$DLP_CUDA_COMPILE_THREADS" = 1 ] || { echo "stand-in: loading kernel lora.cu: failed"; exit 101; }
     echo "test result: ok. 1 passed; 0 failed" ;;
esac
"""
# Tables in the profilers' formats, for the summary's parsers.
NSYS = """echo ' ** CUDA GPU Kernel Summary (cuda_gpu_kern_sum):'
echo ' Time (%)  Total Time (ns)  Instances  Name'
echo '     61.0        1000000        320  matvec_bf16_r4'
"""
NCU = """echo '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"'
echo '"0","1","dlp-run","h","matvec_bf16_r4","1","7","(256, 1, 1)","(1024, 1, 1)","0","9.0","m","gpu__time_duration.sum","usecond","12.50"'
echo '"0","1","dlp-run","h","matvec_bf16_r4","1","7","(256, 1, 1)","(1024, 1, 1)","0","9.0","m","dram__throughput.avg.pct_of_peak_sustained_elapsed","%","81.2"'
"""
# Then the profiled command itself (from dlp-run on), without its --cuda flags (on the CPU they
# fail by design), so that the flags the profiler's run adds are tried.
RUN_APP = """import os, subprocess, sys
args = sys.argv[1:]
args = args[next(i for i, a in enumerate(args) if os.path.basename(a) == "dlp-run"):]
cmd, skip = [], False
for a in args:
    if skip or a.startswith("--cuda-"):
        skip = a == "--cuda-experimental"
        continue
    cmd.append(a)
sys.exit(subprocess.run(cmd).returncode)
"""


def byte_tokenizer():
    """A byte-level BPE tokenizer with the 256 bytes and no merges (tiny-llama's vocabulary is
    256): GPT-2's byte-to-character table."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None,
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False,
                      "vocab": {chr(c): b for b, c in zip(bs, cs)}, "merges": []}}


def perturbed_logits_caught(logs, wdir):
    """gpu_check_golden.compare on the run's f32 prefill logits against copies of them: one
    row's second-best logit raised past its best (where the margin is clear), then one NaN, on
    the engine's side and on the reference's."""
    import gpu_check_golden as golden
    got = os.path.join(logs, "golden-tiny-f32-prefill.safetensors")
    if not os.path.exists(got):
        return False
    rows, cols, v = golden.read_logits(got)
    row = next(r for r in range(rows) if (lambda a: a[0] - a[1])(
        sorted(v[r * cols:(r + 1) * cols], reverse=True)) > 2 * golden.MARGIN)
    a = v[row * cols:(row + 1) * cols]
    second = sorted(range(cols), key=a.__getitem__)[-2]
    moved, nan = array.array("f", v), array.array("f", v)
    moved[row * cols + second] = max(a) + 1.0
    nan[5] = float("nan")

    def write(path, values):
        header = json.dumps({"logits": {"dtype": "F32", "shape": [rows, cols],
                                        "data_offsets": [0, 4 * len(values)]}}).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + values.tobytes())
        return path

    same = golden.compare(got, got)
    m = golden.compare(got, write(os.path.join(wdir, "moved.safetensors"), moved))
    nan_path = write(os.path.join(wdir, "nan.safetensors"), nan)
    n = golden.compare(got, nan_path)
    try:
        golden.compare(nan_path, got)  # a reference with a NaN is refused, never a pass
        refused = False
    except ValueError:
        refused = True
    return (same == (0.0, 0, rows) and m[1] == 1 and m[0] > 1.0 and n[0] == float("inf")
            and refused)


def executable(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def busy_server(adapters):
    """A server on a free port that lists `base` and `adapters` and answers every POST with a
    429 and OpenAI's error body, as a server whose slots and queue are full does (serving in a
    thread; `.shutdown()` stops it)."""
    import http.server
    import threading

    class Busy(http.server.BaseHTTPRequestHandler):
        def answer(self, status, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            models = [{"id": m, "object": "model"} for m in ["base", *adapters]]
            self.answer(200, json.dumps({"object": "list", "data": models})
                        if self.path == "/v1/models" else "dlp_requests_total 0\n")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer(429, json.dumps({"error": {"message": "the queue is full",
                                                   "type": "rate_limit_error"}}))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def smol_parts(folder, file):
    """`scripts/gpu-check.sh prepare-smollm2`'s layout in `folder`, of a tar holding `file` as
    smollm2/config.json: three parts, each folder with the tar's SHA-256 and the part count."""
    import hashlib
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add(file, arcname="smollm2/config.json")
    data = buf.getvalue()
    third = len(data) // 3
    parts = (data[:third], data[third:2 * third], data[2 * third:])
    for i, part in enumerate(parts):
        os.makedirs(os.path.join(folder, str(i + 1)))
        with open(os.path.join(folder, str(i + 1), "part"), "wb") as f:
            f.write(part)
        with open(os.path.join(folder, str(i + 1), "tar.sha256"), "w") as f:
            f.write(f"{hashlib.sha256(data).hexdigest()} {len(parts)}\n")


def main():
    dlp_run = os.path.abspath(sys.argv[1])
    fx = os.path.abspath(os.environ.get("DLP_FIXTURES", "../shared/fixtures"))
    src = os.path.join(fx, "tiny-llama")
    tmp = tempfile.mkdtemp(prefix="gpu-check-selftest-")
    model = os.path.join(tmp, "work", "tiny", "model")
    os.makedirs(model)
    for f in os.listdir(src):
        if f == "config.json" or f.startswith("model"):
            os.symlink(os.path.join(src, f), os.path.join(model, f))
    with open(os.path.join(model, "tokenizer.json"), "w") as f:
        json.dump(byte_tokenizer(), f)
    adapters = sorted(os.listdir(os.path.join(src, "adapters")))
    for i in range(8):
        d = os.path.join(tmp, "work", "tiny", "adapters")
        os.makedirs(d, exist_ok=True)
        # Copies: the serve stage loads one at run time, and the server refuses a symbolic
        # link that leads out of its --adapter-root.
        shutil.copytree(os.path.join(src, "adapters", adapters[i % len(adapters)]),
                        os.path.join(d, f"a{i}"))
    open(os.path.join(tmp, "work", "tiny", "made.ok"), "w").close()
    bins, tools, out = (os.path.join(tmp, d) for d in ("bin", "tools", "out"))
    for d in (bins, tools, out):
        os.makedirs(d)
    os.symlink(dlp_run, os.path.join(bins, "dlp-run"))
    executable(os.path.join(bins, "nvrtc_compile"), STUB.format(name="nvrtc_compile"))
    executable(os.path.join(bins, "op_parity_cuda"), OP_PARITY)
    executable(os.path.join(bins, "lora_bench"), LORA_BENCH)
    executable(os.path.join(bins, "golden_cuda"), GOLDEN)
    for tool, table in (("nsys", NSYS), ("ncu", NCU)):
        executable(os.path.join(tools, tool), "#!/bin/sh\n" + table + f"exec {sys.executable}"
                   f" -c '{RUN_APP}' \"$@\"\n")
    # The real-shape golden stage's reference (transformers+PEFT in float64, which this machine
    # may lack): dlp-run's own CPU decode, which takes the same arguments.
    reference = f"{shlex.quote(dlp_run)} score --backend cpu --mode decode"
    smol_parts(os.path.join(tmp, "smol"), os.path.join(src, "config.json"))
    env = dict(os.environ, GPU_CHECK_BIN_DIR=bins, GPU_WORK=os.path.join(tmp, "work"),
               GPU_CHECK_SMOL_DIR=os.path.join(tmp, "smol"),
               GOLDEN_REFERENCE=reference,
               SHAPES="tiny", MODES="bf16c-exp f32 bf16c-exp-without-graphs",
               GPU_CHECK_BACKEND="cpu",
               SWEEP="default matvec_unroll=8", LORA_SWEEP="tiled_rows=4",
               OUT=out, GPU_CHECK_BUDGET="300", GPU_CHECK_RUN_DIR=os.path.join(tmp, "run"),
               PATH=tools + os.pathsep + os.environ["PATH"])
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, os.path.join(here, "gpu_check.py")], env=env,
                       capture_output=True, text=True, timeout=280)
    summary = open(os.path.join(out, "summary.md")).read() if os.path.exists(
        os.path.join(out, "summary.md")) else ""
    results = json.load(open(os.path.join(out, "results.json"))) if os.path.exists(
        os.path.join(out, "results.json")) else {}
    status = {f"{x['stage']} {x['name']}": x["status"] for x in results.get("runs", [])}
    plan = status.get("plan bf16c-exp", "")
    # The summary's warnings section, on a log as tracing writes it (coloured level).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_check_report
    wdir = os.path.join(tmp, "warn")
    os.makedirs(wdir)
    with open(os.path.join(wdir, "bench-7b-bf16c-exp.log"), "w") as f:
        f.write("t \x1b[33m WARN\x1b[0m dlp_cuda::graphs: capture failed\nt  INFO x\n" * 2)
    warned = gpu_check_report.warnings(wdir)
    golden_caught = perturbed_logits_caught(os.path.join(tmp, "run", "out"), wdir)
    import gpu_check
    import gpu_check_core
    import gpu_check_serve
    import gpu_check_speed
    # A rerun into the same folder, whose earlier unpack left read-only folders.
    for d, _, _ in os.walk(os.path.join(tmp, "run", "fixtures", "smollm2")):
        os.chmod(d, 0o555)
    gpu_check.R, gpu_check.SMOL = os.path.join(tmp, "run"), os.path.join(tmp, "smol")
    rerun = (gpu_check.fixtures(), gpu_check_core.runs[-1].status)
    # SmolLM2's parts damaged, then one missing: a FAIL, then a not-run step, and the tests read
    # the other fixtures either way (in this process: the run above took the good parts).
    gpu_check.SMOL = os.path.join(tmp, "smol-damaged")
    gpu_check.R = os.path.join(tmp, "run-damaged")
    shutil.copytree(os.path.join(tmp, "smol"), gpu_check.SMOL)
    with open(os.path.join(gpu_check.SMOL, "2", "part"), "ab") as f:
        f.write(b"x")
    smol_fallbacks = [gpu_check.fixtures()]
    smol_steps = [gpu_check_core.runs[-1].status]
    shutil.rmtree(os.path.join(gpu_check.SMOL, "2"))
    smol_fallbacks.append(gpu_check.fixtures())
    smol_steps.append(gpu_check_core.runs[-1].status)
    # The serve stage's client side must catch a server that turns requests away. A real server
    # with one slot turned most of 12 concurrent requests away only when they overlapped, which
    # they did not always do on a loaded machine; this one answers every POST with a 429.
    busy = busy_server(gpu_check_serve.ADAPTERS)
    try:
        busy_problems = gpu_check_serve.exercise(
            f"http://127.0.0.1:{busy.server_address[1]}", 200, runtime=False)
    finally:
        busy.shutdown()
    modules = {m: gpu_check_speed.path_of_module(m)
               for m in ("fused_silu_inline", "fused_silu", "inline_shrink", "combined")}
    without = gpu_check_core.without_mode("bf16c-exp-without-split-attention+rope-in-attention")
    try:
        gpu_check_core.without_mode("bf16c-exp-without-split-attention+warp-speed")
        unknown = ""
    except ValueError as e:
        unknown = str(e)
    checks = [
        ("a rerun unpacks SmolLM2 again over the earlier unpack's read-only folders",
         rerun[1].startswith("pass") and rerun[0] == os.path.join(tmp, "run", "fixtures")
         and os.path.exists(os.path.join(tmp, "run", "fixtures", "smollm2", "config.json"))),
        ("SmolLM2's three parts checked against the tar's SHA-256 and unpacked beside the fixtures",
         status.get("fixtures smollm2", "").startswith("pass")
         and os.path.exists(os.path.join(tmp, "run", "fixtures", "smollm2", "config.json"))),
        ("a damaged SmolLM2 part a FAIL step, a missing one a not-run step; the carried "
         "fixtures read either way",
         smol_steps[0].startswith("FAIL (the parts' SHA-256")
         and smol_steps[1].startswith("not run:") and "2/part missing" in smol_steps[1]
         and smol_fallbacks == [os.path.join(tmp, "run-damaged", "fixtures")] * 2
         and not os.path.exists(os.path.join(tmp, "run-damaged", "fixtures", "smollm2"))),
        ("this checkout's own fixtures linked where the tests read them (not carried in .gpu)",
         all(os.path.exists(os.path.join(d, "fixtures", "tiny-olmo2", "golden.json"))
             and os.path.islink(os.path.join(d, "fixtures", "tiny-olmo2"))
             for d in (os.path.join(tmp, "run"), os.path.join(tmp, "run-damaged")))),
        ("a mode derived from bf16c-exp narrowed as it is, still without its own path",
         status.get("plan bf16c-exp-without-graphs", "").startswith("narrowed as bf16c-exp: ")
         and "fused-shrink" not in status.get("plan bf16c-exp-without-graphs", "")
         and "graphs" not in status.get("plan bf16c-exp-without-graphs", "")
         and "inline-combine" in status.get("plan bf16c-exp-without-graphs", "")),
        ("bf16c-exp-without-... turns off its paths and the ones riding on them; names a typo",
         without[:-1] == gpu_check_core.EXP_ALL[:-1]
         and set(without[-1].split(",")) == set(gpu_check_core.PATHS)
         - {"split-attention", "inline-combine", "rope-in-attention"}
         and "no path 'warp-speed'" in unknown),
        ("a golden module of a path under other switches names that path; others none",
         modules == {"fused_silu_inline": "fused-silu", "fused_silu": "fused-silu",
                     "inline_shrink": "inline-shrink", "combined": None}),
        ("a threaded module load that fails twice where a serial one passes: recorded, and "
         "the later tests run with DLP_CUDA_COMPILE_THREADS=1",
         status.get("checks op_parity_cuda op_parity_cuda", "").startswith("FAIL")
         and status.get("load op_parity_cuda op_parity_cuda (DLP_CUDA_COMPILE_THREADS=1)")
         == "pass"
         and status.get("load op_parity_cuda op_parity_cuda (threaded again)", "")
         .startswith("FAIL")
         and status.get("load threaded module load", "").startswith("FAIL (the f32")
         and status.get("checks golden_cuda experimental::fused_norm::tiny_llama") == "pass"),
        ("the serve stage: a CPU server in f32 served every client request as expected",
         status.get("serve tiny f32") == "pass"
         and "all as expected" in open(os.path.join(tmp, "run", "out",
                                                    "serve-tiny-f32.log")).read()),
        ("its clients catch a server that answers 429 to every completion",
         all(any(x.startswith(f"request {i}: HTTP 429") for x in busy_problems)
             for i in range(12))),
        ("the failing test of a path reported",
         status.get("checks golden_cuda experimental::fused_shrink::tiny_llama", "")
         .startswith("FAIL") and "stand-in failure" in summary),
        ("bf16c-exp narrowed to the paths whose tests passed",
         plan.startswith("narrowed, without fused-shrink (experimental::fused_shrink")
         and plan.endswith(",".join(["--cuda-experimental decode-matvec", "fused-lora",
                                     "wide-grids", "split-attention", "graphs", "sgmv",
                                     "fused-norm", "fused-rope", "fused-kv-store",
                                     "dependent-launch", "batch-lora",
                                     "inline-shrink", "tiled-lora",
                                     "inline-combine", "rope-in-attention",
                                     "fused-silu", "norm-in-matvec",
                                     "kv-copy", "expand-launch",
                                     "lora-prefetch", "device-argmax",
                                     "device-sampling", "packed-upload"]))),
        ("lora_bench run again under each LORA_SWEEP setting, its table row in the summary",
         status.get("bench lora_bench-tiled_rows4") == "pass"
         and "== lora_bench-tiled_rows4 (LORA_SWEEP) ==\n| lora shrink+expand (tiled) | 1.00 | 1 "
         "| 0.1% | tune=tiled_rows=4" in summary),
        ("a WARN line of a bench log listed once, uncoloured",
         warned == ["- bench-7b-bf16c-exp.log: dlp_cuda::graphs: capture failed"]),
        ("the three files the device tool returns, and only them",
         sorted(os.listdir(out)) == ["logs.tar.xz", "results.json", "summary.md"]),
        ("exit status 1 (bf16c-exp cannot pass on the CPU)", r.returncode == 1),
        ("the f32 bench passed", status.get("speed tiny f32") == "pass"),
        ("bf16c-exp failed on the CPU", status.get("speed tiny bf16c-exp", "").startswith("FAIL")),
        ("the probes found bf16c itself failing",
         status.get("speed tiny bf16c-safe") == "not run (bf16c itself fails)"),
        ("the f32 row in the speed table", "| tiny | f32 |" in summary),
        ("sampled decode benched in the fallback mode, its pick ms in the JSON and the table",
         status.get("speed tiny sampled-f32") == "pass"
         and "decode_pick_ms_per_step" in next(
             (x for x in results.get("bench-tiny-sampled-f32.json", {}).get("scenarios", [])
              if x["name"] == "batch32"), {})
         and "| tiny | sampled-f32 |" in summary),
        ("the bench JSON in results.json",
         "scenarios" in results.get("bench-tiny-f32.json", {})),
        ("the host's time besides the forward pass and picks, in the JSON and the speed table",
         "decode_host_ms_per_step" in next(
             (x for x in results.get("bench-tiny-f32.json", {}).get("scenarios", [])
              if x["name"] == "base"), {})
         and "| base host ms |" in summary),
        ("the Nsight Systems table", "matvec_bf16_r4" in summary.split("Nsight Systems")[-1]),
        ("the Nsight Compute table", "| matvec_bf16_r4 | 1 |" in summary),
        ("both profiled bench runs passed (their flags accepted)",
         sorted(v for k, v in status.items() if k.startswith("profile tiny ")) == ["pass"] * 2),
        ("the sweep benched each setting, named by it",
         {k for k in status if "tune-" in k}
         == {"speed tiny tune-default", "speed tiny tune-matvec_unroll8"}),
        ("the real-shape golden stage: its reference, then f32 prefill and decode within 2e-3",
         status.get("golden tiny reference (transformers+PEFT, float64)") == "pass"
         and all(status.get(f"golden tiny f32 {how}", "").startswith(
             "pass (max |logit - float64| ") for how in ("prefill", "decode"))
         and not any(k.startswith("golden tiny bf16c") for k in status)),
        ("its comparison catches a moved greedy token and a NaN, and refuses a NaN reference",
         golden_caught),
        ("the verdict line last", summary.rstrip().splitlines()[-1:] != []
         and summary.rstrip().splitlines()[-1].startswith("verdict:")),
    ]
    bad = [what for what, ok in checks if not ok]
    for what, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if bad:
        print(f"\n--- gpu_check.py rc {r.returncode} (workspace kept: {tmp}), output:\n"
              f"{r.stdout[-6000:]}\n{r.stderr[-3000:]}")
        sys.exit(1)
    print(f"(workspace {tmp} removed)")
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
