"""The Hydra app end to end: `train.py` configs, a plain run, results.json, the profile CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

import lightning_compress
from lightning_compress.config import CONFIG_DIR, PROJECT_ROOT
from lightning_compress.pipeline import run

MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def test_default_run_trains_digits_and_writes_results(compose_config, tmp_path):
    cfg = compose_config("trainer.max_epochs=3")
    record = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final"]["test_acc"] == record["final"]["test_acc"] > 0.5
    assert results["final"]["params"] > 0 and results["final"]["macs"] > 0
    assert results["final"]["flops"] == 2 * results["final"]["macs"]
    assert results["config"]["model"]["_target_"].endswith("digits_vgg")
    assert results["hardware"]["torch"] and results["wall_time_s"] > 0
    assert results["code"]["version"] == lightning_compress.__version__
    assert Path(results["final"]["model_path"]).is_file()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_builds_for_digits_and_cifar(compose_config, model):
    # VGG-16/19 pool five times, VGG-11 four: they need CIFAR's 32x32, not the 8x8 digits.
    for data in ("cifar10",) if model in ("vgg11_half", "vgg16", "vgg19") else ("digits", "cifar10"):
        cfg = compose_config(f"model={model}", f"data={data}")
        net = instantiate(cfg.model).eval()
        shape = (2, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
        assert net(torch.zeros(shape)).shape == (2, cfg.data.num_classes)


def test_bad_method_kind_is_rejected_before_training(compose_config):
    cfg = compose_config("+method={name: x, kind: quantise}")
    with pytest.raises(ValueError, match="method.kind"):
        run(cfg)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("model", "macs"), [("resnet56", 125e6), ("vgg16", 313e6)])
def test_profile_cli_prints_published_sizes_as_last_json_line(model, macs):
    proc = _cli("-m", "lightning_compress.profile", f"model={model}", "latency.batch_size=2", "latency.repeats=2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["macs"] == pytest.approx(macs, rel=0.02)
    assert result["flops"] == 2 * result["macs"]
    assert "latency_ms" in result and "MACs" in proc.stdout


def test_train_cli_multirun_gives_each_run_its_own_folder(tmp_path):
    proc = _cli("train.py", "-m", "model=resnet8,digits_vgg", "trainer.max_epochs=1", "logger=none",
                "latency.batch_size=0", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(tmp_path.rglob("results.json"))
    assert len(results) == 2
    targets = {json.loads(p.read_text())["config"]["model"]["_target_"].rsplit(".", 1)[-1] for p in results}
    assert targets == {"resnet8", "digits_vgg"}
