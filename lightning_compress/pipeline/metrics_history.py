"""Per-epoch CSV metrics across a resume: Lightning's CSV logger deletes a stage's ``metrics.csv`` when a resumed fit
starts writing it again; the rows of the epochs before the resume are read first and put back in front."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

Rows = dict[Path, list[dict[str, str]]]


def read_earlier_rows(trainer: pl.Trainer) -> Rows:
    """The rows already in each CSV logger's ``metrics.csv`` (read before the fit, which deletes them)."""
    rows: Rows = {}
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "metrics.csv"
            if path.is_file():
                rows[path] = _read(path)
    return rows


def restore_earlier_rows(earlier: Rows) -> None:
    """Write each file as the earlier rows of the epochs before its first new epoch, then its new rows (the
    columns are the union of both, sorted as Lightning sorts them)."""
    for path, old in earlier.items():
        new = _read(path) if path.is_file() else []
        first = min((int(row["epoch"]) for row in new if row.get("epoch")), default=None)
        kept = [row for row in old if first is None or (row.get("epoch") and int(row["epoch"]) < first)]
        columns = sorted({key for row in (*kept, *new) for key in row})
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows([*kept, *new])


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))
