"""The YAMLs tell the truth: every callback/module config lists exactly its constructor's arguments, and an experiment
file only holds what differs from the method it builds on."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from lightning_compress.config import CONFIG_DIR

METHODS = sorted(Path(CONFIG_DIR, "method").glob("*.yaml"))
EXPERIMENTS = sorted(Path(CONFIG_DIR, "experiment").glob("*.yaml"))
# arguments the pipeline passes to a distillation module itself (the run's network, teacher, data and optimiser)
INJECTED = {"net", "teacher", "num_classes", "optim", "scheduler", "student_plan"}


def _raw(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _parameters(target: str) -> set[str]:
    signature = inspect.signature(get_class(target).__init__)
    return {n for n, p in signature.parameters.items() if n != "self" and p.kind is not p.VAR_KEYWORD}


@pytest.mark.parametrize("path", METHODS, ids=[p.stem for p in METHODS])
def test_method_yaml_lists_exactly_the_constructor_arguments(path: Path) -> None:
    method = _raw(path)["method"]
    for part, injected in (("callback", set()), ("module", INJECTED)):
        if part not in method:
            continue
        cfg = dict(method[part])
        expected = _parameters(cfg.pop("_target_")) - injected
        assert set(cfg) == expected, f"{path.name} {part}: unknown {sorted(set(cfg) - expected)}, " \
                                     f"missing {sorted(expected - set(cfg))}"


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_callback_settings_differ_from_the_method(path: Path) -> None:
    experiment = _raw(path)
    methods = [d.split(":", 1)[1].strip().split("/")[-1] for d in experiment.get("defaults", [])
               if isinstance(d, str) and d.startswith("/method")]
    methods += [v for d in experiment.get("defaults", []) if isinstance(d, dict) for k, v in d.items()
                if k.lstrip("/") == "method"]
    if not methods:
        return
    base = _leaves(_raw(Path(CONFIG_DIR, "method", f"{methods[0]}.yaml"))["method"])
    ours = _leaves(experiment.get("method") or {})
    repeated = sorted(k for k, v in ours.items() if k.startswith(("callback.", "module.")) and base.get(k) == v)
    assert not repeated, f"{path.name} repeats the method's values: {repeated}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_composes(path: Path, compose_config) -> None:
    """`python train.py +experiment=<name>` composes (Hydra's defaults-list rules, e.g. overrides last) and resolves."""
    cfg = compose_config(f"+experiment={path.stem}")
    OmegaConf.resolve(cfg)
    assert cfg.model._target_ and cfg.data._target_
    if path.stem.endswith("_cpu"):  # the CPU budget of experiments/RESULTS.md is on top of the paper recipe
        assert cfg.trainer.precision == "32-true" and cfg.module.channels_last
