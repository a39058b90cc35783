"""Sweeps through the Hydra submitit launcher (the `cluster` extra): a real 2-job multirun with `hydra/launcher=local`
collected by the report CLI, and the sbatch script `hydra/launcher=slurm` becomes (no cluster needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from lightning_compress.config import CONFIG_DIR, PROJECT_ROOT, register_resolvers
from lightning_compress.report import main as report_main

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the `cluster` extra")
submitit = pytest.importorskip("submitit")


def test_local_launcher_runs_a_two_job_sweep_and_the_report_collects_both(tmp_path, capsys):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # threads come from cpus_per_task
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", "seed=0,1",
         "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "logger=none", "latency.batch_size=0",
         "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(records) == ["0", "1"]
    assert [records[k]["config"]["seed"] for k in ("0", "1")] == [0, 1]
    assert all(r["status"] == "done" and r["threads"] == 1 for r in records.values())
    assert list((sweep / ".submitit").iterdir())  # submitit's own job folders: it ran the jobs

    report_main([str(sweep)])  # the report CLI, in this process
    assert "Skipped" not in capsys.readouterr().out
    rows = (sweep / "report.csv").read_text().splitlines()
    assert rows[0].startswith("run,seed,") and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


def test_slurm_launcher_config_becomes_the_sbatch_options(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"  # submitit's SLURM executor only checks that `srun` exists; nothing is submitted
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.array_parallelism=2", f"hydra.sweep.dir={tmp_path / 's'}"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    scripts: list[str] = []

    def capture(executor, fn, *iterables):  # instead of sbatch: the script submitit would submit
        inner = executor._executor
        inner.parameters["map_count"] = len(iterables[0])
        scripts.append(inner._make_submission_file_text("python -u -m submitit.core._submit <folder>", "uid"))
        return [_DoneJob() for _ in iterables[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    launcher.launch([["seed=0"], ["seed=1"], ["seed=2"]], initial_job_idx=0)
    (script,) = scripts
    for option in ("--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=8", "--time=240", "--array=0-2%2",
                   "--signal=USR2@120", "--mem=32GB"):
        assert f"#SBATCH {option}\n" in script, (option, script)
    assert launcher.params["max_num_timeout"] == 3  # requeues after the time limit; preemption always requeues


class _DoneJob:
    def results(self) -> list[str]:
        return ["done"]
