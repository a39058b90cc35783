"""The README's plain-PyTorch quickstart runs as written (the callback quickstart's complete version is
examples/plain_lightning_slimming.py, tested in tests/callbacks/test_example.py)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_engine_quickstart_runs_as_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_block_after("## Quickstart 3"), "README quickstart 3", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "pruned.pt").is_file()
    widths = [m.out_channels for m in namespace["fresh"].modules() if hasattr(m, "out_channels")]
    assert widths == [m.out_channels for m in namespace["net"].modules() if hasattr(m, "out_channels")]
    assert namespace["plan"].num_removed > 0
