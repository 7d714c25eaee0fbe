#!/usr/bin/env bash
# The CUDA proof, in one run on a fresh GPU machine: the NVRTC compile check, the op-parity
# table and every fixture case on the CUDA backend (f32, bf16 weights, the bf16 compute mode,
# bf16 LoRA and KV cache, and every `--cuda-experimental` path alone and together), the
# fused-LoRA micro-benchmark against the device copy bandwidth, then `dlp-run bench --backend
# cuda` on random models of Llama-2-7B's and Llama-3.2-1B's shapes with 8 random PEFT adapters,
# next to transformers+PEFT on the same GPU (../shared/gpu/); short tables at the end.
#
#   scripts/gpu-check.sh prepare   # here (has cargo): build the binaries and copy the small
#                                  # fixtures into .gpu/ (git-ignored via .git/info/exclude)
#   scripts/gpu-check.sh [run]     # on the GPU machine: scripts/gpu_check.py with .gpu/
#   scripts/gpu-check.sh prepare-smollm2   # here: the SmolLM2 fixtures (118 MB, over one
#                                  # carry) as a tar in as many parts as the carry needs
#                                  # (.gpu-smol/1, /2, ...; three beside 22 MB of tracked files)
#   scripts/gpu-check.sh staged    # on the GPU machine: which parts are there
#
# SmolLM2's golden_cuda cases run only where its fixtures are: carry [".gpu-smol/1"] in one
# device call (command `scripts/gpu-check.sh staged`), [".gpu-smol/2"] in the next, and so on
# for each part, then [".gpu"] in the run, each call within the machine's idle release of the
# one before (30 s: a warm machine keeps what earlier calls carried; a cold one starts bare).
# The extra calls cost
# device time (the machine's start comes first either way): leave the run's timeout_s room for
# a rerun, or skip this. The run checks the parts against the tar's SHA-256 and unpacks them
# beside the tiny fixtures, its SmolLM2 tests last; without them (or with a part missing or
# damaged) those cases are skipped and the summary's `fixtures` step says why.
#
# With the device tool: `prepare` here, then run `scripts/gpu-check.sh` with carry [".gpu"] and
# timeout_s 600. Where the tracked files and .gpu pass one carry, `prepare` moves the shared
# fixtures' archive to .gpu-fx and says so: carry [".gpu-fx"] first (command
# `scripts/gpu-check.sh staged`), then [".gpu"] in the run, within the idle release. The run keeps to a 560 s budget: each test in its own process under a timeout
# (a kernel fault or hang in one unverified path cannot take the others with it), the models made
# while the tests run, the benchmarks by priority, a short bench per path when the
# every-path mode fails. scripts/gpu_check.py says how, and which variables (SHAPES, MODES, ...)
# change it. Logs and summary.md go to $OUT (or .gpu-run/out, where a run keeps all it makes;
# .gpu stays as packed). Binaries travel stripped, in one solid tar.xz (the device tool carries
# 64 MiB).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
G=.gpu
features=(--workspace --features dlp-cli/cuda,dlp-cli/fuzz,dlp-tests/cuda)

