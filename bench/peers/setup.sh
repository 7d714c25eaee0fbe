#!/usr/bin/env bash
# Installs the two peer stacks that bench/peers/peers.py measures into .venv-peers/ (repo root):
#   transformers + PEFT on CPU torch (the DLP-LoRA reference's stack), and llama-cpp-python.
# Idempotent: every step is skipped when its package already imports in the venv.
# Env: PYTHON (interpreter for the venv, default python3), CMAKE_ARGS (passed to the llama.cpp
# build, e.g. CMAKE_ARGS="-DGGML_NATIVE=OFF"), REBUILD_LLAMA=1 (rebuild llama-cpp-python),
# TORCH_INDEX (CPU wheel index, tried first).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-peers
PY=${PYTHON:-python3}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
say() { echo "[peers-setup $(date +%H:%M:%S)] $*"; }
vpip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
has() { "$VENV/bin/python" -c "import $1" >/dev/null 2>&1; }
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
  vpip install -q --upgrade pip wheel
else
  say "$VENV exists"
fi

# torch: the CPU-only wheel is ~200 MB; PyPI's Linux wheel also pulls the CUDA runtime wheels
# (several GB) but runs fine on CPU. Try the CPU index first, without retries, then PyPI.
if has torch; then
  say "torch present: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
else
  say "installing torch (CPU index: $TORCH_INDEX)"
  if ! vpip install -q --progress-bar off --retries 0 --timeout 15 --index-url "$TORCH_INDEX" torch; then
    say "CPU index not reachable; installing torch from PyPI (includes CUDA libs, large download)"
    vpip install -q --progress-bar off torch
  fi
fi

for pkg in transformers peft gguf; do
  if has "$pkg"; then say "$pkg present"; else say "installing $pkg"; vpip install -q --progress-bar off "$pkg"; fi
done

# llama-cpp-python ships as a source package on PyPI: it compiles llama.cpp with cmake and a
# C++ compiler (several minutes on 2 cores). The build log goes to $VENV/llama-cpp-build.log.
# REBUILD_LLAMA=1 rebuilds it (e.g. after changing CMAKE_ARGS).
if has llama_cpp && [ -z "${REBUILD_LLAMA:-}" ]; then
  say "llama-cpp-python present"
else
  if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing cmake and a C++ compiler via apt"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null
    else
      say "warning: cmake or c++ missing and apt not usable; the build may fetch cmake from PyPI"
    fi
  fi
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  # Skip the multimodal (llava/mtmd) library: text only, ~20% less to compile.
  args="-DLLAVA_BUILD=OFF"
  # -march=native turns on ggml's AMX kernels where the CPU lists AMX; in some VMs (this
  # project's among them) their first `tilezero` dies with SIGILL, so compile them out.
  if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    args="$args -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
    args="$args -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
  fi
  args="$args ${CMAKE_ARGS:-}"  # the caller's CMAKE_ARGS come last, so they win
  say "building llama-cpp-python from source (CMAKE_ARGS=\"$args\", $CMAKE_BUILD_PARALLEL_LEVEL jobs)"
  # --no-cache-dir: pip would otherwise reuse a wheel built with other CMAKE_ARGS
  vpip uninstall -q -y llama-cpp-python 2>/dev/null || true
  if ! CMAKE_ARGS="$args" vpip install -v --progress-bar off --no-cache-dir llama-cpp-python >"$VENV/llama-cpp-build.log" 2>&1; then
    tail -n 40 "$VENV/llama-cpp-build.log"
    say "llama-cpp-python build FAILED (log: $VENV/llama-cpp-build.log); peers.py will report it as an error"
    exit 1
  fi
fi

"$VENV/bin/python" - <<'EOF'
import importlib, importlib.metadata as md
for m, dist in (("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"),
                ("gguf", "gguf"), ("llama_cpp", "llama-cpp-python")):
    try:
        importlib.import_module(m)
        print(f"  {m:13s}", md.version(dist))
    except Exception as e:  # report, don't fail: peers.py marks a missing peer as an error
        print(f"  {m:13s} NOT IMPORTABLE: {e}")
EOF
say "done in $(( $(date +%s) - start ))s; run: $VENV/bin/python bench/peers/peers.py --help"
