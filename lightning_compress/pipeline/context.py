"""What every stage of a run shares: the config, the data, the output folder, the run record and resume state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from lightning_compress.pipeline.checkpoints import resume_checkpoint


@dataclass
class RunContext:
    """One run of ``train.py``: stages read ``cfg`` and ``datamodule`` and add their numbers to ``record``.

    ``record`` becomes ``results.json``: sections such as ``baseline``, ``final`` (and ``teacher``,
    ``student_alone`` for distillation), each a flat dict of ``test_acc``, ``params``, ``macs``, ``flops``,
    ``latency_ms`` and the path of the saved model, plus ``status`` (``running``, ``failed``, ``done``).

    ``resuming``: the run continues an interrupted one in ``output_dir``; every fit then starts from its stage's
    checkpoint (:meth:`checkpoint_to_resume`).
    """

    cfg: DictConfig
    datamodule: pl.LightningDataModule
    output_dir: Path
    record: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    resuming: bool = False

    def stage_dir(self, name: str) -> Path:
        """Folder of one stage's checkpoints and saved model (created on demand)."""
        path = self.output_dir / "stages" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_to_resume(self, stage: str) -> str | None:
        """The checkpoint the fit of ``stage`` continues from when resuming (None: start it afresh)."""
        if not self.resuming:
            return None
        path = resume_checkpoint(self.output_dir / "stages" / stage)
        return None if path is None else str(path)
