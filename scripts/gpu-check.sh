#!/usr/bin/env bash
# The CUDA proof, in one run on a fresh GPU machine: the NVRTC compile check, the op-parity
# table and every fixture case on the CUDA backend (f32, bf16 weights, the bf16 compute mode,
# bf16 LoRA, and every `--cuda-experimental` path on), the fused-LoRA micro-benchmark against the device
# copy bandwidth, then `dlp-run bench --backend cuda` on random models of Llama-3.2-1B's and
# Llama-2-7B's shapes with 8 random PEFT adapters, next to transformers+PEFT on the same GPU
# (../shared/gpu/); short tables at the end.
#
#   scripts/gpu-check.sh prepare   # here (has cargo): build the binaries and copy the small
#                                  # fixtures into .gpu/ (git-ignored via .git/info/exclude)
#   scripts/gpu-check.sh [run]     # on the GPU machine: uses cargo when present, else .gpu/
#
# With the device tool: `prepare` here, then run `scripts/gpu-check.sh` with carry [".gpu"].
# Logs go to $OUT (or .gpu/out) when set. SHAPES (default "1b 7b") picks the speed stage's
# shapes; SHAPES=none skips it. MODES picks the bench modes, in order (default
# "bf16c-exp bf16c bf16 f32": bf16 compute with bf16 LoRA, a bf16 KV cache and every experimental path, bf16
# compute, bf16 weights, f32); on the 1B shape the first mode also runs at ~4,000 tokens of context (ctx4k). The checks' summary prints before the speed stage and the speed
# table after each shape, so a run cut short keeps what it measured; each bench and the peer
# stop at 150 s (should 7B not fit the device call, run SHAPES=7b as a second call). Binaries travel stripped and xz-compressed (the device tool
# carries 64 MiB).
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
  cargo build --release -p dlp-cli --features cuda
  cp "${CARGO_TARGET_DIR:-target}/release/dlp-run" "$G/bin/"
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
  # The speed stage: the model/adapter maker and the transformers+PEFT timer (not committed:
  # they travel in .gpu), and a tokenizer for the random models.
  mkdir -p "$G/gpu" && cp "$fx/../gpu/make_model.py" "$fx/../gpu/peer_gpu.py" "$G/gpu/"
  cp -r "$fx/smollm2/tokenizer" "$G/tokenizer"
  for b in "$G"/bin/*; do strip "$b" && xz -T0 -6 "$b"; done
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
# The bench flags of a speed-stage mode, into the array `flag`; fails on an unknown mode.
mode_flags() {
  case $1 in
    f32) flag=() ;;
    bf16) flag=(--cuda-bf16-weights) ;;
    bf16c) flag=(--cuda-bf16-compute) ;;
    bf16c-exp) flag=(--cuda-bf16-compute --cuda-lora-bf16 --cuda-kv-bf16 --cuda-experimental all) ;;
    *) return 1 ;;
  esac
}
# Binaries prepared here travel xz-compressed.
for z in "$G"/bin/*.xz; do [ -e "$z" ] && xz -dkf "$z" && chmod +x "${z%.xz}"; done
declare -A res
if command -v cargo >/dev/null; then
  export DLP_FIXTURES=${DLP_FIXTURES:-$PWD/../shared/fixtures}
  [ -d "$DLP_FIXTURES" ] || export DLP_FIXTURES=$PWD/$G/fixtures
  cargo test -p dlp-cuda --test nvrtc_compile -- --nocapture >"$out/nvrtc.log" 2>&1; res[nvrtc]=$?
  cargo test "${features[@]}" -p dlp-tests --test op_parity_cuda -- --nocapture >"$out/parity.log" 2>&1; res[parity]=$?
  cargo test "${features[@]}" -p dlp-tests --test golden_cuda -- --nocapture --test-threads 1 >"$out/golden.log" 2>&1; res[golden]=$?
  cargo run --release -p dlp-cuda --example lora_bench >"$out/bench.log" 2>&1; res[bench]=$?
  [ -x "$G/bin/dlp-run" ] || cargo build --release -p dlp-cli --features cuda >"$out/build.log" 2>&1
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

# Speed: random models of real shapes (made in $G/models, ~14 GB of disk for 7B, not in $out), 8
# adapters of rank 8, bench in f32 and bf16 weights, and transformers+PEFT in bf16.
if [ -x "$G/bin/dlp-run" ]; then dlp=$PWD/$G/bin/dlp-run; else dlp=${CARGO_TARGET_DIR:-target}/release/dlp-run; fi
work=${GPU_WORK:-$PWD/$G/models}
for shape in ${SHAPES:-1b 7b}; do
  [ "$shape" = none ] && break
  [ -x "$dlp" ] || { echo "no dlp-run binary: speed stage skipped"; res[speed]=1; break; }
  if [ ! -d "$work/$shape/adapters/a7" ]; then
    python3 "$G/gpu/make_model.py" --out "$work/$shape" --shape "$shape" --adapters 8 --rank 8 \
      --tokenizer "$G/tokenizer" >"$out/make-$shape.log" 2>&1 || { res[speed]=1; continue; }
  fi
  adapters=()
  for i in 0 1 2 3 4 5 6 7; do adapters+=(--adapter "a$i=$work/$shape/adapters/a$i"); done
  modes=(${MODES:-bf16c-exp bf16c bf16 f32})
  for mode in "${modes[@]}"; do
    mode_flags "$mode" || { echo "unknown mode $mode (f32, bf16, bf16c, bf16c-exp)"; res[speed]=1; continue; }
    timeout 150 "$dlp" bench --backend cuda --model "$work/$shape/model" "${adapters[@]}" "${flag[@]}" \
      --only base,single,fused3,batch32 --new-tokens 64 --rounds 3 \
      --json "$out/bench-$shape-$mode.json" >"$out/bench-$shape-$mode.log" 2>&1 || res[speed]=1
  done
  if [ "$shape" = 1b ]; then
    # Decode at long context: ~3,900 prompt tokens (7 per sentence with this tokenizer).
    long=$(python3 -c 'print("The cat sat on the mat. " * 560)')
    mode_flags "${modes[0]}" || mode_flags bf16c-exp
    timeout 150 "$dlp" bench --backend cuda --model "$work/$shape/model" "${adapters[@]}" "${flag[@]}" \
      --only base,fused3 --new-tokens 64 --rounds 2 --prompt "$long" \
      --json "$out/bench-$shape-ctx4k.json" >"$out/bench-$shape-ctx4k.log" 2>&1 || res[speed]=1
  fi
  paths=$(printf "$work/$shape/adapters/a%s," 0 1 2 3 4 5 6 7)
  timeout 150 python3 "$G/gpu/peer_gpu.py" --model "$work/$shape/model" --adapters "${paths%,}" \
    --dtype bf16 --json "$out/peer-$shape.json" >"$out/peer-$shape.log" 2>&1 || res[speed]=1
  echo; echo "== speed after $shape (dlp-run bench --backend cuda; transformers+PEFT bf16, same GPU) =="
  python3 scripts/gpu_speed_table.py "$out"
done
: "${res[speed]:=0}"
echo "speed stage (${SHAPES:-1b 7b}): $(status "${res[speed]}")"

