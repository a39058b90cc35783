#!/usr/bin/env bash
# The GPU checks of issue 29 (item 9) in one command, from the project root:
#   scripts/gpu_check.sh            # PY=.venv/bin/python by default
# 1. tests/test_gpu.py (marker `gpu`): each callback and module on CUDA with bf16-mixed: fit, reload, resume, export;
#    masks / residual="select" index buffers / sliced optimizer state / FSP matrices on the GPU; CUDA-event latency.
# 2. With 2 or more GPUs: tests/test_ddp_plain.py with its DDP harness on 2 GPUs over NCCL (both ranks identical,
#    the launching process holds the pruned network, checkpoints reload).
set -euo pipefail
PY="${PY:-.venv/bin/python}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: nothing to check")'
"$PY" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider
gpus="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$gpus" -ge 2 ]; then
  DDP_HARNESS_ACCELERATOR=gpu "$PY" -m pytest tests/test_ddp_plain.py -m "" -q -p no:cacheprovider
else
  echo "one GPU: the 2-process DDP fit over NCCL was not run"
fi
