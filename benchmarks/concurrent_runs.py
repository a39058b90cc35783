"""Wall time of the digits FSP run (``python train.py +method=fsp``) alone and with 4 others at once, before and
after choosing threads per process.

Scenarios (every run is a real ``train.py`` process; the wall time is each run's own ``wall_time_s`` in its
``results.json``, i.e. from its first stage to its last):

* ``alone``: one run, ``threads`` automatic (all usable cores).
* ``5-at-once-before``: 5 runs started together by ``hydra/launcher=local``, each with as many threads as the machine
  has cores (what every process did before: torch's default).
* ``5-at-once-after``: the same 5 runs with ``hydra.launcher.cpus_per_task = max(1, cores // 5)``: threads follow
  (``threads: null``).

Needs the ``cluster`` extra. Run it on a quiet machine only (nothing else running), from the project root::

    .venv/bin/python -m benchmarks.concurrent_runs            # the FSP defaults: ~1 min alone on 2 idle cores
    .venv/bin/python -m benchmarks.concurrent_runs --quick    # 1 epoch per stage: checks the script itself

Writes ``logs/benchmarks/concurrent_runs/<time>/summary.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lightning_compress.config import PROJECT_ROOT
from lightning_compress.pipeline.builders import usable_cores

QUICK = ["method.teacher_fit.epochs=1", "method.student_alone.epochs=1", "method.stage1.epochs=1",
         "method.stage2.epochs=1"]
COMMON = ["+method=fsp", "logger=none", "trainer.enable_progress_bar=false"]
RUNS_AT_ONCE = 5


def _train(args: list[str], log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the script decides the threads
    with log.open("w") as handle:
        proc = subprocess.run([sys.executable, "train.py", *args], cwd=PROJECT_ROOT, env=env, stdout=handle,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed (exit {proc.returncode}); see {log}")


def _wall_times(folder: Path) -> list[float]:
    records = [json.loads(p.read_text()) for p in sorted(folder.rglob("results.json"))]
    if any(r.get("status") != "done" for r in records):
        raise SystemExit(f"a run below {folder} is not done")
    return [float(r["wall_time_s"]) for r in records]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrent_runs", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch per stage (checks the script, not a benchmark)")
    args = parser.parse_args(argv)
    cores = usable_cores()
    out = PROJECT_ROOT / "logs" / "benchmarks" / "concurrent_runs" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True)
    base = COMMON + (QUICK if args.quick else [])
    seeds = "seed=" + ",".join(str(s) for s in range(RUNS_AT_ONCE))
    share = max(1, cores // RUNS_AT_ONCE)
    scenarios = {
        "alone": [*base, f"hydra.run.dir={out / 'alone'}"],
        "5-at-once-before": ["-m", "hydra/launcher=local", f"hydra.launcher.cpus_per_task={cores}", f"threads={cores}",
                             seeds, *base, f"hydra.sweep.dir={out / 'before'}"],
        "5-at-once-after": ["-m", "hydra/launcher=local", f"hydra.launcher.cpus_per_task={share}", seeds, *base,
                            f"hydra.sweep.dir={out / 'after'}"],
    }
    folders = {"alone": out / "alone", "5-at-once-before": out / "before", "5-at-once-after": out / "after"}
    summary: dict = {"cores": cores, "quick": args.quick, "load_before": os.getloadavg(), "scenarios": {}}
    for name, overrides in scenarios.items():
        _train(overrides, out / f"{name}.log")
        times = _wall_times(folders[name])
        threads = sorted({json.loads(p.read_text())["threads"] for p in folders[name].rglob("results.json")})
        summary["scenarios"][name] = {"runs": len(times), "threads_per_run": threads, "wall_s": times,
                                      "median_s": statistics.median(times), "max_s": max(times)}
    summary["load_after"] = os.getloadavg()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'scenario':18} {'runs':>4} {'threads':>8} {'median s':>9} {'max s':>8}   (cores: {cores})")
    for name, row in summary["scenarios"].items():
        print(f"{name:18} {row['runs']:>4} {','.join(map(str, row['threads_per_run'])):>8} "
              f"{row['median_s']:>9.1f} {row['max_s']:>8.1f}")
    print(f"summary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
