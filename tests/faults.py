"""Faults injected into real ``train.py`` subprocesses (configured as ``+callbacks.<name>={_target_: ...}``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class KillOnce(pl.Callback):
    """SIGKILLs its own process at the start of epoch ``epoch`` of the fit of ``stage`` (its checkpoint folder's
    name), once: ``marker`` (``<marker>.rank<r>`` on DDP rank r > 0, so every rank dies) is created just before, and
    a process that finds it does nothing (the resumed run)."""

    def __init__(self, stage: str, epoch: int, marker: str) -> None:
        self.stage, self.epoch, self.marker = stage, epoch, Path(marker)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        stage = Path(getattr(checkpoint, "dirpath", "") or "").name
        marker = self.marker if trainer.global_rank == 0 else Path(f"{self.marker}.rank{trainer.global_rank}")
        if stage == self.stage and trainer.current_epoch == self.epoch and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


class RaiseAt(pl.Callback):
    """Raises ``RuntimeError("injected failure")`` at the start of epoch ``epoch`` of every fit; with ``marker``
    only once (the file is created first), like a job that fails and is then requeued."""

    def __init__(self, epoch: int = 0, marker: str | None = None) -> None:
        self.epoch = epoch
        self.marker = Path(marker) if marker else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch or (self.marker is not None and self.marker.exists()):
            return
        if self.marker is not None:
            self.marker.touch()
        raise RuntimeError("injected failure")
