"""The README example (examples/plain_lightning_slimming.py, a `lightning` user module with
``ModelCheckpoint(monitor=..., save_top_k=1)``) runs as written: prunes, reloads the best checkpoint,
resumes, exports."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_lightning_slimming.py"


def test_plain_lightning_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EPOCHS", "1")
    monkeypatch.setenv("BATCHES", "3")
    namespace = runpy.run_path(str(EXAMPLE), run_name="example")
    result = namespace["main"]()
    assert result["after"]["params"] < result["before"]["params"]
    assert result["after"]["macs"] < result["before"]["macs"]
    assert 0.0 <= result["test_acc"] <= 1.0
    assert result["resumed_params"] == result["after"]["params"] and result["resumed_step"] > result["best_step"]
    assert result["parity"] and Path(result["exported"]).is_file()
