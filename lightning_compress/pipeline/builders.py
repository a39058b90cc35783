"""Instantiate data, networks, LightningModules and Trainers from the Hydra config; set the threads per process."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn

from lightning_compress.modules import ImageClassifier
from lightning_compress.pipeline.checkpoints import FitEndCheckpoint, RandomState
from lightning_compress.pipeline.progress import EpochLine, interactive

# OMP_NUM_THREADS as the user (or a scheduler) set it before this process touched it.
_THREADS_FROM_ENVIRONMENT = os.environ.get("OMP_NUM_THREADS")


SHAPE_KEYS = ("num_classes", "in_channels", "image_size")  # every data config declares them (models interpolate them)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module of ``cfg.data``, checked before any training (the contract for your own data module).

    ``cfg.data`` must declare ``num_classes``, ``in_channels`` and ``image_size``; the module is built with the keys
    its ``__init__`` accepts (all with ``**kwargs``: this project's modules check the shape keys). Without an
    ``example_input(n)`` method it gets one returning zeros of the declared shape (tracing, MACs and latency use it).

    Raises:
        ValueError: a shape key is missing or not a positive int, or the module is no LightningDataModule.
    """
    data = OmegaConf.to_container(cfg.data, resolve=True)
    target = data.get("_target_", "?")
    missing = [key for key in SHAPE_KEYS if key not in data]
    bad = [key for key in SHAPE_KEYS if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int)
                                                         or data[key] < 1)]
    if missing or bad:
        raise ValueError(f"`data` ({target}) must declare {list(SHAPE_KEYS)} as positive ints (models and the "
                         f"classifier read them); missing {missing}, not positive ints {bad}.")
    accepted = _accepted_keys(target, data)
    datamodule = hydra.utils.instantiate({k: v for k, v in data.items() if k == "_target_" or k in accepted})
    if not isinstance(datamodule, pl.LightningDataModule):
        raise ValueError(f"`data._target_`={target!r} must build a pytorch_lightning LightningDataModule (the app's "
                         f"Trainer), got {type(datamodule).__name__}.")
    if not callable(getattr(datamodule, "example_input", None)):
        shape = (int(data["in_channels"]), int(data["image_size"]), int(data["image_size"]))
        datamodule.example_input = lambda batch_size=1: torch.zeros(batch_size, *shape)
    return datamodule


