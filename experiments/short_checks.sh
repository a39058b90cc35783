#!/usr/bin/env bash
# Short CIFAR-10 checks that each fixed recipe does its paper's thing before the long rows run (issue 27):
# a quick ResNet-20 baseline on a quarter of each epoch, then each method's CPU recipe from it, shortened the same way
# (Slimming's s scaled up by the steps it loses, so its L1 push is the recipe's). Not a result table: the numbers show
# the mechanisms (small scales before the cut, selections changing, accuracy right after the cut with and without BN
# recalibration, KD retraining against plain).  Usage: bash experiments/short_checks.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-logs/short_checks}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SHORT=(+trainer.limit_train_batches=0.25 latency.batch_size=0 threads=1)
run() { local name=$1; shift; [ -f "$OUT/$name/results.json" ] && grep -q '"status": "done"' "$OUT/$name/results.json" && return 0
        $PY train.py "$@" "${SHORT[@]}" hydra.run.dir="$OUT/$name" > "$OUT/$name.log" 2>&1; }
mkdir -p "$OUT"
run base +experiment=cifar10_cpu data=cifar10 model=resnet20 trainer.max_epochs=6
BASE="$OUT/base/stages/final/model.pt"
# Slimming: 3 sparsity epochs of 88 steps (the recipe: 10 of 352): s x 13 keeps the recipe's L1 push
run slim +experiment=resnet20_cifar10_slimming_cpu method.pretrained="$BASE" method.compress.epochs=3 \
    method.finetune.epochs=2 method.callback.sparsity_lambda=1.3e-2
run fpgm +experiment=resnet20_cifar10_fpgm_cpu method.pretrained="$BASE" method.compress.epochs=3
run l1 +experiment=resnet20_cifar10_l1_cpu method.pretrained="$BASE" method.finetune.epochs=2
run l1_kd +experiment=resnet20_cifar10_l1_cpu method.pretrained="$BASE" method.finetune.epochs=2 \
    method.finetune.distill=kd
