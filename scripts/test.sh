#!/usr/bin/env bash
# The test suite: formatting, lints, and every test of the workspace (optimised build; golden
# tests against ../shared/fixtures). Installs what it needs on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq "${need_apt[@]}") >/dev/null
fi
export DLP_FIXTURES=${DLP_FIXTURES:-$PWD/../shared/fixtures}
# libnvrtc from the nvidia-cuda-nvrtc-cu12 wheel, if installed, for the CUDA compile check.
if [ -z "${DLP_NVRTC_LIB:-}" ] && command -v python3 >/dev/null; then
  nvrtc_dir=$(python3 -c 'import glob, site
print(next(iter(d for s in site.getsitepackages() for d in glob.glob(s + "/nvidia/cuda_nvrtc/lib")), ""))' 2>/dev/null || true)
  if [ -n "$nvrtc_dir" ]; then
    export DLP_NVRTC_LIB=$nvrtc_dir LD_LIBRARY_PATH=$nvrtc_dir:${LD_LIBRARY_PATH:-}
  fi
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The CUDA backend builds, lints and compiles its kernels without CUDA (it is loaded at run
# time; its GPU tests print SKIPPED). Built once with the workspace so features unify the same
# way for every step and nothing is compiled twice.
cuda=(--workspace --features dlp-cli/cuda,dlp-tests/cuda)
cargo clippy "${cuda[@]}" --all-targets -q -- -D warnings
cargo test "${cuda[@]}" --no-fail-fast
