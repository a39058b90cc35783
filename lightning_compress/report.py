"""Turn a folder of runs (a Hydra multirun, or any folder) into one table and a plot.

    python -m lightning_compress.report logs/train/slimming/multiruns/<time>

Collects every ``results.json`` below the folder (runs whose ``status`` is not ``done`` are skipped and listed) and
writes ``report.md``, ``report.csv`` and ``accuracy_vs_cost.png`` there: one row per run with the config values that
differ between runs, baseline and final accuracy, MACs, parameters and measured latency, and their changes. The plot
has two panels: test accuracy against MACs and against measured latency (median with inter-quartile bars, from the
run's interleaved before/after comparison), for every final model, with each run's baseline. The ``role`` column
and the plot's markers tell compressed models from controls (``random_widths``, ``scratch_widths``) and from plain
training runs.

When more config keys differ than ``--max-keys`` (a folder of unrelated rows, e.g. ``experiments/results``), the
config columns are left out and runs are named by their folder, in the tables and the plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_compress.cost import SPEED_RATIO_TARGET, speed_ratio
from lightning_compress.pipeline.results import DONE, RESULTS_FILE, run_status

REPORT_COLUMNS = ("role", "baseline_acc", "final_acc", "delta_acc_pt", "baseline_macs", "final_macs",
                  "macs_reduction_pct", "baseline_params", "final_params", "params_reduction_pct",
                  "baseline_latency_ms", "final_latency_ms", "latency_speedup", "latency_verdict",
                  "latency_per_macs_speedup", "speed_flag", "latency_setting", "wall_time_s")
# distillation runs: the teacher is the reference network (baseline_*), the students trained alone are the controls
DISTILL_COLUMNS = ("student_alone_acc", "gain_vs_student_alone_pt", "student_equal_compute_acc",
                   "gain_vs_equal_compute_pt")
PLOT_FILE = "accuracy_vs_cost.png"
CONTROL_METHODS = ("random_widths", "scratch_widths")  # conf/method: the controls a method must beat
MAX_KEYS = 6  # more varying config keys than this: runs are named by folder instead


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


EXECUTION_KEYS = ("threads", "resume")  # how a run was executed, not what it computes


def varying_config_keys(configs: Iterable[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose values differ between runs (what a sweep varied); folders, paths, data roots and the
    :data:`EXECUTION_KEYS` left out (a run resumed, run with other intra-op threads, or reading the same data set from
    another folder, is the same recipe)."""
    flat = [_flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if not k.startswith(("paths.", "hydra.")) and not k.endswith(("dir", "path", "root"))
            and k not in EXECUTION_KEYS and len({repr(f.get(k)) for f in flat}) > 1]


