"""`python train.py trainer=ddp` on 2 CPU processes (gloo): the process you start is rank 0, Lightning re-runs the
command for rank 1, both run every stage in step. Each stage ends with identical networks on both ranks, rank 0
writes one run folder whose results.json and stages/*/model.pt describe that network (its test accuracy is
re-measured here in one process), and rank 1 writes nothing but its log. For the pruning methods, both ranks end the
compress fit with the same plan, and stages/compressed/model.pt and the stage's done.ckpt hold that pruned network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from lightning_compress.config import PROJECT_ROOT, register_resolvers
from lightning_compress.pipeline.artifacts import read_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_datamodule
from tests.ddp_harness import network_digest

TINY = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "+trainer.limit_train_batches=3",
        "logger=none", "latency.batch_size=0"]
METHODS = {
    "plain": (["trainer.max_epochs=2"], ["train"]),
    "fsp": (["+method=fsp", "method.teacher_fit.epochs=1", "method.student_alone.epochs=0",
             "method.student_equal_compute.epochs=0", "method.stage1.epochs=1", "method.stage2.epochs=1"],
            ["teacher", "stage1", "stage2"]),
    "kd": (["+method=kd", "method.teacher_fit.epochs=1", "method.student_alone.epochs=0",
            "method.student_equal_compute.epochs=0", "method.stage1.epochs=1", "method.stage2.epochs=1"],
           ["teacher", "stage1", "stage2"]),
}


def _single_process_test_acc(record: dict) -> float:
    register_resolvers()
    cfg = OmegaConf.create(record["config"])
    net = read_stage_model(record["final"]["model_path"], "final").net
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    return trainer.test(build_classifier(cfg, net), datamodule=build_datamodule(cfg), verbose=False)[0]["test/acc"]


def _train_ddp(tmp_path, overrides: list[str], fits: list[str]) -> tuple[dict, dict[str, dict]]:
    """Run ``train.py`` with ``TINY`` + ``overrides`` and a RankDigest; check what every DDP run must satisfy (one run
    folder written by rank 0, both ranks equal after every fit); returns results.json and rank 0's digest per fit."""
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
    digests = {}
    for fit in fits:
        rank0, rank1 = (json.loads((tmp_path / "digest" / f"{fit}-rank{r}.json").read_text()) for r in (0, 1))
        assert rank0["world_size"] == 2 and rank0["strategy"] == "DDPStrategy"
        assert rank0["find_unused_parameters"] is False and rank1["find_unused_parameters"] is False
        for key in ("params", "buffers", "shapes", "plans"):
            assert rank0[key] == rank1[key], (fit, key)
        digests[fit] = rank0
    saved = network_digest(read_stage_model(record["final"]["model_path"], "final").net)
    last = digests[fits[-1]]
    assert saved["params"] == last["params"] and saved["buffers"] == last["buffers"]
    assert _single_process_test_acc(record) == pytest.approx(record["final"]["test_acc"], abs=1e-6)
    return record, digests


@pytest.mark.parametrize("method", [pytest.param("plain", marks=pytest.mark.slow), "fsp",
                                    pytest.param("kd", marks=pytest.mark.slow)])
def test_train_py_ddp_ranks_agree_and_rank0_writes_the_run(tmp_path, method):
    _train_ddp(tmp_path, *METHODS[method])


PRUNING = {  # method: (its callback, the fits of the run: with a fine-tune or not)
    "l1_filter": ("L1FilterPruning", ["method.finetune.epochs=0"], ["baseline", "compress"]),
    "slimming": ("NetworkSlimming", ["method.finetune.epochs=1"], ["baseline", "compress", "finetune"]),
    "fpgm": ("FPGMPruning", ["method.finetune.epochs=1"], ["baseline", "compress", "finetune"]),
}


@pytest.mark.parametrize("method", [pytest.param("l1_filter", marks=pytest.mark.slow),
                                    pytest.param("slimming", marks=pytest.mark.slow), "fpgm"])
def test_train_py_ddp_pruning_ranks_agree_and_rank0_saves_the_pruned_network(tmp_path, method):
    name, finetune, fits = PRUNING[method]
    overrides = [f"+method={method}", "method.baseline.epochs=1", "method.compress.epochs=2", *finetune]
    record, digests = _train_ddp(tmp_path, overrides, fits)
    baseline, compress = digests["baseline"], digests["compress"]
    plan = compress["plans"][name]  # the same on both ranks (checked above)
    assert compress["shapes"] != baseline["shapes"]
    compressed = read_stage_model(record["compressed"]["model_path"], "compressed")
    assert compressed.plan.to_dict() == plan
    register_resolvers()
    done = read_stage_model(Path(record["compressed"]["model_path"]).parents[1] / "compress" / "done.ckpt", "done",
                            OmegaConf.create(record["config"]).model)
    for saved in (network_digest(compressed.net), network_digest(done.net)):
        for key in ("params", "buffers", "shapes"):
            assert saved[key] == compress[key], key
    assert record["compressed"]["params"] < record["baseline"]["params"]
    assert record["final"]["params"] == record["compressed"]["params"]


@pytest.mark.slow
def test_train_py_ddp_killed_on_both_ranks_resumes_to_the_uninterrupted_weights(tmp_path):
    overrides = [*TINY, "trainer.enable_progress_bar=false", "+method=kd", "method.teacher_fit.epochs=1",
                 "method.student_alone.epochs=0", "method.student_equal_compute.epochs=0", "method.stage1.epochs=3",
                 "method.stage2.epochs=1"]

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
    assert network_digest(ours)["shapes"] == network_digest(theirs)["shapes"]
    # to fp32 tolerance: a restore moves weights by 1-2 ulp on some CPUs (see tests/test_run_resume.py)
    theirs_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs_state[key], rtol=1e-5, atol=1e-6, msg=key)
