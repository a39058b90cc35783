"""experiments/rows.sh: every listed row resolves to its overrides, and a row it does not know stops with an error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROWS = Path(__file__).resolve().parents[1] / "experiments" / "rows.sh"


def _rows(*args: str) -> subprocess.CompletedProcess:
    # PY=false: were a row ever to reach train.py here, it would fail at once instead of training
    return subprocess.run(["bash", str(ROWS), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PY": "false"})


def test_every_listed_row_resolves_to_an_experiment_and_a_seed():
    names = _rows("list").stdout.split()
    assert "l1_b_s0" in names and "random_fpgm40_s0" in names
    shown = _rows("show", *names)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == len(names) and all("+experiment=" in line and " seed=" in line for line in lines)


def test_each_fpgm_control_reads_its_own_method_row():
    shown = _rows("show", "random_fpgm40_s1", "random_fpgm40_oneshot_s1").stdout.splitlines()
    assert "logs/rows/fpgm40_s1/stages/compressed/model.pt" in shown[0]
    assert "logs/rows/fpgm40_oneshot_s1/stages/compressed/model.pt" in shown[1]
    assert all("+experiment=resnet20_cifar10_fpgm_random_cpu" in line for line in shown)


def test_a_control_of_an_unknown_method_row_stops_before_training():
    for command in ("show", "run"):
        result = _rows(command, "random_nosuch_s0")
        assert result.returncode != 0 and "no random control for nosuch" in result.stderr
        assert "train.py" not in result.stdout
