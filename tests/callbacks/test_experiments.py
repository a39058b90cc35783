"""Every paper experiment composes and runs end to end on tiny synthetic data (short epochs; slow)."""

from __future__ import annotations

import pytest

from lightning_compress.pipeline import run

EXPERIMENTS = ["vgg16_cifar10_l1_a", "resnet56_cifar10_l1_a", "resnet56_cifar10_l1_b", "resnet110_cifar10_l1_a",
               "resnet110_cifar10_l1_b", "vgg19_cifar10_slimming"]
SMOKE = ["data=synthetic", "data.train_size=16", "data.val_size=8", "data.test_size=8", "data.batch_size=8",
         "method.baseline.epochs=1", "method.compress.epochs=1", "method.finetune.epochs=1",
         "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
         "trainer.enable_checkpointing=false"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(compose_config, experiment):
    cfg = compose_config(f"+experiment={experiment}")
    assert cfg.method.kind == "prune" and cfg.method.callback._target_.startswith("lightning_compress.callbacks.")


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_smoke_run(compose_config, experiment):
    cfg = compose_config(f"+experiment={experiment}", *SMOKE)
    record = run(cfg)
    assert record["final"]["macs"] < record["baseline"]["macs"]
