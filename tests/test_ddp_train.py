"""`python train.py trainer=ddp` on 2 CPU processes (gloo): the process you start is rank 0, Lightning re-runs the
command for rank 1, both run every stage in step. Each stage ends with identical networks on both ranks, rank 0
writes one run folder whose results.json and stages/*/model.pt describe that network (its test accuracy is
re-measured here in one process), and rank 1 writes nothing but its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from lightning_compress.config import PROJECT_ROOT, register_resolvers
from lightning_compress.pipeline.artifacts import read_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_datamodule
from tests.ddp_harness import network_digest

TINY = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "+trainer.limit_train_batches=3",
        "logger=none", "latency.batch_size=0"]
METHODS = {
    "plain": (["trainer.max_epochs=2"], ["train"]),
    "fsp": (["+method=fsp", "method.teacher_fit.epochs=1", "method.student_alone.epochs=0", "method.stage1.epochs=1",
             "method.stage2.epochs=1"], ["teacher", "stage1", "stage2"]),
    "kd": (["+method=kd", "method.teacher_fit.epochs=1", "method.student_alone.epochs=0", "method.stage1.epochs=1",
            "method.stage2.epochs=1"], ["teacher", "stage1", "stage2"]),
}


def _single_process_test_acc(record: dict) -> float:
    register_resolvers()
    cfg = OmegaConf.create(record["config"])
    net = read_stage_model(record["final"]["model_path"], "final").net
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    return trainer.test(build_classifier(cfg, net), datamodule=build_datamodule(cfg), verbose=False)[0]["test/acc"]


@pytest.mark.parametrize("method", [pytest.param("plain", marks=pytest.mark.slow), "fsp",
                                    pytest.param("kd", marks=pytest.mark.slow)])
def test_train_py_ddp_ranks_agree_and_rank0_writes_the_run(tmp_path, method):
    overrides, fits = METHODS[method]
    digest = f"+callbacks.digest={{_target_: tests.ddp_harness.RankDigest, folder: {tmp_path / 'digest'}}}"
    proc = subprocess.run([sys.executable, "train.py", *TINY, *overrides, f"paths.log_dir={tmp_path / 'logs'}",
                           digest], cwd=PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    (results,) = (tmp_path / "logs").rglob("results.json")  # one run folder, written once
    run_dir = results.parent
    assert (run_dir / "train_ddp_process_1.log").is_file()  # rank 1 ran, in the same folder
    record = json.loads(results.read_text())
    assert record["status"] == "done" and record["config"]["trainer"]["strategy"] == "ddp"
    for fit in fits:
        rank0, rank1 = (json.loads((tmp_path / "digest" / f"{fit}-rank{r}.json").read_text()) for r in (0, 1))
        assert rank0["world_size"] == 2 and rank0["strategy"] == "DDPStrategy"
        for key in ("params", "buffers", "shapes"):
            assert rank0[key] == rank1[key], (fit, key)
    saved = network_digest(read_stage_model(record["final"]["model_path"], "final").net)
    last = json.loads((tmp_path / "digest" / f"{fits[-1]}-rank0.json").read_text())
    assert saved["params"] == last["params"] and saved["buffers"] == last["buffers"]
    assert _single_process_test_acc(record) == pytest.approx(record["final"]["test_acc"], abs=1e-6)


@pytest.mark.slow
def test_train_py_ddp_killed_on_both_ranks_resumes_to_the_uninterrupted_weights(tmp_path):
    overrides = [*TINY, "trainer.enable_progress_bar=false", "+method=kd", "method.teacher_fit.epochs=1",
                 "method.student_alone.epochs=0", "method.stage1.epochs=3", "method.stage2.epochs=1"]

    def train(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "train.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)

    assert train(*overrides, f"paths.log_dir={tmp_path / 'reference'}").returncode == 0
    kill = f"+callbacks.kill={{_target_: tests.faults.KillOnce, stage: stage1, epoch: 2, marker: {tmp_path / 'k'}}}"
    assert train(*overrides, f"paths.log_dir={tmp_path / 'killed'}", kill).returncode == -9
    (interrupted,) = (p.parent for p in (tmp_path / "killed").rglob("results.json"))
    resumed = train(f"resume={interrupted}")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    (reference,) = (p.parent for p in (tmp_path / "reference").rglob("results.json"))
    done, expected = (json.loads((d / "results.json").read_text()) for d in (interrupted, reference))
    assert done["status"] == "done" and done["resumed"] and done["final"]["test_acc"] == expected["final"]["test_acc"]
    ours = read_stage_model(done["final"]["model_path"], "final").net
    theirs = read_stage_model(expected["final"]["model_path"], "final").net
    assert network_digest(ours) == network_digest(theirs)
