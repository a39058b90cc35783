"""Stage building blocks: train, test, measure and save one network; time and export the saved ones at the end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress.cost import (
    batch_of,
    compare_latency,
    latency_change,
    page_fault_note,
    profile_model,
    speed_ratio,
)
from lightning_compress.pipeline.artifacts import load_stage_model, save_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_net, build_trainer
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.metrics_history import read_earlier_rows, restore_earlier_rows
from lightning_compress.pipeline.results import NOT_RUN

# Stages whose saved models are timed together at the end of a run, and the references they are compared with.
LATENCY_SECTIONS = ("baseline", "teacher", "student_alone", "final")
LATENCY_REFERENCES = ("baseline", "teacher")


def fit_classifier(ctx: RunContext, stage: str, net: nn.Module, epochs: int, callbacks: Sequence[Callback] = (),
                   optim: Mapping[str, Any] | None = None, scheduler: Mapping[str, Any] | None = None,
                   setup_only: bool = False) -> tuple[pl.LightningModule, pl.Trainer]:
    """Train ``net`` (in place) for ``epochs`` with ``cfg.module`` settings updated by ``optim``/``scheduler``."""
    module = build_classifier(ctx.cfg, net, optim_overrides=optim, scheduler_overrides=scheduler)
    return module, fit_module(ctx, stage, module, epochs, callbacks, setup_only)


def fit_module(ctx: RunContext, stage: str, module: pl.LightningModule, epochs: int,
               callbacks: Sequence[Callback] = (), setup_only: bool = False) -> pl.Trainer:
    """Fit any LightningModule as stage ``stage`` (its own logger version and checkpoint folder; resumable).

    ``setup_only`` with 0 epochs still runs the fit's setup (a one-shot pruning callback cuts there) and trains
    nothing."""
    trainer = build_trainer(ctx.cfg, stage, epochs, callbacks, checkpoint_dir=str(ctx.stage_dir(stage)))
    rank_zero_info(f"[lightning-compress] stage {stage!r}: {epochs} epochs")
    if epochs == 0 and setup_only:
        trainer.fit(module, datamodule=ctx.datamodule)
    elif epochs > 0:  # a resumed run continues from the stage's checkpoint (a finished fit only restores it)
        resume_from = ctx.checkpoint_to_resume(stage)
        earlier = read_earlier_rows(trainer) if resume_from is not None else {}
        trainer.fit(module, datamodule=ctx.datamodule, ckpt_path=resume_from, weights_only=True)
        if trainer.is_global_zero:  # the CSV logger (rank 0) rewrote the file from the resumed epoch on
            restore_earlier_rows(earlier)
    return trainer


def test_accuracy(ctx: RunContext, module: pl.LightningModule, stage: str) -> float:
    """Test accuracy of ``module`` on the data module's test split (a fresh single-purpose Trainer)."""
    trainer = build_trainer(ctx.cfg, f"{stage}-test", max_epochs=1)
    metrics = trainer.test(module, datamodule=ctx.datamodule, verbose=False)
    if "test/acc" not in metrics[0]:
        raise ValueError(f"{type(module).__name__} must log 'test/acc' in its test_step (the results' accuracy), "
                         f"logged {sorted(metrics[0])}.")
    return float(metrics[0]["test/acc"])


def measure(ctx: RunContext, net: nn.Module) -> dict[str, Any]:
    """Parameters, MACs and FLOPs of ``net`` on the data's input shape (latency: :func:`record_latency`)."""
    example = ctx.datamodule.example_input(1)
    device = next(net.parameters()).device
    return profile_model(net, example.to(device)).as_dict()


def record_stage(ctx: RunContext, section: str, module: pl.LightningModule, net: nn.Module, plan: Any = None,
                 test_acc: float | None = None, model_cfg: DictConfig | None = None,
                 not_run: str | None = None) -> dict[str, Any]:
    """Test, measure and save ``net`` (built from ``model_cfg``, default ``cfg.model``) as ``ctx.record[section]``.

    ``not_run`` (the reason) marks a stage that trained nothing: it is recorded with ``status: "not run"`` and
    ``test_acc: null`` (an untrained network's accuracy is no measurement); its size and file are still recorded.
    """
    if not_run is not None:
        entry = {"status": NOT_RUN, "reason": not_run, "test_acc": None, **measure(ctx, net)}
    else:
        acc = test_accuracy(ctx, module, section) if test_acc is None else test_acc
        entry = {"test_acc": acc, **measure(ctx, net)}
    model_cfg = ctx.cfg.model if model_cfg is None else model_cfg
    entry["model_path"] = str(save_stage_model(ctx.stage_dir(section) / "model.pt", net, model_cfg, plan,
                                               input_shape=ctx.datamodule.example_input(1).shape[1:]))
    ctx.record[section] = entry
    return entry


def check_measurement_config(cfg: DictConfig) -> None:
    """Validate ``cfg.latency`` and ``cfg.export`` before any training (a bad value fails the run at once)."""
    settings = latency_settings(cfg)
    if settings["device"].type == "cuda" and not torch.cuda.is_available():
        raise ValueError("`latency.device` is 'cuda' but no CUDA device is available.")
    if cfg.get("export"):
        from lightning_compress.portable import check_format

        check_format(str(cfg.export))


