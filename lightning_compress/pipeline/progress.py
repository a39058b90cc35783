"""Output a person reads in a log file: one line per epoch where a terminal would show a progress bar, and each of
Lightning's notices once per process instead of once per Trainer (its advertising tips not at all)."""

from __future__ import annotations

import logging
import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger("lightning_compress")

# Lightning's per-Trainer notices go through this logger (``rank_zero_info``).
LIGHTNING_NOTICES = "pytorch_lightning.utilities.rank_zero"
# Epoch-level metrics shown first, in this order; any other epoch-level scalar follows.
FIRST_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")


def interactive() -> bool:
    """Whether standard output is a terminal (Lightning's progress bar writes to it)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class EpochLine(pl.Callback):
    """Logs ``[stage] epoch 3/10  train/loss 0.1234  val/acc 0.9611  (2.1 s)`` at the end of every training epoch
    (rank 0; the logger ``lightning_compress``, so it reaches the console and the run's log file)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info(format_epoch_line(self.stage, trainer.current_epoch, trainer.max_epochs,
                                   {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
                                   time.perf_counter() - self._started))


def format_epoch_line(stage: str, epoch: int, max_epochs: int | None, metrics: dict[str, float],
                      seconds: float) -> str:
    """One epoch as one line: its number, the epoch-level metrics (step-level ones left out) and its duration."""
    names = [n for n in FIRST_METRICS if n in metrics]
    names += sorted(n for n in metrics if n not in names and not n.endswith("_step")
                    and not (n.endswith("_epoch") and n.removesuffix("_epoch") in metrics))
    values = "  ".join(f"{n.removesuffix('_epoch')} {metrics[n]:.4f}" for n in names)
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    return f"[{stage}] epoch {epoch + 1}{total}  {values}  ({seconds:.1f} s)"


# Notices every new Trainer repeats (device summary): shown once per process.
REPEATED_NOTICES = ("GPU available:", "TPU available:", "HPU available:", "IPU available:", "LOCAL_RANK:")


class OncePerProcess(logging.Filter):
    """Lets each of Lightning's per-Trainer device notices through once; drops its "Tip:" advertisements; leaves
    every other message alone."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Tip: " in message[:8]:
            return False
        if not message.startswith(REPEATED_NOTICES):
            return True
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def quiet_lightning_notices() -> None:
    """Install :class:`OncePerProcess` on Lightning's notice logger (idempotent)."""
    logger = logging.getLogger(LIGHTNING_NOTICES)
    if not any(isinstance(f, OncePerProcess) for f in logger.filters):
        logger.addFilter(OncePerProcess())
