"""Every invalid argument raises a clear error in __init__ (or setup, for model-dependent ones), never mid-epoch."""

from __future__ import annotations

import pytest

from lightning_compress.callbacks import L1FilterPruning, NetworkSlimming
from tests.helpers import tiny_data, tiny_module

INIT_CASES = [
    (L1FilterPruning, {"pruning_ratio": 1.5}, ValueError, r"`pruning_ratio` must be a float in \[0, 1\), got 1.5"),
    (L1FilterPruning, {"pruning_ratio": -0.1}, ValueError, r"`pruning_ratio` must be a float in \[0, 1\)"),
    (L1FilterPruning, {"pruning_ratio": "half"}, TypeError, r"`pruning_ratio` must be a float"),
    (L1FilterPruning, {"pruning_ratio": True}, TypeError, r"`pruning_ratio` must be a float"),
    (L1FilterPruning, {"pruning_ratio": {"conv*": 1.0}}, ValueError, r"`pruning_ratio\['conv\*'\]` must be a float in"),
    (L1FilterPruning, {"pruning_ratio": {1: 0.5}}, TypeError, r"`pruning_ratio` keys must be module-name globs"),
    (L1FilterPruning, {"pruning_ratio": {}}, ValueError, r"`pruning_ratio` must be a float or a non-empty dict"),
    (L1FilterPruning, {"criterion": "l3"}, ValueError, r"`criterion` must be one of \('l1', 'l2', 'random'"),
    (L1FilterPruning, {"criterion": 1}, ValueError, r"`criterion` must be one of"),
    (L1FilterPruning, {"strategy": "best"}, ValueError, r"`strategy` must be one of \('independent', 'greedy'\)"),
    (L1FilterPruning, {"residual": "both"}, ValueError, r"`residual` must be one of \('couple', 'select'\)"),
    (L1FilterPruning, {"min_channels": 0}, ValueError, r"`min_channels` must be an int >= 1, got 0"),
    (L1FilterPruning, {"round_to": 0}, ValueError, r"`round_to` must be an int >= 1, got 0"),
    (L1FilterPruning, {"seed": 1.5}, TypeError, r"`seed` must be an int, got 1.5"),
    (L1FilterPruning, {"submodule": 3}, TypeError, r"`submodule` must be a str or None"),
    (L1FilterPruning, {"ignored_layers": "fc"}, TypeError, r"`ignored_layers` must be a list"),
    (L1FilterPruning, {"input_shape": [1, 0, 8]}, TypeError, r"`input_shape` must be a list of positive ints"),
    (L1FilterPruning, {"verbose": 1}, TypeError, r"`verbose` must be a bool"),
    (NetworkSlimming, {"sparsity_lambda": -1e-4}, ValueError, r"`sparsity_lambda` must be >= 0"),
    (NetworkSlimming, {"sparsity_lambda": "1e-4"}, TypeError, r"`sparsity_lambda` must be a number"),
    (NetworkSlimming, {"pruning_ratio": 1.0}, ValueError, r"`pruning_ratio` must be a float in \[0, 1\), got 1.0"),
    (NetworkSlimming, {"init_gamma": float("nan")}, ValueError, r"`init_gamma` must be a finite number"),
    (NetworkSlimming, {"min_channels": 0}, ValueError, r"`min_channels` must be an int >= 1"),
    (NetworkSlimming, {"min_channels": 2.0}, TypeError, r"`min_channels` must be an int >= 1"),
    (NetworkSlimming, {"group_score": "median"}, ValueError, r"`group_score` must be one of \('mean', 'sum', 'max'\)"),
    (NetworkSlimming, {"prune": "yes"}, TypeError, r"`prune` must be a bool"),
    (NetworkSlimming, {"threshold": "median"}, ValueError, r"`threshold` must be one of \('count', 'authors_code'\)"),
    (NetworkSlimming, {"small_gamma": 0}, ValueError, r"`small_gamma` must be > 0"),
    (NetworkSlimming, {"plot_dir": 1}, TypeError, r"`plot_dir` must be a str or None"),
]


@pytest.mark.parametrize(("cls", "kwargs", "error", "match"), INIT_CASES,
                         ids=[f"{c.__name__}-{next(iter(k))}-{i}" for i, (c, k, _, _) in enumerate(INIT_CASES)])
def test_invalid_arguments_raise_in_init(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


SETUP_CASES = [
    (L1FilterPruning(pruning_ratio={"features.nope*": 0.5}), ValueError,
     r"`pruning_ratio` glob 'features.nope\*' matches no module.*Available: .*features.conv1"),
    (L1FilterPruning(ignored_layers=["nothing"]), ValueError, r"`ignored_layers` glob 'nothing' matches no module"),
    (L1FilterPruning(submodule="backbone"), ValueError, r"`submodule` must name a submodule of ImageClassifier"),
    (NetworkSlimming(ignored_layers=["features.*"]), ValueError, r"found no prunable BatchNorm"),
]


@pytest.mark.parametrize(("callback", "error", "match"), SETUP_CASES)
def test_model_dependent_errors_raise_in_setup_before_training(make_trainer, callback, error, match):
    module = tiny_module()
    trainer = make_trainer(callbacks=[callback], limit_train_batches=1)
    with pytest.raises(error, match=match):
        trainer.fit(module, datamodule=tiny_data())
    assert trainer.global_step == 0
    assert module.net.features.conv1.out_channels == 8  # nothing was modified


def test_slimming_rejects_pure_half_precision(make_trainer):
    trainer = make_trainer(callbacks=[NetworkSlimming()], precision="bf16-true", limit_train_batches=1)
    with pytest.raises(ValueError, match=r"needs fp32 master weights, got Trainer\(precision='bf16-true'\)"):
        trainer.fit(tiny_module(), datamodule=tiny_data())
    assert trainer.global_step == 0
