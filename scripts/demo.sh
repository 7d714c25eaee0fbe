#!/usr/bin/env bash
# The main job: build dlp-run, install the default model if needed, and generate with the
# base model and then with a fused mixture of LoRA adapters (the shared task adapters when
# they sit beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh
cargo build --release -q -p dlp-cli
run=target/release/dlp-run
prompt=${1:-"What is the capital of France?"}
echo "== base model =="
$run generate --chat --prompt "$prompt" --max-tokens 64
tasks=../shared/adapters/smollm2-tasks
if [ -d "$tasks" ]; then
  q="Is the following statement true or false? Paris is the capital of France."
  echo "== base model, a yes/no question =="
  $run generate --chat --prompt "$q" --max-tokens 32
  echo "== fused LoRAs: boolq 0.7 + piqa 0.3 =="
  $run generate --adapter boolq=$tasks/boolq --adapter piqa=$tasks/piqa --mix boolq=0.7,piqa=0.3 \
    --chat --prompt "$q" --max-tokens 32
fi
