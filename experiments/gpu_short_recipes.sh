#!/usr/bin/env bash
# Short GPU versions of the paper recipes that fit one short GPU session (bf16 autocast + channels-last), for when a
# GPU is at hand. NOT RUN in this repository's sessions so far (no GPU was lent): RESULTS.md says which rows ran where.
#   bash experiments/gpu_short_recipes.sh [baseline_epochs] [method_epochs]      (defaults 30 15)
# Rows: ResNet-56 baseline -> FPGM-only 40% (per conv, the authors' soft pruning) and Li et al.'s ResNet-56-B, both
# from the same baseline. The CIFAR-10 JPEG copy is read from ../shared/datasets/cifar10-jpeg (data.root=...).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-30}
METHOD=${2:-15}
PY=${PY:-.venv/bin/python}
GPU="trainer.accelerator=gpu trainer.precision=bf16-mixed module.channels_last=true trainer.enable_progress_bar=false"
$PY train.py data=cifar10 model=resnet56 trainer.max_epochs=$BASE module.scheduler.name=onecycle \
  module.optim.lr=0.1 task_name=gpu_short $GPU
baseline=$(ls -td logs/gpu_short/plain/runs/* | head -1)/stages/final/model.pt
$PY train.py +experiment=resnet56_cifar10_fpgm method.pretrained=$baseline method.compress.epochs=$METHOD \
  method.compress.scheduler='{name: cosine}' task_name=gpu_short $GPU
$PY train.py +experiment=resnet56_cifar10_l1_b method.pretrained=$baseline method.compress.epochs=$METHOD \
  task_name=gpu_short $GPU
$PY -m lightning_compress.report logs/gpu_short
