"""examples/plain_lightning_distillation.py runs as written: FSP (two stages) and KD in a plain lightning.Trainer,
the students reloaded without a teacher argument, the teacher outside the checkpoints."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_lightning_distillation.py"


def test_plain_lightning_distillation_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EPOCHS", "1")
    monkeypatch.setenv("BATCHES", "3")
    result = runpy.run_path(str(EXAMPLE), run_name="example")["main"]()
    assert all(0.0 <= result[k] <= 1.0 for k in ("teacher_acc", "fsp_acc", "kd_acc"))
    assert result["fsp_stage1_teacher"] is None and not result["teacher_in_checkpoint"]
    assert (tmp_path / "logs" / "examples" / "plain_lightning_distillation" / "fsp_stage2").is_dir()
