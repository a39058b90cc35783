"""Hydra/OmegaConf glue shared by the command-line entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"


def if_set(value: Any, then: Any, otherwise: Any) -> Any:
    """``then`` when ``value`` is set (not None or empty), else ``otherwise``."""
    return then if value not in (None, "") else otherwise


def register_resolvers() -> None:
    """``${project_root:}``: the folder holding ``conf/`` and ``train.py`` (so paths work from any cwd);
    ``${if_set:value,then,otherwise}`` (e.g. a resumed run keeps its folder: ``${if_set:${resume},...}``)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("if_set"):
        OmegaConf.register_new_resolver("if_set", if_set)
