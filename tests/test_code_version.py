"""results.json names the code that wrote it: the package version, and the commit only for a checkout's own package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import lightning_compress
from lightning_compress.pipeline.results import code_version

REPO = Path(__file__).resolve().parents[1]


def _fake_package(monkeypatch, folder: Path) -> None:
    (folder / "lightning_compress").mkdir(parents=True)
    init = folder / "lightning_compress" / "__init__.py"
    init.write_text("")
    monkeypatch.setattr(lightning_compress, "__file__", str(init))


def test_a_checkout_names_its_commit():
    info = code_version()
    assert info["version"] == lightning_compress.__version__
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert info["commit"] == head and isinstance(info["modified"], bool)
    else:  # an unpacked sdist: no git, so no commit is claimed
        assert info["commit"] is None and info["modified"] is None


def test_a_copy_outside_any_checkout_names_no_commit(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path / "site-packages")
    assert code_version() == {"version": lightning_compress.__version__, "commit": None, "modified": None}


def test_a_copy_installed_inside_another_checkout_does_not_take_its_commit(monkeypatch, tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    _fake_package(monkeypatch, tmp_path / ".venv" / "lib" / "site-packages")
    assert code_version()["commit"] is None
