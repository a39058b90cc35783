"""Hydra/OmegaConf glue shared by the command-line entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE_DIR.parent


def _config_dir() -> Path:
    """The app's config tree: ``conf/`` of a source checkout (beside the package), else the copy an installed wheel
    ships inside the package (``lightning_compress/conf``, copied there at build time by ``setup.py``)."""
    checkout = _CHECKOUT / "conf"
    return checkout if (checkout / "train.yaml").is_file() else _PACKAGE_DIR / "conf"


CONFIG_DIR = _config_dir()
# Where relative paths (logs/, .cache/, ../shared/datasets) resolve: the checkout, whatever the working directory;
# for an installed package, the working directory the app was started in.
PROJECT_ROOT = _CHECKOUT if CONFIG_DIR.parent == _CHECKOUT else Path.cwd()


def if_set(value: Any, then: Any, otherwise: Any) -> Any:
    """``then`` when ``value`` is set (not None or empty), else ``otherwise``."""
    return then if value not in (None, "") else otherwise


def register_resolvers() -> None:
    """``${project_root:}``: :data:`PROJECT_ROOT` (the checkout holding ``conf/`` and ``train.py``, so paths work from
    any cwd; the working directory for an installed package);
    ``${if_set:value,then,otherwise}`` (e.g. a resumed run keeps its folder: ``${if_set:${resume},...}``)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("if_set"):
        OmegaConf.register_new_resolver("if_set", if_set)
