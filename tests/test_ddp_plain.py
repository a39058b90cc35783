"""`strategy="ddp"` (Lightning's subprocess launcher, 2 CPU processes, gloo) from a plain Trainer: ImageClassifier,
FSPDistillation and KnowledgeDistillation. Both ranks end with bit-identical parameters and buffers, the launching
process holds that network after `fit`, and no `find_unused_parameters` is needed (FSP's stage 1 freezes the head
its loss does not reach). The fits run in `tests/ddp_harness.py`, their own script (see there to add a callback);
all cases share one pair of processes, since starting them is most of the cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_compress.config import PROJECT_ROOT

CASES = ("plain", "fsp", "kd")


def run_harness(cases: tuple[str, ...], out: Path) -> dict[str, dict[str, dict]]:
    """Run ``python -m tests.ddp_harness <cases> <out>``; returns ``{case: {digest file name: digest}}``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.ddp_harness", ",".join(cases), str(out)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {case: {p.name: json.loads(p.read_text()) for p in sorted((out / case).glob("*.json"))} for case in cases}


@pytest.fixture(scope="module")
def digests(tmp_path_factory) -> dict[str, dict[str, dict]]:
    return run_harness(CASES, tmp_path_factory.mktemp("ddp"))


@pytest.mark.parametrize("case", CASES)
def test_ddp_ranks_agree_and_the_launcher_holds_the_trained_network(digests, case):
    files = digests[case]
    assert sorted(files) == ["fit-rank0.json", "fit-rank1.json", "launcher.json"]
    rank0, rank1, launcher = files["fit-rank0.json"], files["fit-rank1.json"], files["launcher.json"]
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    assert rank0["strategy"] == "DDPStrategy"  # strategy="ddp", not "ddp_find_unused_parameters_true"
    for key in ("params", "buffers", "shapes", "plans"):
        assert rank0[key] == rank1[key], key
    for key in ("params", "buffers", "shapes"):
        assert launcher[key] == rank0[key], key


def test_the_cases_trained_different_networks(digests):
    assert len({digests[case]["launcher.json"]["params"] for case in CASES}) == len(CASES)
