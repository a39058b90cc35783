"""Turn a folder of runs (a Hydra multirun, or any folder) into one table and a plot.

    python -m lightning_compress.report logs/train/slimming/multiruns/<time>

Collects every ``results.json`` below the folder (runs whose ``status`` is not ``done`` are skipped and listed) and
writes ``report.md``, ``report.csv`` and ``accuracy_vs_macs.png`` there: one row per run with the config values that
differ between runs, baseline and final accuracy, MACs and parameters, and their changes. The plot shows test
accuracy against MACs for every final model, with each run's baseline.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_compress.pipeline.results import DONE, RESULTS_FILE, run_status

REPORT_COLUMNS = ("baseline_acc", "final_acc", "delta_acc_pt", "baseline_macs", "final_macs", "macs_reduction_pct",
                  "baseline_params", "final_params", "params_reduction_pct", "final_latency_ms", "wall_time_s")


def load_runs(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``results.json`` below ``folder``, sorted by path.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no ``results.json``.
        ValueError: a ``results.json`` is not valid JSON (the file is named).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"report folder {str(folder)!r} does not exist or is not a directory.")
    runs = []
    for path in sorted(folder.rglob(RESULTS_FILE)):
        try:
            runs.append((path.parent, json.loads(path.read_text())))
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from err
    if not runs:
        raise FileNotFoundError(f"no {RESULTS_FILE} below {str(folder)!r}: expected a run or multirun folder.")
    return runs


def finished_runs(runs: list[tuple[Path, dict[str, Any]]]) -> tuple[list, list]:
    """``(done runs, runs that are not done)``: a running (or killed) or failed run has no final numbers to report."""
    done = [(folder, record) for folder, record in runs if run_status(record) == DONE]
    return done, [(folder, record) for folder, record in runs if run_status(record) != DONE]


def skipped_note(skipped: list[tuple[Path, dict[str, Any]]], root: Path) -> str:
    """A markdown line per skipped run: its folder and status (and error, when it failed)."""
    if not skipped:
        return ""
    lines = [f"\nSkipped {len(skipped)} run(s) that are not done:"]
    for folder, record in skipped:
        error = record.get("error") or {}
        reason = f": {error.get('type')}: {error.get('message')}" if error else ""
        lines.append(f"- {folder.relative_to(root) or '.'} ({run_status(record)}{reason})")
    return "\n".join(lines) + "\n"


def varying_config_keys(configs: Iterable[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose values differ between runs (what a sweep varied); folders and paths left out."""
    flat = [_flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if not k.startswith(("paths.", "hydra.")) and not k.endswith(("dir", "path"))
            and len({repr(f.get(k)) for f in flat}) > 1]


def build_rows(runs: list[tuple[Path, dict[str, Any]]], root: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Report rows (one per run) and the varying keys shown as the first columns."""
    keys = varying_config_keys(r.get("config", {}) for _, r in runs)
    rows = []
    for folder, record in runs:
        flat = _flatten(record.get("config", {}))
        base, final = record.get("baseline") or {}, record.get("final") or {}
        row: dict[str, Any] = {"run": str(folder.relative_to(root)) or ".", **{k: flat.get(k) for k in keys}}
        row.update({
            "baseline_acc": base.get("test_acc"), "final_acc": final.get("test_acc"),
            "delta_acc_pt": _diff_pt(base.get("test_acc"), final.get("test_acc")),
            "baseline_macs": base.get("macs"), "final_macs": final.get("macs"),
            "macs_reduction_pct": _reduction(base.get("macs"), final.get("macs")),
            "baseline_params": base.get("params"), "final_params": final.get("params"),
            "params_reduction_pct": _reduction(base.get("params"), final.get("params")),
            "final_latency_ms": final.get("latency_ms"), "wall_time_s": record.get("wall_time_s"),
        })
        rows.append(row)
    return keys, rows


def write_report(folder: Path) -> dict[str, Path]:
    """Write the markdown table, the CSV and the plot into ``folder``; return their paths."""
    runs, skipped = finished_runs(load_runs(folder))
    if not runs:
        raise FileNotFoundError(f"no finished run below {str(folder)!r}:{skipped_note(skipped, folder)}")
    keys, rows = build_rows(runs, folder)
    columns = ["run", *keys, *REPORT_COLUMNS]
    csv_path, md_path = folder / "report.csv", folder / "report.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(_markdown(columns, rows) + skipped_note(skipped, folder))
    return {"csv": csv_path, "markdown": md_path, "plot": _plot(rows, folder / "accuracy_vs_macs.png", keys)}


def _markdown(columns: list[str], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c), c) for c in columns) + " |" for row in rows]
    note = "\nMACs: multiply-accumulates of conv + linear layers per image (FLOPs = 2 x MACs).\n"
    return "\n".join(lines) + "\n" + note


def _plot(rows: list[dict[str, Any]], path: Path, keys: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    base = [(r["baseline_macs"], r["baseline_acc"]) for r in rows if r["baseline_macs"] and r["baseline_acc"]]
    if base:
        ax.scatter([m / 1e6 for m, _ in base], [a for _, a in base], marker="*", s=120, c="k", label="baseline")
    final = [r for r in rows if r["final_macs"] and r["final_acc"] is not None]
    ax.scatter([r["final_macs"] / 1e6 for r in final], [r["final_acc"] for r in final], label="compressed")
    for r in final:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in keys) or r["run"]
        ax.annotate(label, (r["final_macs"] / 1e6, r["final_acc"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("MACs (M) per image")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _reduction(before: Any, after: Any) -> float | None:
    return round(100 * (1 - after / before), 2) if before and after is not None else None


def _diff_pt(before: Any, after: Any) -> float | None:
    return round(100 * (after - before), 2) if before is not None and after is not None else None


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and column.endswith(("_pt", "_pct", "_ms", "_s")):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m lightning_compress.report <folder>``."""
    parser = argparse.ArgumentParser(prog="python -m lightning_compress.report", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a run or multirun folder holding results.json files")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.folder)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(paths["markdown"].read_text())
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


if __name__ == "__main__":
    main()