def _accepted_keys(target: str, data: Mapping[str, Any]) -> set[str]:
    """The keys of ``data`` the ``__init__`` of ``target`` accepts (all of them with ``**kwargs``)."""
    parameters = inspect.signature(hydra.utils.get_class(target)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return set(data)
    names = {p.name for p in parameters}
    return {key for key in data if key in names or key not in SHAPE_KEYS}


def build_net(model_cfg: DictConfig) -> nn.Module:
    """A fresh, untrained network from a ``conf/model`` entry."""
    net = hydra.utils.instantiate(model_cfg)
    if not isinstance(net, nn.Module):
        raise TypeError(f"`model._target_` must build an nn.Module, got {type(net).__name__}.")
    return net


def build_classifier(cfg: DictConfig, net: nn.Module, optim_overrides: Mapping[str, Any] | None = None,
                     scheduler_overrides: Mapping[str, Any] | None = None) -> pl.LightningModule:
    """Wrap ``net`` in an :class:`ImageClassifier` with ``cfg.module`` settings, updated by the stage's overrides;
    with ``module._target_``, in your own LightningModule instead (:func:`build_user_module`)."""
    module_cfg = OmegaConf.to_container(cfg.module, resolve=True)
    optim = {**module_cfg.get("optim", {}), **dict(optim_overrides or {})}
    scheduler = {**module_cfg.get("scheduler", {}), **dict(scheduler_overrides or {})}
    if module_cfg.get("_target_"):
        return build_user_module(module_cfg, net, int(cfg.data.num_classes), optim, scheduler)
    return ImageClassifier(net, num_classes=int(cfg.data.num_classes), optim=optim, scheduler=scheduler,
                           channels_last=bool(module_cfg.get("channels_last", False)))


def build_user_module(module_cfg: Mapping[str, Any], net: nn.Module, num_classes: int, optim: Mapping[str, Any],
                      scheduler: Mapping[str, Any]) -> pl.LightningModule:
    """Your LightningModule (``module._target_``) around ``net``: the contract.

    It is called with ``net=`` and, if its ``__init__`` takes them (or ``**kwargs``), ``num_classes``, ``optim`` and
    ``scheduler`` (``module.optim`` / ``module.scheduler`` updated by each stage's overrides) and the other keys of
    ``module``. It must be a ``pytorch_lightning.LightningModule`` keeping ``net`` as ``self.net`` or ``self.model``
    (where the pruning callbacks find it) and log ``test/acc`` in its ``test_step`` (the results' accuracy).

    Raises:
        TypeError: its ``__init__`` takes no ``net``, or it is no LightningModule or does not keep ``net``.
    """
    target = module_cfg["_target_"]
    factory = hydra.utils.get_method(target)
    offered = {**{k: v for k, v in module_cfg.items() if k not in ("_target_", "optim", "scheduler")},
               "num_classes": num_classes, "optim": dict(optim), "scheduler": dict(scheduler)}
    parameters = inspect.signature(factory).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if "net" not in parameters and not takes_all:
        raise TypeError(f"`module._target_`={target!r} must take the network as `net`, got the parameters "
                        f"{list(parameters)}.")
    module = factory(net=net, **{k: v for k, v in offered.items() if takes_all or k in parameters})
    if not isinstance(module, pl.LightningModule) or not any(getattr(module, a, None) is net for a in ("net", "model")):
        raise TypeError(f"`module._target_`={target!r} must build a pytorch_lightning LightningModule keeping the "
                        f"network it is given as `self.net` or `self.model`, got {type(module).__name__}.")
    return module


def build_trainer(cfg: DictConfig, stage: str, max_epochs: int, callbacks: Sequence[Callback] = (),
                  checkpoint_dir: str | None = None) -> pl.Trainer:
    """A Trainer from ``cfg.trainer`` for one stage: its own epochs, logger version and checkpoint folder.

    With checkpointing and a ``checkpoint_dir`` the stage is resumable (``last.ckpt`` every epoch, ``done.ckpt`` at
    the end, random states in both). ``trainer.enable_progress_bar: null`` shows a bar on a terminal only; without a
    bar every epoch is one line of the log.
    """
    loggers = [hydra.utils.instantiate(c, version=stage) for c in (cfg.get("logger") or {}).values() if c]
    all_callbacks = list(callbacks)
    for callback_cfg in (cfg.get("callbacks") or {}).values():
        if callback_cfg:
            all_callbacks.append(hydra.utils.instantiate(callback_cfg))
    enable_checkpointing = bool(cfg.trainer.get("enable_checkpointing", True))
    if enable_checkpointing and checkpoint_dir is not None:
        all_callbacks += [RandomState(), ModelCheckpoint(dirpath=checkpoint_dir, filename="{epoch}", save_last=True),
                          FitEndCheckpoint(checkpoint_dir)]
    progress_bar = cfg.trainer.get("enable_progress_bar")
    progress_bar = interactive() if progress_bar is None else bool(progress_bar)
    if not progress_bar:
        all_callbacks.append(EpochLine(stage))
    return hydra.utils.instantiate(
        cfg.trainer, max_epochs=max_epochs, callbacks=all_callbacks, logger=loggers or False,
        default_root_dir=cfg.paths.output_dir, enable_checkpointing=enable_checkpointing,
        enable_progress_bar=progress_bar,
    )


def configure_threads(cfg: DictConfig) -> int:
    """Set this process's intra-op threads (``torch.set_num_threads`` and ``OMP_NUM_THREADS`` for its children, so
    Lightning's DDP launcher and DataLoader workers keep it); returns the number.

    ``cfg.threads`` wins; else an ``OMP_NUM_THREADS`` set before the process started; else
    :func:`threads_per_process` of the cores this run may use (:func:`usable_cores`) and the processes sharing them
    (its local DDP processes, times the pytest-xdist workers when tests run in parallel).

    Raises:
        ValueError: ``threads`` is not a positive int (or null).
    """
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"`threads` must be a positive int or null (automatic), got {threads!r}.")
    if threads is None and _THREADS_FROM_ENVIRONMENT and _THREADS_FROM_ENVIRONMENT.isdigit():
        threads = max(1, int(_THREADS_FROM_ENVIRONMENT))
    if threads is None:
        threads = threads_per_process(usable_cores(), local_processes(cfg.trainer) * parallel_test_workers())
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def threads_per_process(cores: int, processes: int) -> int:
    """Threads each of ``processes`` concurrent processes may use on ``cores`` cores without oversubscribing
    them (at least 1)."""
    return max(1, int(cores) // max(1, int(processes)))


def usable_cores() -> int:
    """Cores this run may use: ``SLURM_CPUS_PER_TASK``, else the Hydra launcher's ``cpus_per_task`` (e.g.
    ``hydra/launcher=local``, whose jobs all run at once), else the CPUs this process is allowed to run on."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    launcher_cpus = _launcher_cpus_per_task()
    if launcher_cpus:
        return launcher_cpus
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_processes(trainer_cfg: DictConfig) -> int:
    """Processes one run starts on this machine: ``devices`` under a DDP strategy, else 1."""
    strategy = str(trainer_cfg.get("strategy") or "")
    devices = trainer_cfg.get("devices")
    if not strategy.startswith("ddp"):
        return 1
    if isinstance(devices, int) and devices > 0:
        return devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return len(devices)
    return 1


def parallel_test_workers() -> int:
    """pytest-xdist workers running at once (``PYTEST_XDIST_WORKER_COUNT``), else 1."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    return int(workers) if workers.isdigit() and int(workers) > 0 else 1


def _launcher_cpus_per_task() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    cpus = OmegaConf.select(HydraConfig.get(), "launcher.cpus_per_task")
    return int(cpus) if isinstance(cpus, int) and cpus > 0 else None
