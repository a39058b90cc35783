"""Which interrupted run a new ``train.py`` process continues, and with which config.

``python train.py resume=<run dir>`` continues that run with the config saved in its ``results.json``; a run
started in a folder that already holds an unfinished run of the same config (a requeued cluster job) continues it
too. Overrides given beside ``resume`` may only repeat saved values (or set ``threads`` and ``paths.*``): anything
else would make the resumed result differ from the interrupted run's.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from lightning_compress.pipeline.results import DONE, RESULTS_FILE, read_results, run_status

# Keys that may differ between the interrupted run and its continuation: machine settings, not results.
FREE_KEYS = ("resume", "threads", "paths")
ATTEMPT_VARIABLE = "LIGHTNING_COMPRESS_ATTEMPT"


def run_to_resume(cfg: DictConfig, attempt: str) -> tuple[DictConfig, dict[str, Any] | None]:
    """``(config to run, record of the run it continues or None)``.

    With ``cfg.resume`` the config is the saved one (output folder: the resumed run's); otherwise ``cfg`` itself,
    with the record of an unfinished run of the same config already in ``cfg.paths.output_dir``, if any. A record
    written by this attempt's rank 0 (the same :func:`attempt_id`: this process is another DDP rank of the run)
    carries rank 0's decision (``resumed``), so every rank resumes or none does. ``attempt``: :func:`attempt_id`.

    Raises:
        LoadError: ``resume`` names no run folder or an unreadable ``results.json``.
        ValueError: an override beside ``resume`` changes the saved config (the keys are listed).
    """
    if cfg.get("resume"):
        folder = Path(str(cfg.resume)).resolve()
        record = read_results(folder, "resume")
        saved = OmegaConf.create(_relocated(record["config"], cfg, folder))
        _check_overrides(cfg, saved, folder)
        with open_dict(saved):
            saved.resume = str(folder)
            saved.paths.output_dir = str(folder)
            saved.threads = cfg.get("threads")
        return saved, record
    previous = Path(str(cfg.paths.output_dir)) / RESULTS_FILE
    if previous.is_file():
        record = read_results(previous.parent, "paths.output_dir")
        if record.get("attempt") == attempt:  # written by rank 0 of this very attempt
            return cfg, record if record.get("resumed") else None
        if run_status(record) != DONE and _comparable(record["config"]) == _comparable(
                OmegaConf.to_container(cfg, resolve=True)):
            return cfg, record
    return cfg, None


def attempt_id() -> str:
    """One id per attempt of a run, the same on all its DDP ranks: SLURM's job/array task/restart count, else a
    fresh id made by rank 0 for each run and inherited (environment) by the ranks Lightning starts."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return (f"slurm-{os.environ.get('SLURM_ARRAY_JOB_ID', job)}-{os.environ.get('SLURM_ARRAY_TASK_ID', '')}-"
                f"{os.environ.get('SLURM_RESTART_COUNT', '0')}")
    if rank_zero_only.rank == 0:
        os.environ[ATTEMPT_VARIABLE] = uuid.uuid4().hex
    return os.environ.get(ATTEMPT_VARIABLE, "")


def _relocated(config: dict[str, Any], cfg: DictConfig, folder: Path) -> dict[str, Any]:
    """The saved config with every path under a saved ``paths.*`` folder (and the run folder) moved under this
    process's: a run continues in another checkout, machine or folder (its logs, data and cache follow)."""
    old = dict(config.get("paths") or {})
    new = OmegaConf.to_container(cfg.paths, resolve=True) if cfg.get("paths") is not None else {}
    new["output_dir"] = str(folder)
    moves = sorted(((str(old[k]), str(new[k])) for k in old if isinstance(old[k], str) and k in new
                    and old[k] != new[k]), key=lambda move: -len(move[0]))

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str):
            for before, after in moves:
                if value == before or value.startswith(before.rstrip("/") + "/"):
                    return after + value[len(before):]
        return value

    return move(config)


def _check_overrides(cfg: DictConfig, saved: DictConfig, folder: Path) -> None:
    changed = []
    for key in _overridden_keys():
        if key.split(".", 1)[0] in FREE_KEYS:
            continue
        now, before = OmegaConf.select(cfg, key), OmegaConf.select(saved, key)
        if _plain(now) != _plain(before):
            changed.append(f"{key}: saved {_plain(before)!r}, given {_plain(now)!r}")
    if changed:
        raise ValueError(f"`resume`={str(folder)!r} continues that run with its saved config; these overrides change "
                         f"it (remove them, or start a new run): {'; '.join(changed)}.")


def _overridden_keys() -> list[str]:
    """Config keys set on the command line (``key=value``, ``+key=value``, ``group@package=option``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    keys = []
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        keys.append(key.split("@", 1)[1] if "@" in key else key.replace("/", "."))
    return keys


LOCATION_SUFFIXES = ("root", "dir", "path")  # where files live: a run may continue in another checkout or machine


def _plain(value: Any) -> Any:
    """A config value as plain Python, without the leaves that only say where files live (``data.root``,
    ``data.cache_dir``: they follow ``paths.*``, which a resumed run may change)."""
    plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return _without_locations(plain)


def _without_locations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_locations(v) for k, v in value.items() if not str(k).endswith(LOCATION_SUFFIXES)}
    return value


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in FREE_KEYS}
