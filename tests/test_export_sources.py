"""``python -m lightning_compress.export`` on what users have (issue 29, item 5): a Lightning checkpoint of their own
module (``--module pkg:Cls`` or ``--model pkg:fn``) and a ``save_pruned`` file (``--model``)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_compress import export
from lightning_compress.callbacks import L1FilterPruning
from lightning_compress.pruning import prune, select_channels
from lightning_compress.pruning.saving import save_pruned
from tests.helpers import LitUser, tiny_data, tiny_vgg


@pytest.fixture(scope="module")
def user_checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("fit")
    L.Trainer(default_root_dir=str(folder), accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
              enable_model_summary=False, limit_train_batches=2,
              callbacks=[L1FilterPruning(pruning_ratio=0.5, verbose=False),
                         ModelCheckpoint(dirpath=folder, filename="best")]).fit(LitUser(), datamodule=tiny_data())
    return folder / "best.ckpt"


def report(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_lightning_checkpoint_with_the_users_module(user_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "net.pt2"
    assert export.main([str(user_checkpoint), "--module", "tests.test_export_sources:LitUser", "--format", "pt2",
                        "--output", str(out)]) == 0
    result = report(capsys)
    assert result["kind"] == "lightning" and result["parity"]["passed"] and out.is_file()
    assert result["input_shape"] == [1, 8, 8]  # recorded by the plan
    exported = torch.export.load(str(out)).module()
    assert exported(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_a_lightning_checkpoint_with_a_network_builder(user_checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert export.main([str(user_checkpoint), "--model", "tests.helpers:tiny_vgg", "--model-kwargs",
                        '{"num_classes": 4}', "--format", "pt2", "--output", str(tmp_path / "n.pt2")]) == 0
    assert report(capsys)["parity"]["passed"]


def test_a_lightning_checkpoint_without_module_or_model_says_what_to_pass(user_checkpoint: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        export.main([str(user_checkpoint), "--format", "pt2"])
    assert "is a Lightning checkpoint: it does not record its architecture; pass --module" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main([str(user_checkpoint), "--module", "tests.test_export_sources:Nope", "--format", "pt2"])
    assert "has no attribute 'Nope'" in capsys.readouterr().err


def test_a_save_pruned_file(tmp_path: Path, capsys) -> None:
    net = tiny_vgg()
    plan = select_channels(net, torch.randn(1, 1, 8, 8), pruning_ratio=0.5)
    prune(net, plan)
    save_pruned(tmp_path / "pruned.pt", net, plan)
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "pruned.pt"), "--format", "pt2"])
    assert "is a save_pruned file" in capsys.readouterr().err
    assert export.main([str(tmp_path / "pruned.pt"), "--model", "tests.helpers:tiny_vgg",
                        "--format", "pt2"]) == 0
    result = report(capsys)
    assert result["kind"] == "pruned" and result["parity"]["passed"] and result["input_shape"] == [1, 8, 8]
