"""The one place that writes ``results.json`` (and reads it back to resume) and prints the summary table.

``results.json`` is written when a run starts (``status: running``), when it fails (``failed``, with the error) and
when it ends (``done``); a run killed from outside stays ``running``. Only rank 0 writes, and every write replaces
the file atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from pytorch_lightning.utilities import rank_zero_only

import lightning_compress
from lightning_compress.cost import hardware_summary
from lightning_compress.loading import LoadError, load_file
from lightning_compress.pipeline.context import RunContext

RESULTS_FILE = "results.json"
RUNNING, FAILED, DONE = "running", "failed", "done"
STATUSES = (RUNNING, FAILED, DONE)
SECTION_ORDER = ("teacher", "baseline", "student_alone", "student_equal_compute", "compressed", "final")
NOT_RUN = "not run"  # the ``status`` of a stage section that did not run (0 epochs): it has no ``test_acc``
COLUMNS = (("test_acc", "test acc"), ("params", "params"), ("macs", "MACs"), ("flops", "FLOPs (=2xMACs)"),
           ("latency_ms", "latency ms"))
PRE_FINETUNE_NOTE = ("* compressed: the network at the end of the compression fit, before the fine-tune stage; when "
                     "the method removes channels at the end of that fit (Network Slimming, FPGM) its accuracy can "
                     "be near chance until the fine-tune recovers it.")


def write_results(ctx: RunContext, status: str = DONE, error: BaseException | None = None) -> Path:
    """Write the run record with its ``status``, the resolved config, wall time and hardware; return its path."""
    if status not in STATUSES:
        raise ValueError(f"`status` must be one of {STATUSES}, got {status!r}.")
    record: dict[str, Any] = dict(ctx.record)
    record["status"] = status
    if error is not None:
        record["error"] = {"type": type(error).__name__, "message": str(error)}
    record["config"] = OmegaConf.to_container(ctx.cfg, resolve=True)
    record["wall_time_s"] = round(time.time() - ctx.started, 2)
    record["hardware"] = hardware_summary()
    record["code"] = code_version()
    path = ctx.output_dir / RESULTS_FILE
    if rank_zero_only.rank == 0:
        temporary = path.with_name(f".{RESULTS_FILE}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=2, default=str) + "\n")
        temporary.replace(path)
    return path


def code_version() -> dict[str, Any]:
    """Which code wrote a record: the package version and, when the package is a git checkout's own folder (not a
    copy installed elsewhere), that checkout's commit and whether the package's tracked files differ from it."""
    return {"version": lightning_compress.__version__,
            **_checkout_state(Path(lightning_compress.__file__).resolve().parent)}


@functools.cache
def _checkout_state(package_dir: Path) -> dict[str, Any]:
    """``commit`` and ``modified`` of the checkout whose top folder holds ``package_dir`` (``None`` otherwise); asked
    once per process: the code a process imported does not change while it runs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != package_dir.parent:
            return {"commit": None, "modified": None}  # installed (e.g. in a venv inside some other checkout)
        return {"commit": git("rev-parse", "HEAD"),
                "modified": bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": None}


def read_results(run_dir: str | Path, key: str = "resume") -> dict[str, Any]:
    """The record in ``<run_dir>/results.json`` (``key``: the config key that named the folder).

    Raises:
        LoadError: the folder does not exist, holds no ``results.json`` or an unreadable one (file and key named).
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise LoadError(f"`{key}`={str(run_dir)!r} is not a folder; expected a run folder of train.py "
                        "(logs/<task>/<method>/runs/<time>).", run_dir, key)
    record = load_file(folder / RESULTS_FILE, key)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise LoadError(f"`{key}`={str(folder / RESULTS_FILE)!r} is not a run record of train.py (no `config`).",
                        folder / RESULTS_FILE, key)
    return record


def run_status(record: dict[str, Any]) -> str:
    """``running``, ``failed`` or ``done`` (records written before statuses existed were only written when done)."""
    return str(record.get("status", DONE))


def summary_table(record: dict[str, Any]) -> str:
    """A fixed-width table: one row per stage section of ``record`` (named and described) against accuracy and size,
    a ``change`` row (final vs baseline; sizes as "% fewer") and a note explaining a pre-fine-tune row."""
    sections = [s for s in SECTION_ORDER if isinstance(record.get(s), dict)]
    sections += [s for s, v in record.items() if isinstance(v, dict) and "test_acc" in v and s not in sections]
    labels = _stage_labels(record)
    header = ["stage", "", *(title for _, title in COLUMNS)]
    rows = [[s, _not_run(record[s]) or labels.get(s, ""), *(_cell(record[s], key) for key, _ in COLUMNS)]
            for s in sections]
    if "baseline" in record and "final" in record:
        rows.append(["change", "final vs baseline",
                     *(_change(record["baseline"].get(k), record["final"].get(k), k) for k, _ in COLUMNS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_line(r, widths) for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    if "compressed" in sections and "final" in sections:
        lines.append(PRE_FINETUNE_NOTE)
    lines += cut_notes(record.get("compressed") or {})
    lines += speed_notes(record.get("latency") or {})
    return "\n".join(lines)


def cut_notes(entry: dict[str, Any]) -> list[str]:
    """Lines on what a pruning callback saw at its cut (sparsity before it, BN recalibration, dead channels)."""
    notes = []
    sparsity = entry.get("sparsity")
    if sparsity:
        notes.append(f"sparsity training: {100 * sparsity['frac_below_small_gamma']:.1f}% of the BN scales ended "
                     f"below {sparsity['small_gamma']:g}; the cut removed {100 * sparsity['cut_fraction']:.1f}% of "
                     "the prunable channels")
    recal = entry.get("bn_recalibration")
    if recal:
        notes.append(f"right after the cut: test acc {recal['test_acc_after']:.4f} with BN statistics re-estimated on "
                     f"{recal['batches']} training batches, {recal['test_acc_before']:.4f} without")
    for name, counts in (entry.get("dead_channels") or {}).items():
        notes.append(f"dead after the cut: {name} ({counts['dead']} of {counts['kept']} kept channels output zero)")
    return notes


def speed_notes(latency: dict[str, Any]) -> list[str]:
    """One line per timed model: its realised speed-up against the reference, the verdict, and the ratio to the
    speed-up its MACs promise (flagged below the target)."""
    notes = []
    for name, change in (latency.get("changes") or {}).items():
        line = f"speed: {name} {change['speedup']:.2f}x against {latency.get('reference')} ({change['verdict']})"
        ratio = change.get("speed_ratio")
        if ratio:
            line += (f"; MACs promise {ratio['macs_speedup']:.2f}x, realised/MACs {ratio['ratio']:.2f}"
                     + (f" (below {ratio['target']:g})" if ratio["below_target"] else ""))
        notes.append(line)
    return notes


def _not_run(entry: dict[str, Any]) -> str:
    """``"not run (<why>)"`` for a stage that trained nothing, else ``""``."""
    if entry.get("status") != NOT_RUN:
        return ""
    return f"not run ({entry.get('reason') or str(entry.get('epochs', 0)) + ' epochs'})"


def _cell(entry: dict[str, Any], key: str) -> str:
    if key == "test_acc" and entry.get("status") == NOT_RUN:
        return "not run"
    return _format(entry.get(key))


def _stage_labels(record: dict[str, Any]) -> dict[str, str]:
    if "distillation" in record or "student_alone" in record:
        return {"teacher": "teacher network", "student_alone": "student trained alone (no distillation)",
                "student_equal_compute": "student alone, as many epochs as distillation",
                "final": "student after distillation"}
    if "compressed" in record or "baseline" in record:
        return {"baseline": "trained, before compression", "compressed": "compressed, before fine-tune *",
                "final": "after fine-tune"}
    return {"final": "trained network"}


def _line(row: list[str], widths: list[int]) -> str:
    return "  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.2f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.3f}M"
    return str(value)


def _change(before: Any, after: Any, key: str) -> str:
    """Accuracy in points; sizes and latency in the project's one convention: "% fewer" (or "% more")."""
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or not before:
        return "-"
    if key == "test_acc":
        return f"{100 * (after - before):+.2f} pt"
    return reduction_text(before, after)


def reduction_text(before: float, after: float) -> str:
    """``"45.2% fewer"`` (or ``"3.0% more"``): how much smaller ``after`` is than ``before``."""
    fewer = 100.0 * (1.0 - after / before)
    return f"{fewer:.1f}% fewer" if fewer >= 0 else f"{-fewer:.1f}% more"
