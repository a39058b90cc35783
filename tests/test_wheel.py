"""An installed wheel runs the app from any folder (issue 29, item 6): the wheel built from the tracked files carries
``conf/`` inside the package and the console scripts; ``python -m lightning_compress.train +method=slimming`` on
the embedded digits writes its logs below the working directory, its final model exports, and the profiler runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from lightning_compress import config
from lightning_compress.config import CONFIG_DIR, PROJECT_ROOT

QUICK = ["method.baseline.epochs=1", "method.compress.epochs=1", "method.finetune.epochs=1",
         "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "latency.batch_size=0"]


def test_config_dir_is_the_checkouts_else_the_packages(tmp_path: Path, monkeypatch) -> None:
    assert CONFIG_DIR == PROJECT_ROOT / "conf" and (CONFIG_DIR / "train.yaml").is_file()  # a source checkout
    monkeypatch.setattr(config, "_CHECKOUT", tmp_path)  # installed: no conf/ beside the package
    assert config._config_dir() == Path(config.__file__).resolve().parent / "conf"


def _run(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_a_wheel_installed_outside_the_checkout_runs_the_app(tmp_path: Path) -> None:
    source = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file() and not name.startswith(("experiments/", "benchmarks/results/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("lightning_compress-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lightning_compress/conf/train.yaml" in names and "lightning_compress/conf/method/slimming.yaml" in names
    scripts = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert all(f"lightning-compress-{s}" in scripts for s in ("train", "export", "profile", "report"))

    site, user = tmp_path / "site", tmp_path / "user"
    user.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    trained = _run(["-m", "lightning_compress.train", "+method=slimming", *QUICK], user, site)
    assert trained.returncode == 0, trained.stderr[-3000:]
    results = next((user / "logs" / "train" / "slimming" / "runs").glob("*/results.json"))
    final = Path(json.loads(results.read_text())["final"]["model_path"])
    assert final.is_file() and user in final.parents
    exported = _run(["-m", "lightning_compress.export", str(final), "--format", "pt2"], user, site)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout.strip().splitlines()[-1])["parity"]["passed"]
    profiled = _run(["-m", "lightning_compress.profile", "model=resnet8", "latency.batch_size=0"], user, site)
    assert profiled.returncode == 0, profiled.stderr[-3000:]
    assert json.loads(profiled.stdout.strip().splitlines()[-1])["model"] == "resnet8"