def build_rows(runs: list[tuple[Path, dict[str, Any]]], root: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Report rows (one per run) and the varying keys shown as the first columns."""
    keys = varying_config_keys(r.get("config", {}) for _, r in runs)
    rows = []
    for folder, record in runs:
        flat = _flatten(record.get("config", {}))
        base, final = _reference(record), record.get("final") or {}
        row: dict[str, Any] = {"run": str(folder.relative_to(root)) or ".", **{k: flat.get(k) for k in keys},
                               "role": run_role(record)}
        row.update({
            "baseline_acc": base.get("test_acc"), "final_acc": final.get("test_acc"),
            "delta_acc_pt": _diff_pt(base.get("test_acc"), final.get("test_acc")),
            "baseline_macs": base.get("macs"), "final_macs": final.get("macs"),
            "macs_reduction_pct": _reduction(base.get("macs"), final.get("macs")),
            "baseline_params": base.get("params"), "final_params": final.get("params"),
            "params_reduction_pct": _reduction(base.get("params"), final.get("params")),
            "wall_time_s": record.get("wall_time_s"),
        })
        row.update(_latency_columns(record, base, final))
        if "student_alone" in record:
            row.update(_distill_columns(record, final))
        rows.append(row)
    return keys, rows


def run_role(record: dict[str, Any]) -> str:
    """``baseline`` (a plain training run: no baseline or teacher to compare with), ``control`` (random channels or
    Scratch-B at a method's widths, ``CONTROL_METHODS``) or ``method``."""
    if not (record.get("baseline") or record.get("teacher")):
        return "baseline"
    method = (record.get("config") or {}).get("method") or {}
    return "control" if method.get("name") in CONTROL_METHODS else "method"


def _reference(record: dict[str, Any]) -> dict[str, Any]:
    """The network a run compresses: ``baseline`` (pruning) or ``teacher`` (distillation); ``{}`` when it did not run
    (a stage that trained nothing has no accuracy to compare with)."""
    entry = record.get("baseline") or record.get("teacher") or {}
    return entry if entry.get("status") != "not run" else {k: v for k, v in entry.items() if k != "test_acc"}


def _distill_columns(record: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of the students trained without a teacher (``-`` where that stage did not run) and the gains."""
    columns: dict[str, Any] = {}
    for section in ("student_alone", "student_equal_compute"):
        entry = record.get(section) or {}
        if entry.get("same_as"):
            entry = record.get(entry["same_as"]) or {}
        acc = entry.get("test_acc") if entry.get("status") != "not run" else None
        columns[f"{section}_acc"] = acc
        gain = "gain_vs_student_alone_pt" if section == "student_alone" else "gain_vs_equal_compute_pt"
        columns[gain] = _diff_pt(acc, final.get("test_acc"))
    return columns


SEED_KEY = "seed"
_NUMERIC = ("baseline_acc", "final_acc", "delta_acc_pt", "macs_reduction_pct", "params_reduction_pct",
            "baseline_latency_ms", "final_latency_ms", "latency_speedup", "wall_time_s", "student_alone_acc",
            "gain_vs_student_alone_pt", "student_equal_compute_acc", "gain_vs_equal_compute_pt")
SEED_CSV = "report_seeds.csv"


def group_by_seed(keys: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of runs that differ only in ``seed``, merged: ``n``, the seeds, and for every numeric column the mean and
    the spread (half the range, so ``mean +- spread`` covers every seed). Groups of one run are kept as they are. A
    string value that names the run's own seed as ``_s<seed>`` (a per-seed baseline or reference path, e.g.
    ``resnet20_s1.pt``) counts as the same setting for every seed, unless runs of other seeds share that very value
    (one file for every seed, e.g. a teacher ``resnet26_s0.pt``): then it is compared as it is."""
    others = [k for k in keys if k != SEED_KEY]
    seeds_of: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        for k in others:
            seeds_of.setdefault((k, repr(row.get(k))), set()).add(repr(row.get(SEED_KEY)))

    def setting(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if len(seeds_of[(key, repr(value))]) > 1:  # shared by several seeds: not a per-seed value
            return repr(value)
        return _seed_free(value, row.get(SEED_KEY))

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(setting(row, k) for k in others), []).append(row)
    merged = []
    for members in groups.values():
        out: dict[str, Any] = {k: members[0].get(k) for k in others}
        out["n"] = len(members)
        out["seeds"] = ",".join(str(m.get(SEED_KEY)) for m in members)
        out["runs"] = ", ".join(str(m["run"]) for m in members)
        for column in _NUMERIC:
            values = [float(m[column]) for m in members if isinstance(m.get(column), (int, float))]
            out[column] = sum(values) / len(values) if values else None
            out[f"{column}_spread"] = (max(values) - min(values)) / 2 if len(values) > 1 else None
        merged.append(out)
    return merged


def _seed_free(value: Any, seed: Any) -> str:
    """``repr(value)`` with the run's own ``_s<seed>`` tokens of a string made seed-free."""
    if isinstance(value, str) and seed is not None:
        value = re.sub(rf"_s{re.escape(str(seed))}(?![0-9])", "_s<seed>", value)
    return repr(value)


def _seed_table(keys: list[str], rows: list[dict[str, Any]], shown: list[str] | None = None,
                csv_path: Path | None = None) -> str:
    """The markdown of :func:`group_by_seed` (empty when no two runs differ only in seed); only the ``shown`` keys
    (default: all) get columns, and the merged runs are named. With ``csv_path`` the merged rows (means and spreads)
    are written there as well."""
    if SEED_KEY not in keys:
        return ""
    merged = group_by_seed(keys, rows)
    if all(m["n"] == 1 for m in merged):
        return ""
    others = [k for k in (keys if shown is None else shown) if k != SEED_KEY]
    if csv_path is not None:
        fields = [*others, "runs", "n", "seeds", *(f for c in _NUMERIC for f in (c, f"{c}_spread"))]
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(merged)
    numeric = [c for c in _NUMERIC if any(m.get(c) is not None for m in merged)]
    header = [*others, "runs", "n", "seeds", *numeric]
    title = "Runs that differ only in `seed` (or not at all: reruns), merged: mean +- half the range over the runs."
    lines = ["", title, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in merged:
        cells = [str(m.get(k)) for k in [*others, "runs", "n", "seeds"]]
        for column in numeric:
            value, spread = m[column], m[f"{column}_spread"]
            cells.append("-" if value is None else f"{value:.4g}" + (f" +- {spread:.2g}" if spread else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latency_columns(record: dict[str, Any], base: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Latency medians and quartiles of baseline and final, and the final model's change against the reference of
    the run's interleaved comparison (``record["latency"]``; runs written before it have medians only)."""
    change = ((record.get("latency") or {}).get("changes") or {}).get("final") or {}
    setting = None
    if final.get("latency_batch_size"):
        setting = (f"batch {final['latency_batch_size']}, {final.get('latency_device')}, "
                   f"{final.get('latency_threads')} threads")
    columns = {"baseline_latency_ms": base.get("latency_ms"), "final_latency_ms": final.get("latency_ms"),
               "latency_speedup": change.get("speedup"), "latency_verdict": change.get("verdict"),
               "latency_setting": setting}
    for section, data in (("baseline", base), ("final", final)):
        columns[f"{section}_latency_quartiles"] = (data.get("latency_q1_ms"), data.get("latency_q3_ms"))
    if base.get("macs") and final.get("macs") and change.get("speedup"):  # realised / MACs speedup, flagged if low
        ratio = speed_ratio(base["macs"] / final["macs"], change["speedup"])
        columns["latency_per_macs_speedup"] = ratio.ratio
        columns["speed_flag"] = f"< {SPEED_RATIO_TARGET}" if ratio.below_target else "ok"
    return columns


def write_report(folder: Path, max_keys: int = MAX_KEYS) -> dict[str, Path]:
    """Write the markdown table, the CSV and the plot into ``folder``; return their paths. With more than
    ``max_keys`` varying config keys, runs are shown by folder name only."""
    if max_keys < 0:
        raise ValueError(f"`max_keys` must be >= 0, got {max_keys}.")
    runs, skipped = finished_runs(load_runs(folder))
    if not runs:
        raise FileNotFoundError(f"no finished run below {str(folder)!r}:{skipped_note(skipped, folder)}")
    all_keys, rows = build_rows(runs, folder)
    keys = all_keys if len(all_keys) <= max_keys else []
    distill = [c for c in DISTILL_COLUMNS if any(c in row for row in rows)]
    columns = ["run", *keys, *REPORT_COLUMNS, *distill]
    csv_path, md_path = folder / "report.csv", folder / "report.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    named = ""
    if len(all_keys) > max_keys:
        named = (f"\n{len(all_keys)} config keys differ between these runs (more than {max_keys}): runs are named by "
                 "folder; each run's config is in its results.json.\n")
    seeds_path = folder / SEED_CSV
    seeds = _seed_table(all_keys, rows, shown=keys, csv_path=seeds_path)
    md_path.write_text(_markdown(columns, rows) + named + seeds + skipped_note(skipped, folder))
    paths = {"csv": csv_path, "markdown": md_path}
    if seeds:
        paths["seeds_csv"] = seeds_path
    merged = group_by_seed(all_keys, rows) if seeds else []
    paths["plot"] = _plot(rows, folder / PLOT_FILE, keys, merged)
    return paths


def _markdown(columns: list[str], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c), c) for c in columns) + " |" for row in rows]
    note = ("\nMACs: multiply-accumulates of conv + linear layers per image (FLOPs = 2 x MACs). Latency: median ms "
            "of one forward pass, baseline and final timed interleaved in one process; `latency_verdict` says faster "
            "or slower only when their inter-quartile ranges separate. `latency_per_macs_speedup`: realised speedup / "
            f"MACs speedup; `speed_flag` marks it below {SPEED_RATIO_TARGET} (MACs saved but not time).\n")
    settings = {row.get("latency_setting") for row in rows if row.get("latency_setting")}
    if len(settings) > 1:
        note += (f"\nWarning: latency was measured with different settings ({'; '.join(sorted(settings))}): compare "
                 "latencies only within one setting.\n")
    return "\n".join(lines) + "\n" + note


def _plot(rows: list[dict[str, Any]], path: Path, keys: list[str], merged: list[dict[str, Any]] = ()) -> Path:
    """Two panels: accuracy against MACs and against measured latency (median, IQR bars); with ``merged`` seed groups,
    each setting's mean accuracy with its spread over the seeds as vertical bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_macs, ax_latency) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    _scatter(ax_macs, rows, keys, "macs", scale=1e6)
    _seed_means(ax_macs, merged)
    ax_macs.set_xlabel("MACs (M) per image")
    ax_macs.set_ylabel("test accuracy")
    if _scatter(ax_latency, rows, keys, "latency_ms", scale=1.0):
        settings = sorted({r["latency_setting"] for r in rows if r.get("latency_setting")})
        setting = settings[0] if len(settings) == 1 else "mixed settings"
        ax_latency.set_xlabel(f"latency ms ({setting}; median, IQR bars)")
    else:
        ax_latency.text(0.5, 0.5, "no latency measured\n(latency.batch_size=0)", ha="center", va="center",
                        transform=ax_latency.transAxes)
        ax_latency.set_xlabel("latency ms")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


BASELINE_STYLE = {"marker": "*", "s": 120, "c": "k"}
FINAL_STYLES = {"method": ("compressed", {}),
                "control": ("control (random / Scratch-B)", {"marker": "^", "facecolors": "none",
                                                             "edgecolors": "tab:orange"}),
                "baseline": ("baseline", BASELINE_STYLE)}  # a plain training run: its model is a baseline


def _scatter(ax: Any, rows: list[dict[str, Any]], keys: list[str], metric: str, scale: float) -> bool:
    """Each compressing run's baseline (black stars) and every final model of one metric, by role: compressed
    (dots, labelled by the swept keys or the run), controls (hollow triangles), plain training runs (stars, labelled);
    False if none has the metric."""
    plotted = False
    groups = [("baseline", "baseline", BASELINE_STYLE, [r for r in rows if r["role"] != "baseline"])]
    groups += [("final", label, style, [r for r in rows if r["role"] == role])
               for role, (label, style) in FINAL_STYLES.items()]
    labelled = set()
    for section, label, style, candidates in groups:
        points = [r for r in candidates if r.get(f"{section}_{metric}") and r.get(f"{section}_acc") is not None]
        if not points:
            continue
        plotted = True
        xs = [r[f"{section}_{metric}"] / scale for r in points]
        ys = [r[f"{section}_acc"] for r in points]
        ax.scatter(xs, ys, label=None if label in labelled else label, zorder=3, **style)
        labelled.add(label)
        quartiles = [r.get(f"{section}_latency_quartiles", (None, None)) for r in points]
        if metric == "latency_ms" and all(q[0] is not None and q[1] is not None for q in quartiles):
            errors = [[x - q[0] for x, q in zip(xs, quartiles)], [q[1] - x for x, q in zip(xs, quartiles)]]
            ax.errorbar(xs, ys, xerr=errors, fmt="none", ecolor="0.5", elinewidth=1, zorder=2)
        if section == "final":
            for r, x, y in zip(points, xs, ys):
                text = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in keys) or r["run"]
                ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if plotted:
        ax.grid(alpha=0.3)
        ax.legend()
    return plotted


def _seed_means(ax: Any, merged: list[dict[str, Any]]) -> None:
    """Each seed group's mean final accuracy against its MACs, with the spread over seeds as error bars."""
    groups = [m for m in merged if m["n"] > 1 and m.get("final_acc") is not None and m.get("final_macs")]
    if not groups:
        return
    xs = [m["final_macs"] / 1e6 for m in groups]
    ys = [m["final_acc"] for m in groups]
    spreads = [m.get("final_acc_spread") or 0.0 for m in groups]
    ax.errorbar(xs, ys, yerr=spreads, fmt="D", color="tab:red", capsize=4, zorder=4, label="mean +- spread (seeds)")
    ax.legend()


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
    parser.add_argument("--max-keys", type=int, default=MAX_KEYS,
                        help=f"name runs by folder when more config keys differ than this (default {MAX_KEYS})")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.folder, max_keys=args.max_keys)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(paths["markdown"].read_text())
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


if __name__ == "__main__":
    main()
