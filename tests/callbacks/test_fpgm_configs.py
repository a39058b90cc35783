"""conf/method/fpgm.yaml and the FPGM paper experiments compose, build the callback, and run (tiny, short)."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from lightning_compress.callbacks import FPGMPruning
from lightning_compress.pipeline import run

EXPERIMENTS = {
    "resnet56_cifar10_fpgm": ("resnet56", 0.0, False),
    "resnet110_cifar10_fpgm": ("resnet110", 0.0, False),
    "resnet20_cifar10_fpgm_mix": ("resnet20", 0.1, True),
}
TINY = ["data=synthetic", "data.train_size=16", "data.val_size=8", "data.test_size=8", "data.batch_size=8",
        "method.baseline.epochs=1", "method.compress.epochs=2", "method.finetune.epochs=1",
        "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
        "trainer.enable_checkpointing=false"]


def test_method_config_builds_the_callback_with_every_argument(compose_config) -> None:
    cfg = compose_config("+method=fpgm")
    assert cfg.method.name == "fpgm" and cfg.method.kind == "prune"
    callback = instantiate(cfg.method.callback)
    assert isinstance(callback, FPGMPruning)
    assert (callback.pruning_ratio, callback.distance, callback.norm_ratio) == (0.4, "l2", 0.0)
    assert callback.soft_mode == "authors_code" and callback.residual == "select"
    assert callback.prune and callback.frequency == 1


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_paper_experiments_compose_and_instantiate(compose_config, experiment: str) -> None:
    model, norm_ratio, from_scratch = EXPERIMENTS[experiment]
    cfg = compose_config(f"+experiment={experiment}")
    assert cfg.model._target_.endswith(model) and cfg.data._target_.endswith("CIFAR10DataModule")
    assert cfg.method.compress.epochs == 200 and cfg.method.compress.from_scratch is from_scratch
    assert list(cfg.module.scheduler.milestones) == [0.3, 0.6, 0.8] and cfg.module.scheduler.gamma == 0.2
    assert cfg.module.optim.weight_decay == 5e-4 and cfg.data.batch_size == 128
    callback = instantiate(cfg.method.callback)
    assert isinstance(callback, FPGMPruning)
    assert callback.pruning_ratio == 0.4 and callback.norm_ratio == norm_ratio
    assert callback.soft_mode == "authors_code" and callback.residual == "select"


def test_method_runs_the_pipeline_and_prunes(compose_config) -> None:
    cfg = compose_config("+method=fpgm", "model=resnet8", "data.in_channels=3", *TINY)
    record = run(cfg)
    assert record["compressed"]["macs"] < 0.6 * record["baseline"]["macs"]
    assert record["final"]["macs"] == record["compressed"]["macs"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_paper_experiment_smoke_run(compose_config, experiment: str) -> None:
    record = run(compose_config(f"+experiment={experiment}", *TINY))
    assert record["final"]["macs"] < 0.55 * record["baseline"]["macs"]
