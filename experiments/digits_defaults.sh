#!/usr/bin/env bash
# Issue 28's "no collapse" goal on digits: every method YAML's defaults (`python train.py +method=X`, the embedded
# digits data) at seeds 0, 1, 2, then the report (accuracy per run and mean +- spread per method). A run that ends
# at chance (0.10 on ten classes) is a collapse. Latency is not timed (latency.batch_size=0): the runs check accuracy.
#   bash experiments/digits_defaults.sh [out_dir]      # default logs/digits_defaults; ~15 runs of 5-20 s each
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-logs/digits_defaults}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for method in slimming l1_filter fpgm fsp kd; do
  for seed in 0 1 2; do
    dir=$OUT/${method}_s$seed
    if [ -f "$dir/results.json" ] && grep -q '"status": "done"' "$dir/results.json"; then continue; fi
    $PY train.py +method=$method seed=$seed threads=1 latency.batch_size=0 hydra.run.dir="$dir" > "$dir.log" 2>&1 \
      || echo "$method seed $seed failed: see $dir.log" >&2
  done
done
$PY -m lightning_compress.report "$OUT"
