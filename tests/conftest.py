"""Shared fixtures: Hydra configs composed the way `train.py` composes them, written to a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.pipeline.builders import parallel_test_workers, threads_per_process, usable_cores

register_resolvers()
torch.set_num_threads(threads_per_process(usable_cores(), parallel_test_workers()))  # as the app chooses

# Fast, quiet Trainer settings for tests: no progress bars, no latency timing.
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "logger=none",
    "latency.batch_size=0",
]


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    """Every test starts from the same random state, whatever ran before it: its result does not depend on the order
    or the selection of the tests run (CI once drew different initial weights than a local run)."""
    torch.manual_seed(0)


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``compose_config(*overrides, config_name="train")`` -> a resolved-ready config writing into ``tmp_path``."""

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            quiet = QUIET if config_name == "train" else []
            cfg = compose(config_name=config_name, overrides=[*quiet, *overrides], return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.cache_dir = str(tmp_path / "cache")
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