def latency_settings(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.latency`` as checked values: batch_size (0 = skip), repeats, warmup, threads (None = torch's), device,
    channels_last (None = as ``module.channels_last``)."""
    latency = cfg.get("latency") or {}
    settings = {key: latency.get(key, default) for key, default in
                (("batch_size", 0), ("repeats", 20), ("warmup", 5), ("threads", None), ("device", "cpu"),
                 ("channels_last", None))}
    for key, low in (("batch_size", 0), ("repeats", 1), ("warmup", 0)):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < low:
            raise ValueError(f"`latency.{key}` must be an int >= {low}, got {settings[key]!r}.")
    threads = settings["threads"]
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"`latency.threads` must be null or an int >= 1, got {threads!r}.")
    if settings["device"] not in ("cpu", "cuda"):
        raise ValueError(f"`latency.device` must be 'cpu' or 'cuda', got {settings['device']!r}.")
    settings["device"] = torch.device(settings["device"])
    if settings["channels_last"] is None:
        settings["channels_last"] = bool((cfg.get("module") or {}).get("channels_last", False))
    elif not isinstance(settings["channels_last"], bool):
        raise ValueError(f"`latency.channels_last` must be null or a bool, got {settings['channels_last']!r}.")
    return settings


def record_latency(ctx: RunContext) -> dict[str, Any] | None:
    """Time the saved models of the run's stages in ONE interleaved comparison (``cfg.latency``).

    Each of ``baseline``, ``teacher``, ``student_alone`` and ``final`` that the run saved is reloaded from its file
    and all are timed alternately in this process, so before and after see the same machine load. The reference is
    ``baseline`` (pruning) or ``teacher`` (distillation); a pruned ``final`` without a baseline (``method.compressed``)
    is compared with its unpruned architecture (fresh weights). Fills every timed section's ``latency_*`` fields and
    ``ctx.record["latency"]``: the settings, each model's median and quartiles, and each model's speedup and verdict
    against the reference. Returns that entry (None when ``latency.batch_size`` is 0 or nothing was saved).
    """
    settings = latency_settings(ctx.cfg)
    sections = [s for s in LATENCY_SECTIONS if isinstance(ctx.record.get(s), dict) and ctx.record[s].get("model_path")]
    if not settings["batch_size"] or not sections:
        return None
    models: dict[str, nn.Module] = {}
    plans: dict[str, Any] = {}
    for section in sections:
        models[section], plans[section] = load_stage_model(ctx.record[section]["model_path"])
    reference = next((s for s in LATENCY_REFERENCES if s in models), None)
    if reference is None and plans.get("final") is not None:
        models = {"unpruned": build_net(ctx.cfg.model), **models}
        reference = "unpruned"
    device = settings["device"]
    example = batch_of(ctx.datamodule.example_input(1), settings["batch_size"]).to(device)
    timed = compare_latency({name: net.to(device) for name, net in models.items()}, example,
                            warmup=settings["warmup"], repeats=settings["repeats"], threads=settings["threads"],
                            channels_last=settings["channels_last"])
    for section in sections:
        ctx.record[section].update(timed[section].as_fields())
    note = page_fault_note(timed)
    if note:
        rank_zero_warn(note)
    entry = {"interleaved": True, "reference": reference, "channels_last": settings["channels_last"],
             "models": {n: lat.as_dict() for n, lat in timed.items()}}
    if reference is not None:
        entry["changes"] = {name: latency_change(timed[reference], lat).as_dict() for name, lat in timed.items()
                            if name != reference}
        for name, change in entry["changes"].items():  # realised speed-up against what the MACs promise
            before, after = (ctx.record.get(reference) or {}).get("macs"), (ctx.record.get(name) or {}).get("macs")
            if before and after:
                change["speed_ratio"] = speed_ratio(before / after, change["speedup"]).as_dict()
    ctx.record["latency"] = entry
    return entry


def record_export(ctx: RunContext, section: str = "final") -> dict[str, Any] | None:
    """With ``cfg.export`` (onnx | pt2): export the saved ``section`` model, check its parity with PyTorch and, when
    ``latency.batch_size`` > 0, time it against its unpruned architecture; the report goes to ``ctx.record["export"]``.

    A parity failure is recorded (``export.parity.passed: false``) and warned about; the run's results still get
    written (re-export with ``python -m lightning_compress.export``).
    """
    fmt = ctx.cfg.get("export")
    entry = ctx.record.get(section)
    if not fmt or not isinstance(entry, dict) or not entry.get("model_path"):
        return None
    from lightning_compress.pipeline.export_stage import export_stage_file

    settings = latency_settings(ctx.cfg)
    report = export_stage_file(Path(entry["model_path"]), str(fmt),
                               input_shape=ctx.datamodule.example_input(1).shape[1:],
                               latency_batch_size=settings["batch_size"], repeats=settings["repeats"],
                               warmup=settings["warmup"], threads=settings["threads"])
    ctx.record["export"] = report
    change = (report.get("latency") or {}).get("change")
    base_macs = (ctx.record.get("baseline") or ctx.record.get("teacher") or {}).get("macs")
    if change and base_macs and entry.get("macs"):  # the exported file's speed-up against what its MACs promise
        report["latency"]["speed_ratio"] = speed_ratio(base_macs / entry["macs"], change["speedup"]).as_dict()
    if not report["parity"]["passed"]:
        rank_zero_warn(f"[lightning-compress] exported {fmt} model {report['file']} FAILED the parity check: max "
                       f"|diff| {report['parity']['max_abs_diff']:.3g} > atol {report['parity']['atol']:g} + rtol "
                       f"{report['parity']['rtol']:g} x |output|.")
    return report


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and the DataLoader workers."""
    pl.seed_everything(seed, workers=True, verbose=False)
