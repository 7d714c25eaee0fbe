#!/usr/bin/env bash
# DLP-LoRA's extensibility claim, measured: a router trained on 7 of the 14 tasks (one per
# family where possible) is extended with the other 7, once all at once and once one task at a
# time, and compared on the dev splits of all 14 with a router trained from scratch on all 14,
# in the same run. Prints one table (top-1, family top-1, top-p containment, adapters per
# mixture, seconds). Needs ../shared/data/tasks (or DATA=...) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${DLP_RUN:-target/release/dlp-run}
D=${DATA:-../shared/data/tasks}
out=${OUT:-$(mktemp -d)}
base=(boolq piqa social_iqa winogrande arc_easy aqua gsm8k)
new=(arc_challenge openbookqa addsub multiarith singleeq svamp mawps)
dirs() { for t in "$@"; do printf '%s\n' "$D/$t"; done; }
secs() { local t0=$1; python3 -c "import time; print(f'{time.time() - $t0:.1f}')"; }
now() { python3 -c 'import time; print(time.time())'; }
declare -A took
t=$(now); "$run" train-router --data $(dirs "${base[@]}" "${new[@]}") --out "$out/scratch14" --quiet --overwrite >/dev/null; took[scratch14]=$(secs "$t")
t=$(now); "$run" train-router --data $(dirs "${base[@]}") --out "$out/base7" --quiet --overwrite >/dev/null; took[base7]=$(secs "$t")
t=$(now); "$run" train-router --extend "$out/base7" --data $(dirs "${new[@]}") --out "$out/all-at-once" --quiet --overwrite >/dev/null; took[all-at-once]=$(secs "$t")
prev=$out/base7 each=()
for n in "${new[@]}"; do
  t=$(now); "$run" train-router --extend "$prev" --data "$D/$n" --out "$out/chain-$n" --quiet --overwrite >/dev/null; each+=("$(secs "$t")")
  prev=$out/chain-$n
done
took[one-at-a-time]="${each[*]}"
printf '\n%-16s %7s %9s %12s %9s  %s\n' router top-1 family containment adapters "seconds (per training)"
for r in scratch14 all-at-once one-at-a-time; do
  dir=$out/$r; [ "$r" = one-at-a-time ] && dir=$prev
  "$run" eval-router --router "$dir" --data "$D" --json "$out/$r.json" >/dev/null
  python3 - "$out/$r.json" "$r" "${took[$r]}" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<16} {100*m['top1']:6.1f}% {100*m['family_top1']:8.1f}% {100*m['topp_containment']:11.1f}% {m['mean_adapters']:9.2f}  {sys.argv[3]}")
PY
done
echo "(base router on 7 tasks: ${took[base7]} s; dev splits of all 14 tasks; p = 0.9; routers in $out)"
