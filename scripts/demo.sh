#!/usr/bin/env bash
# The main job: build dlp-run, install the default model if needed, and generate with the
# base model, then with a fused mixture of LoRA adapters, then with the DLP router choosing
# the mixture of every sentence (the shared task adapters and data, when they sit beside the
# checkout; the router is trained once, about 35 s on 2 cores, into routers/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh
run=${CARGO_TARGET_DIR:-target}/release/dlp-run
[ -x "$run" ] || echo "building dlp-run (release; the first build takes about 8 minutes on 2 cores; cargo shows its progress)..."
cargo build --release -p dlp-cli
prompt=${1:-"What is the capital of France?"}
echo "== base model =="
$run generate --chat --prompt "$prompt" --max-tokens 64
tasks=../shared/adapters/smollm2-tasks
if [ ! -d "$tasks" ]; then
  cat <<'EOF'

(Skipped: the fused-adapter and router parts of this demo. They use the task adapters and
data of ../shared (adapters/smollm2-tasks, data/tasks), which are not beside this checkout.
Put that folder next to the checkout and run scripts/demo.sh again for the full demo; or load
your own PEFT adapters: dlp-run generate --adapter NAME=DIR --mix NAME=1 --chat --prompt ...)
EOF
fi
if [ -d "$tasks" ]; then
  q="Please answer with true or false: is Paris the capital of France?"
  echo "== base model, a yes/no question =="
  $run generate --chat --prompt "$q" --max-tokens 32
  echo "== fused LoRAs: boolq 0.7 + piqa 0.3 =="
  $run generate --adapter boolq=$tasks/boolq --adapter piqa=$tasks/piqa --mix boolq=0.7,piqa=0.3 \
    --chat --prompt "$q" --max-tokens 32
  data=../shared/data/tasks
  if [ ! -d "$data" ]; then
    echo "(Skipped: routing by sentence, which trains a router on ../shared/data/tasks; that folder is missing.)"
  fi
  if [ -d "$data" ]; then
    names=() adapters=() dirs=()
    for d in "$tasks"/*/; do
      t=$(basename "$d")
      [ -d "$data/$t" ] || continue
      names+=("$t") adapters+=(--adapter "$t=$tasks/$t") dirs+=("$data/$t")
    done
    router=routers/smollm2-tasks
    if [ ! -f "$router/router.json" ]; then
      echo "== training the router on ${names[*]} =="
      $run train-router --data "${dirs[@]}" --out "$router"
    fi
    echo "== routed by sentence: each sentence gets its own mixture (decisions on stderr) =="
    $run generate "${adapters[@]}" --router "$router" --route-by sentence --show-routing \
      --chat --max-tokens 64 --prompt "Please answer with true or false: do cows have to be pregnant to produce milk? Natalia sold 48 clips in April and half as many in May. How many clips did she sell in total?"
  fi
fi
