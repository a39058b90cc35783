"""The one place that writes ``results.json`` and prints the before/after summary table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lightning_compress.pipeline.context import RunContext
from lightning_compress.profiling import hardware_summary

RESULTS_FILE = "results.json"
SECTION_ORDER = ("teacher", "baseline", "student_alone", "compressed", "final")
COLUMNS = (("test_acc", "test acc"), ("params", "params"), ("macs", "MACs"), ("flops", "FLOPs (=2xMACs)"),
           ("latency_ms", "latency ms"))


def write_results(ctx: RunContext) -> Path:
    """Write the run record with the resolved config, wall time and hardware; return its path."""
    record: dict[str, Any] = dict(ctx.record)
    record["config"] = OmegaConf.to_container(ctx.cfg, resolve=True)
    record["wall_time_s"] = round(time.time() - ctx.started, 2)
    record["hardware"] = hardware_summary()
    path = ctx.output_dir / RESULTS_FILE
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def summary_table(record: dict[str, Any]) -> str:
    """A fixed-width table of every stage section in ``record`` (rows) against accuracy and size (columns)."""
    sections = [s for s in SECTION_ORDER if isinstance(record.get(s), dict)]
    sections += [s for s, v in record.items() if isinstance(v, dict) and "test_acc" in v and s not in sections]
    header = ["stage", *(title for _, title in COLUMNS)]
    rows = [[s, *(_format(record[s].get(key)) for key, _ in COLUMNS)] for s in sections]
    if "baseline" in record and "final" in record:
        rows.append(["change", *(_change(record["baseline"].get(k), record["final"].get(k), k) for k, _ in COLUMNS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.2f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.3f}M"
    return str(value)


def _change(before: Any, after: Any, key: str) -> str:
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or not before:
        return "-"
    if key == "test_acc":
        return f"{100 * (after - before):+.2f} pt"
    return f"{100 * (after - before) / before:+.1f}%"