prepare() {
  set -e
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  for d in "$G" "$G-run" "$G-fx"; do
    grep -qxF "/$d/" "$exclude" 2>/dev/null || echo "/$d/" >> "$exclude"
  done
  # Everything is built first: a failed build leaves the last good .gpu in place.
  cargo build --release -p dlp-cuda --example lora_bench
  # The CUDA run's dlp-run has no WGSL backend: it runs `--backend cuda` (and `cpu`), and wgpu's
  # code is 1.5 MB of the compressed carry; nor router training (`train`: burn), which it never
  # runs (burn: 1.25 of the 5.8 MB it took compressed).
  cargo build --release -p dlp-cli --no-default-features --features cuda
  # Test executables (built with scripts/test.sh's features, so its build is reused): their
  # paths come from cargo's JSON messages.
  tests=$(cargo test --no-run "${features[@]}" --test op_parity_cuda --test golden_cuda \
      --test nvrtc_compile --message-format=json |
    python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
  [ -d "$G" ] && chmod -R u+w "$G"
  rm -rf "$G" && mkdir -p "$G/bin" "$G/fixtures"
  cp "${CARGO_TARGET_DIR:-target}/release/examples/lora_bench" "$G/bin/"
  cp "${CARGO_TARGET_DIR:-target}/release/dlp-run" "$G/bin/"
  while read -r name exe; do cp "$exe" "$G/bin/$name"; done <<< "$tests"
  for t in op_parity_cuda golden_cuda nvrtc_compile; do
    [ -x "$G/bin/$t" ] || { echo "prepare: no test executable $t" >&2; exit 1; }
  done
  # The shared tiny and compatibility fixtures travel (about 8 MB); smollm2 (118 MB) is over
  # the device tool's limit. This repository's own (tests/fixtures/tiny-*) travel as tracked
  # files: the run links them beside these (scripts/gpu_check.py, `linked`).
  fx=${DLP_FIXTURES:-../shared/fixtures}
  for f in tiny-llama tiny-qwen2 tiny-llama3; do cp -r "$fx/$f" "$G/fixtures/"; done
  # Of the compatibility fixtures, the models golden_cuda runs (not the templates and BOS
  # cases, which no CUDA test reads).
  mkdir -p "$G/fixtures/compat"
  for f in tiny-mistral-sw tiny-qwen2-sw tiny-llama-peft-names tiny-llama-tied-lmhead-only; do
    cp -r "$fx/compat/$f" "$G/fixtures/compat/"
  done
  # The speed stage: the model/adapter maker and the transformers+PEFT timer (not committed:
  # they travel in .gpu), and a tokenizer for the random models.
  mkdir -p "$G/gpu" && cp "$fx/../gpu/make_model.py" "$fx/../gpu/peer_gpu.py" "$G/gpu/"
  cp -r --no-preserve=mode "$fx/smollm2/tokenizer" "$G/tokenizer"
  # Its tokenizer.json (3.4 MB) travels compressed (0.45 MB); the run unpacks it
  # (scripts/gpu_check.py, `tokenizer_dir`).
  xz -T0 -6 "$G/tokenizer/tokenizer.json"
  chmod -R u+w "$G/fixtures" "$G/gpu"
  # Debug info and symbols go (1.5 MB of the compressed carry): a panic still says what and
  # where (file:line); only a backtrace's frames lose their names.
  for b in "$G"/bin/*; do
    strip --strip-all "$b" || exit 1
  done
  # One solid tar.xz (one thread, one block, x86 branch filter): the five binaries share the
  # engine's and the CUDA backend's code, which one dictionary then stores once (10.5 MB as
  # five .xz files, 8.0 so; scripts/gpu_check.py `binaries` unpacks it).
  tar -C "$G/bin" -cf - . | xz -T1 --x86 --lzma2=preset=9e > "$G/bin.tar.xz"
  rm -rf "$G/bin"
  # The fixtures as one tar.xz (7.6 MB to 5.7; scripts/gpu_check.py `carried_fixtures` unpacks
  # it): what the 64 MiB carry has room for beside the tracked files.
  tar -C "$G" -cf - fixtures | xz -T0 -9e > "$G/fixtures.tar.xz"
  rm -rf "$G/fixtures"
  # What the device tool carries: the working tree (tracked files and untracked ones git does
  # not ignore) and .gpu, 64 MiB at most. Over it, no .gpu is left (a run would carry less).
  tree=$(git ls-files -z --cached --others --exclude-standard |
    xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}' || true)
  packed=$(du -sb "$G" | cut -f1)
  echo "prepare: working tree $tree bytes + $G $packed = $((tree + packed)) of $((64 << 20))"
  # Over one carry (the tracked fixtures grow with each family): the shared fixtures' archive
  # moves to $G-fx, carried in a call of its own before the run, as SmolLM2's parts are.
  rm -rf "$G-fx"
  if [ $((tree + packed)) -gt $((64 << 20)) ]; then
    mkdir -p "$G-fx" && mv "$G/fixtures.tar.xz" "$G-fx/"
    packed=$(du -sb "$G" | cut -f1)
    fx_size=$(du -sb "$G-fx" | cut -f1)
    echo "prepare: $G-fx (the shared fixtures, $fx_size bytes) carried first, alone: [\"$G-fx\"] with command \`scripts/gpu-check.sh staged\`, then [\"$G\"] ($packed bytes) in the run"
    if [ $((tree + packed)) -gt $((64 << 20)) ] || [ $((tree + fx_size)) -gt $((64 << 20)) ]; then
      echo "prepare: over the device tool's 64 MiB carry even so; $G and $G-fx removed" >&2
      rm -rf "$G" "$G-fx"
      exit 1
    fi
  fi
  # Which commit the binaries are of: the run prints it and warns when it is not HEAD.
  dirty=""
  [ -n "$(git status --porcelain)" ] && dirty=" (with uncommitted changes)"
  echo "$(git rev-parse HEAD)$dirty" > "$G/VERSION"
  tar -tvJf "$G/bin.tar.xz"; du -sh "$G"; cat "$G/VERSION"
}

# The SmolLM2 fixtures as one tar split into equal parts, as few as fit one device carry each
# beside the tracked files (64 MiB in all, 1 MiB kept free), every part folder with the whole
# tar's SHA-256 and the number of parts.
prepare_smollm2() {
  set -e
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qxF "/$G-smol/" "$exclude" 2>/dev/null || echo "/$G-smol/" >> "$exclude"
  fx=${DLP_FIXTURES:-../shared/fixtures}
  [ -f "$fx/smollm2/golden.json" ] || { echo "prepare-smollm2: no $fx/smollm2" >&2; exit 1; }
  rm -rf "$G-smol" && mkdir -p "$G-smol"
  # Writable once unpacked (the shared fixtures are read-only), so a rerun can replace them.
  tar -C "$fx" --dereference --mode=u+w -cf "$G-smol/smollm2.tar" smollm2
  sum=$(sha256sum "$G-smol/smollm2.tar" | cut -d' ' -f1)
  tracked=$(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c)
  room=$(((64 << 20) - tracked - (1 << 20)))
  size=$(stat -c %s "$G-smol/smollm2.tar")
  if [ "$room" -le $((1 << 20)) ]; then
    echo "prepare-smollm2: the tracked files ($tracked bytes) leave no room in a 64 MiB carry" >&2
    exit 1
  fi
  # `split -n` gives the last part the remainder (up to n - 1 bytes more): room for it.
  n=$(((size + room - 4097) / (room - 4096)))
  split -n "$n" -d -a 3 "$G-smol/smollm2.tar" "$G-smol/part."
  rm "$G-smol/smollm2.tar"
  for i in $(seq 0 $((n - 1))); do
    p="$G-smol/part.$(printf %03d "$i")"
    if [ $(($(stat -c %s "$p") + tracked + (1 << 20))) -gt $((64 << 20)) ]; then
      echo "prepare-smollm2: $p and the tracked files ($tracked) leave under 1 MiB of a 64 MiB carry" >&2
      exit 1
    fi
    mkdir -p "$G-smol/$((i + 1))"
    mv "$p" "$G-smol/$((i + 1))/part"
    printf '%s %s\n' "$sum" "$n" > "$G-smol/$((i + 1))/tar.sha256"
  done
  echo "prepare-smollm2: $n parts; carry each in a call of its own ([\".gpu-smol/1\"], ...)"
  du -sh "$G-smol"/*
}

case $mode in
  prepare) prepare ;;
  prepare-smollm2) prepare_smollm2 ;;
  staged)
    ls -l "$G-fx"/fixtures.tar.xz 2>/dev/null || echo "no $G-fx (shared fixtures) here"
    ls -l "$G-smol"/*/part 2>/dev/null || echo "no SmolLM2 part here"
    ;;
  run) exec python3 scripts/gpu_check.py ;;
  *) echo "usage: scripts/gpu-check.sh [prepare|prepare-smollm2|staged|run]" >&2; exit 2 ;;
esac
