"""Seconds per CIFAR-10 training epoch on this machine: compute only against the full Lightning loop.

Settings measured (ResNet-20 and ResNet-56, batch 128, 45k training images = 352 steps per epoch):

* ``compute``: forward + backward + SGD step on one preloaded, normalised batch (no loader, no augmentation).
* ``loop``: ``Trainer.fit`` on the real CIFAR-10 datamodule (loader, on-batch augmentation, logging), timed per
  training step over the second of two short epochs (the first warms up).
* ``compile``: ``compute`` with ``torch.compile`` (inductor, CPU).

Each is bf16 autocast + channels-last (``trainer=cpu module.channels_last=true``) unless ``--fp32``. Run it on a quiet
machine only::

    .venv/bin/python -m benchmarks.bench_epoch --threads 1 2 --steps 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lightning_compress.data import CIFAR10DataModule
from lightning_compress.models import resnet20, resnet56

STEPS_PER_EPOCH = 352  # ceil(45000 / 128)
MODELS = {"resnet20": resnet20, "resnet56": resnet56}


def _step_fn(net: torch.nn.Module, optimizer: torch.optim.Optimizer, bf16: bool):
    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    return step


def time_compute(name: str, steps: int, bf16: bool, compile_model: bool) -> list[float]:
    """Seconds per training step on one preloaded batch (median over ``steps`` after warm-up)."""
    torch.manual_seed(0)
    net = MODELS[name](num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model = torch.compile(net) if compile_model else net
    step = _step_fn(model, optimizer, bf16)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    for _ in range(5 if compile_model else 3):
        step(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return times


def time_loop(name: str, steps: int, bf16: bool, root: str, cache: str) -> list[float]:
    """Seconds per training step of ``Trainer.fit`` on real CIFAR-10 (second epoch of two)."""
    import pytorch_lightning as pl

    from lightning_compress.modules import ImageClassifier

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.current_epoch == 1:
                self.times.append(time.perf_counter() - self._start)

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.wall = 0.0
            self._start = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                self.wall = time.perf_counter() - self._start

    torch.manual_seed(0)
    dm = CIFAR10DataModule(root=root, cache_dir=cache, num_classes=10, in_channels=3, image_size=32,
                           batch_size=128)
    module = ImageClassifier(MODELS[name](num_classes=10), num_classes=10,
                             optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                                    "weight_decay": 5e-4}, scheduler={"name": "cosine"}, channels_last=True)
    step_timer, epoch_timer = StepTimer(), EpochTimer()
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed" if bf16 else "32-true", max_epochs=2,
                         limit_train_batches=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[step_timer, epoch_timer])
    trainer.fit(module, datamodule=dm)
    # the per-batch hooks miss the loader's fetch and the batch transfer/augmentation: use the epoch wall time
    return [epoch_timer.wall / steps]


def time_eval(name: str, bf16: bool) -> float:
    """Seconds to evaluate 5,000 validation images (batch 128) in eval mode."""
    net = MODELS[name](num_classes=10).to(memory_format=torch.channels_last).eval()
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(x)
        start = time.perf_counter()
        for _ in range(5):
            net(x)
    return (time.perf_counter() - start) / 5 * (5000 / 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--root", default="../shared/datasets/cifar10-jpeg")
    parser.add_argument("--cache", default=".cache")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bf16 = not args.fp32
    rows = []
    for name in args.models:
        for threads in args.threads:
            torch.set_num_threads(threads)
            settings = {"compute": lambda n=name: time_compute(n, args.steps, bf16, False),
                        "loop": lambda n=name: time_loop(n, args.steps, bf16, args.root, args.cache)}
            if not args.no_compile:
                settings["compile"] = lambda n=name: time_compute(n, args.steps, bf16, True)
            for setting, fn in settings.items():
                try:
                    times = fn()
                except Exception as err:  # noqa: BLE001 - report a setting that does not run, keep measuring
                    rows.append({"model": name, "threads": threads, "setting": setting, "error": str(err)[:200]})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                step = statistics.median(times)
                spread = (min(times), max(times))
                rows.append({"model": name, "threads": threads, "setting": setting, "bf16": bf16,
                             "step_ms": round(1000 * step, 1), "min_ms": round(1000 * spread[0], 1),
                             "max_ms": round(1000 * spread[1], 1),
                             "train_epoch_s": round(step * STEPS_PER_EPOCH, 1)})
                print(json.dumps(rows[-1]), flush=True)
            rows.append({"model": name, "threads": threads, "setting": "eval_5k",
                         "seconds": round(time_eval(name, bf16), 1)})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
