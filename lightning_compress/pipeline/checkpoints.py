"""What makes a stage resumable: a checkpoint at the end of each fit and the random state in every checkpoint.

Every fit of a run writes, in ``<run>/stages/<stage>/``, ``last.ckpt`` after each epoch (Lightning's
``ModelCheckpoint``) and ``done.ckpt`` when the fit ends (:class:`FitEndCheckpoint`, after every other callback's
``on_train_end``, so it holds a network pruned there and the callback's plan). A resumed run fits each stage with
:func:`resume_checkpoint`'s file: ``done.ckpt`` restores a finished fit without training, ``last.ckpt`` continues it
from the last finished epoch. :class:`RandomState` saves the Python, NumPy and torch generators in each checkpoint and
restores them, so the epochs after the resume shuffle and augment exactly as the uninterrupted run did.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from lightning_compress.loading import load_file

LAST_CHECKPOINT = "last.ckpt"
DONE_CHECKPOINT = "done.ckpt"


class FitEndCheckpoint(Checkpoint):
    """Saves ``<dirpath>/done.ckpt`` at the end of a fit that trained (Lightning runs ``Checkpoint`` callbacks'
    hooks after all others)."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.dirpath / DONE_CHECKPOINT, weights_only=False)  # with callback states


class RandomState(pl.Callback):
    """Python, NumPy and torch (CPU and CUDA) random states in every checkpoint; restored on resume."""

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(_as_tuples(state_dict["python"]))
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def resume_checkpoint(stage_dir: Path) -> Path | None:
    """The checkpoint a resumed stage starts from: ``done.ckpt`` (finished), else ``last.ckpt``, else None.

    Raises:
        LoadError: the file is unreadable (named with the config key ``resume``).
    """
    for name in (DONE_CHECKPOINT, LAST_CHECKPOINT):
        path = stage_dir / name
        if path.is_file():
            load_file(path, "resume")  # a truncated checkpoint fails here, naming itself, before anything changes
            return path
    return None


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; a checkpoint may hold lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
