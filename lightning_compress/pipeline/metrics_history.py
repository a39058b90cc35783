"""Per-epoch CSV metrics across a resume: the rows of the epochs before the resume are moved aside before the fit
(Lightning's CSV logger cannot continue a file it did not start) and put back in front after it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger

Rows = dict[Path, list[dict[str, str]]]


EARLIER = "metrics.earlier.csv"  # the rows before a resume, kept on disk until the fit has written its own


def read_earlier_rows(trainer: pl.Trainer) -> Rows:
    """The rows already written for each CSV logger, moved out of its ``metrics.csv`` before the fit.

    Lightning's CSV logger cannot append to a file whose columns it did not write (it fails rewriting the header),
    so the file is merged into ``metrics.earlier.csv`` beside it (with the rows kept there by an earlier resume that
    was itself interrupted) and removed; :func:`restore_earlier_rows` puts the rows back after the fit.
    """
    rows: Rows = {}
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "metrics.csv"
            kept = path.with_name(EARLIER)
            merged = _merged(_read(kept) if kept.is_file() else [], _read(path) if path.is_file() else [])
            if merged:
                _write(kept, merged)
                rows[path] = merged
            path.unlink(missing_ok=True)
    return rows


def restore_earlier_rows(earlier: Rows) -> None:
    """Write each file as the earlier rows of the epochs before its first new epoch, then its new rows (the
    columns are the union of both, sorted as Lightning sorts them); the kept copy is removed."""
    for path, old in earlier.items():
        _write(path, _merged(old, _read(path) if path.is_file() else []))
        path.with_name(EARLIER).unlink(missing_ok=True)


def _merged(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    """``old``'s rows of the epochs before ``new``'s first epoch, then ``new``."""
    first = min((int(row["epoch"]) for row in new if row.get("epoch")), default=None)
    return [row for row in old if first is None or (row.get("epoch") and int(row["epoch"]) < first)] + new


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    columns = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics file; values beyond its header (a file Lightning left half rewritten) are dropped."""
    with path.open(newline="") as file:
        return [{k: v for k, v in row.items() if k is not None} for row in csv.DictReader(file)]
