#!/usr/bin/env bash
# The CUDA proof, in one run on a fresh GPU machine: the NVRTC compile check, the op-parity
# table and every fixture case on the CUDA backend, then the fused-LoRA micro-benchmark against
# the device copy bandwidth; one short table at the end.
#
#   scripts/gpu-check.sh prepare   # here (has cargo): build the binaries and copy the small
#                                  # fixtures into .gpu/ (git-ignored via .git/info/exclude)
#   scripts/gpu-check.sh [run]     # on the GPU machine: uses cargo when present, else .gpu/
#
# With the device tool: `prepare` here, then run `scripts/gpu-check.sh` with carry [".gpu"].
# Logs go to $OUT (or .gpu/out) when set.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
G=.gpu
features=(--features cuda)

prepare() {
  set -e
  grep -qxF "/$G/" .git/info/exclude 2>/dev/null || echo "/$G/" >> .git/info/exclude
  rm -rf "$G" && mkdir -p "$G/bin" "$G/fixtures"
  cargo build --release -p dlp-cuda --example lora_bench
  cp "${CARGO_TARGET_DIR:-target}/release/examples/lora_bench" "$G/bin/"
  # Test executables: their paths come from cargo's JSON messages.
  cargo test --no-run "${features[@]}" -p dlp-tests --test op_parity_cuda --test golden_cuda \
      --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' |
    while read -r name exe; do cp "$exe" "$G/bin/$name"; done
  cargo test --no-run -p dlp-cuda --test nvrtc_compile --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "nvrtc_compile":
        print(m["executable"])' | while read -r exe; do cp "$exe" "$G/bin/nvrtc_compile"; done
  # The tiny fixtures travel (about 3 MB); smollm2 (118 MB) is over the device tool's limit.
  fx=${DLP_FIXTURES:-../shared/fixtures}
  for f in tiny-llama tiny-qwen2 tiny-llama3; do cp -r "$fx/$f" "$G/fixtures/"; done
  ls -la "$G/bin"; du -sh "$G"
}

if [ "$mode" = prepare ]; then prepare; exit; fi

out=${OUT:-$G/out}
mkdir -p "$out"
# CUDA libraries: the toolkit, the driver mount, and the pip wheels of the image's python.
libs=/usr/local/cuda/lib64:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu
if command -v python3 >/dev/null; then
  for d in $(python3 -c 'import site, glob
for s in site.getsitepackages():
    for p in glob.glob(s + "/nvidia/*/lib") + glob.glob(s + "/nvidia/cu*/lib"): print(p)' 2>/dev/null); do
    libs=$libs:$d
  done
fi
export LD_LIBRARY_PATH=$libs:${LD_LIBRARY_PATH:-}
export DLP_REQUIRE_CUDA=1 DLP_REQUIRE_NVRTC=1 DLP_CUDA_CACHE=off
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

status() { if [ "$1" -eq 0 ]; then echo pass; else echo "FAIL (rc $1)"; fi; }
declare -A res
if command -v cargo >/dev/null; then
  export DLP_FIXTURES=${DLP_FIXTURES:-$PWD/../shared/fixtures}
  [ -d "$DLP_FIXTURES" ] || export DLP_FIXTURES=$PWD/$G/fixtures
  cargo test -p dlp-cuda --test nvrtc_compile -- --nocapture >"$out/nvrtc.log" 2>&1; res[nvrtc]=$?
  cargo test "${features[@]}" -p dlp-tests --test op_parity_cuda -- --nocapture >"$out/parity.log" 2>&1; res[parity]=$?
  cargo test "${features[@]}" -p dlp-tests --test golden_cuda -- --nocapture --test-threads 1 >"$out/golden.log" 2>&1; res[golden]=$?
  cargo run --release -p dlp-cuda --example lora_bench >"$out/bench.log" 2>&1; res[bench]=$?
else
  [ -x "$G/bin/lora_bench" ] || { echo "no cargo and no $G/bin: run 'scripts/gpu-check.sh prepare' first and carry $G"; exit 2; }
  export DLP_FIXTURES=$PWD/$G/fixtures
  ldd "$G/bin/lora_bench" | grep -i "not found" && echo "(binaries built elsewhere miss libraries here)"
  "$G/bin/nvrtc_compile" --nocapture >"$out/nvrtc.log" 2>&1; res[nvrtc]=$?
  "$G/bin/op_parity_cuda" --nocapture >"$out/parity.log" 2>&1; res[parity]=$?
  "$G/bin/golden_cuda" --nocapture --test-threads 1 >"$out/golden.log" 2>&1; res[golden]=$?
  "$G/bin/lora_bench" >"$out/bench.log" 2>&1; res[bench]=$?
fi

echo; echo "== failures and skips (details in $out) =="
grep -hE "SKIPPED|FAIL|Fail\(|panicked|error" "$out"/{nvrtc,parity,golden}.log | head -40
echo; echo "== benchmark =="; cat "$out/bench.log"
echo; echo "== summary =="
printf '| %-28s | %-12s |\n' check result
printf '| %-28s | %-12s |\n' "NVRTC sm_80 + sm_90" "$(status "${res[nvrtc]}")"
printf '| %-28s | %-12s |\n' "op parity ($(grep -c 'Pass {' "$out/parity.log") pass)" "$(status "${res[parity]}")"
printf '| %-28s | %-12s |\n' "fixtures (golden)" "$(status "${res[golden]}")"
printf '| %-28s | %-12s |\n' "fused LoRA bench" "$(status "${res[bench]}")"
