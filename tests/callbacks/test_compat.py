"""One test per private Lightning API the callbacks use (lightning_compress.callbacks._compat): if a Lightning
release changes one, the test of that function fails here first."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import _compat
from tests.helpers import quiet_trainer, tiny_module


def test_fit_dataloader_is_the_loader_given_to_fit(tmp_path) -> None:
    seen = {}

    class Probe(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            seen["loader"] = _compat.fit_dataloader(trainer)

    loader = DataLoader(TensorDataset(torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))), batch_size=4)
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[Probe()]).fit(tiny_module(),
                                                                                    train_dataloaders=loader)
    assert seen["loader"] is loader


def test_spawn_detection_is_false_on_one_process_and_true_for_ddp_spawn(tmp_path) -> None:
    single = quiet_trainer(tmp_path)
    assert not _compat.is_spawn_worker(single) and not _compat.is_spawning(single)
    spawn = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                       enable_model_summary=False, default_root_dir=str(tmp_path))
    assert _compat.is_spawning(spawn)  # the launcher exists before the workers start


def test_excluded_tensors_leave_the_state_dict_of_the_module_only() -> None:
    module = tiny_module()
    _compat.exclude_from_returned_state(module, ("net.features.conv1.",))
    keys = module.state_dict().keys()
    assert not any(k.startswith("net.features.conv1.") for k in keys)
    assert "net.features.conv2.weight" in keys
    assert "features.conv1.weight" in module.net.state_dict()  # a submodule's own state_dict is untouched


def test_wrapped_on_load_checkpoint_runs_first_and_undo_restores_the_method() -> None:
    calls = []

    class Module(pl.LightningModule):
        def on_load_checkpoint(self, checkpoint):
            calls.append("module")

    module = Module()
    undo = _compat.wrap_on_load_checkpoint(module, lambda checkpoint: calls.append("before"))
    module.on_load_checkpoint({})
    assert calls == ["before", "module"]
    undo()
    module.on_load_checkpoint({})
    assert calls == ["before", "module", "module"] and "on_load_checkpoint" not in module.__dict__
