"""`strategy="ddp"` (Lightning's subprocess launcher, 2 CPU processes, gloo) from a plain Trainer: ImageClassifier,
FSPDistillation, KnowledgeDistillation and the three pruning callbacks. Both ranks end with bit-identical parameters,
buffers and plans, the launching process holds that network after `fit` (pruned, for the pruning callbacks), and
DDP runs with `find_unused_parameters=False` (FSP's stage 1 freezes the head its loss does not reach). The fits run in
`tests/ddp_harness.py`, their own script (see there to add a case); all cases share one pair of processes, since
starting them is most of the cost.

Slimming and FPGM remove channels in `on_train_end`, after DDP wrapped the module: the launching process's module is
the wrapped one, so it is pruned in place; Lightning's unwrap keeps it, and `done.ckpt` (and, for FPGM, the rewritten
`last.ckpt`) hold it. Slimming adds its penalty in `on_before_optimizer_step`, after DDP averaged the gradients: once
per step on each rank, never averaged or summed across ranks (`slimming_penalty`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_compress.callbacks import load_pruned_checkpoint
from lightning_compress.config import PROJECT_ROOT
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import PruningPlan, prune
from tests.ddp_harness import PENALTY, _resnet, network_digest

PRUNING = {"l1_filter": "L1FilterPruning", "slimming": "NetworkSlimming", "fpgm": "FPGMPruning"}
CASES = ("plain", "fsp", "kd", *PRUNING, "slimming_penalty")


def run_harness(cases: tuple[str, ...], out: Path) -> dict[str, dict[str, dict]]:
    """Run ``python -m tests.ddp_harness <cases> <out>``; returns ``{case: {digest file name: digest}}``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.ddp_harness", ",".join(cases), str(out)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {case: {p.name: json.loads(p.read_text()) for p in sorted((out / case).glob("*.json"))} for case in cases}


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> tuple[Path, dict[str, dict[str, dict]]]:
    out = tmp_path_factory.mktemp("ddp")
    return out, run_harness(CASES, out)


@pytest.fixture(scope="module")
def digests(harness) -> dict[str, dict[str, dict]]:
    return harness[1]


@pytest.mark.parametrize("case", CASES)
def test_ddp_ranks_agree_and_the_launcher_holds_the_trained_network(digests, case):
    files = digests[case]
    assert sorted(files) == ["fit-rank0.json", "fit-rank1.json", "launcher.json"]
    rank0, rank1, launcher = files["fit-rank0.json"], files["fit-rank1.json"], files["launcher.json"]
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    assert rank0["strategy"] == "DDPStrategy" and rank0["find_unused_parameters"] is False
    assert rank1["find_unused_parameters"] is False
    for key in ("params", "buffers", "shapes", "plans", "global_step"):
        assert rank0[key] == rank1[key], key
    for key in ("params", "buffers", "shapes"):
        assert launcher[key] == rank0[key], key


def test_the_cases_trained_different_networks(digests):
    assert len({digests[case]["launcher.json"]["params"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", PRUNING)
def test_ddp_launcher_holds_the_network_pruned_by_the_ranks_plan(digests, case):
    rank0, launcher = digests[case]["fit-rank0.json"], digests[case]["launcher.json"]
    assert list(rank0["plans"]) == [PRUNING[case]]
    plan = PruningPlan.from_dict(rank0["plans"][PRUNING[case]])
    assert plan.num_removed > 0
    unpruned = _resnet(8)
    expected = _resnet(8)
    prune(expected, plan)
    assert launcher["shapes"] == network_digest(expected)["shapes"] != network_digest(unpruned)["shapes"]


@pytest.mark.parametrize("case", PRUNING)
def test_ddp_checkpoints_written_after_the_fit_hold_the_pruned_network(harness, case):
    out, digests = harness
    launcher = digests[case]["launcher.json"]
    # done.ckpt: written after every on_train_end (train.py's stages); last.ckpt: pruned from the start (L1) or
    # rewritten after the removal (FPGM); Slimming's last.ckpt is its sparsity-trained network before the removal
    names = ["done.ckpt"] + (["last.ckpt"] if case != "slimming" else [])
    for name in names:
        module = load_pruned_checkpoint(ImageClassifier, out / case / "fit" / name, net=_resnet(8))
        loaded = network_digest(module.net)
        for key in ("params", "buffers", "shapes"):
            assert loaded[key] == launcher[key], (name, key)


def test_ddp_slimming_penalty_is_added_once_per_step(harness):
    out, digests = harness
    steps = digests["slimming_penalty"]["fit-rank0.json"]["global_step"]
    assert steps == 6  # 2 epochs x 3 batches
    gamma = torch.load(out / "slimming_penalty" / "launcher.pt", weights_only=True)["1.weight"]
    expected = torch.full_like(gamma, PENALTY["init_gamma"])
    for _ in range(steps):  # what one penalty per step does under plain SGD (the loss gives this scale 0 gradient)
        grad = torch.zeros_like(expected).add_(torch.sign(expected), alpha=PENALTY["sparsity_lambda"])
        expected.add_(grad, alpha=-PENALTY["lr"])
    assert torch.allclose(gamma, expected, rtol=0, atol=1e-6), (gamma, expected)  # twice: 1e-3 lower per step
