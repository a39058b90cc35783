"""The distillation pipeline behind ``python train.py +method=fsp`` / ``+method=kd`` (``method.kind: distill``).

Stages (each saved under ``<run>/stages/<stage>/model.pt``):

1. ``teacher``: train ``method.teacher_model`` for ``method.teacher_fit.epochs``, or load ``method.teacher``.
2. ``student_alone``: the student (same initial weights as the distilled one) trained with cross-entropy only for
   ``method.student_alone.epochs`` (default: stage1 + stage2 epochs), so the gain of distilling is measured.
3. ``stage1``: the distillation fit, ``method.module`` (``FSPDistillation``: FSP loss only; ``KnowledgeDistillation``:
   soft targets + CE) with the frozen teacher.
4. ``stage2``: cross-entropy only from the stage-1 weights (FSP's second stage; 0 epochs for KD by default).

The student is ``cfg.model`` (fresh weights) or ``method.student_weights`` (a saved, possibly pruned, model).
Fills ``teacher``, ``student_alone`` and ``final`` in the run record, plus ``distillation`` (sources, pair shapes,
stage-1 metrics, accuracy gain).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lightning_compress.distillation.base import DistillationModule
from lightning_compress.distillation.teacher import FrozenTeacher, TeacherMismatchError
from lightning_compress.loading import LoadError
from lightning_compress.pipeline.artifacts import read_stage_model, save_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_net
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.stages import fit_classifier, fit_module, measure, test_accuracy


def run_distillation(ctx: RunContext) -> None:
    """Run teacher -> student_alone -> stage1 (distil) -> stage2 (CE) and record ``teacher``, ``student_alone``,
    ``final`` and ``distillation`` in ``ctx.record``."""
    method = ctx.cfg.method
    factory = hydra.utils.instantiate(method.module, _partial_=True, _convert_="all")
    student, plan, student_cfg = _student(ctx)
    teacher_path = method.get("teacher")
    teacher_cfg = method.get("teacher_model") or ctx.cfg.model
    if teacher_path:
        saved = read_stage_model(teacher_path, "method.teacher", teacher_cfg)
        teacher, teacher_cfg = saved.net, saved.model_cfg
    else:
        teacher = build_net(teacher_cfg)
    try:
        pairs = _check_config(ctx, factory, student, teacher, plan)  # fails before any training
    except TeacherMismatchError as err:
        if not teacher_path:
            raise
        raise LoadError(f"`method.teacher`={str(teacher_path)!r} does not fit this distillation: {err}", teacher_path,
                        "method.teacher") from None

    teacher_epochs = _teacher_stage(ctx, teacher, teacher_cfg, teacher_path)
    teacher_source = str(teacher_path or ctx.record["teacher"]["model_path"])
    epochs1, epochs2 = _epochs(method, "stage1"), _epochs(method, "stage2")
    alone_epochs = (method.get("student_alone") or {}).get("epochs")
    alone_epochs = epochs1 + epochs2 if alone_epochs is None else int(alone_epochs)
    alone = copy.deepcopy(student)  # same initial (or pruned) weights as the distilled student
    fit_classifier(ctx, "student_alone", alone, alone_epochs, optim=_optim(method, "student_alone"))
    _record(ctx, "student_alone", alone, student_cfg, plan)

    module = _build_module(ctx, factory, student, FrozenTeacher(teacher, source=teacher_source), plan,
                           optim=_optim(method, "stage1"))
    stage1_metrics = _distill_stage(ctx, module, epochs1)
    if epochs2 > 0:
        fit_classifier(ctx, "stage2", student, epochs2, optim=_optim(method, "stage2"))
    _record(ctx, "final", student, student_cfg, plan)

    ctx.record["distillation"] = {
        "module": type(module).__name__,
        "teacher_source": teacher_source,
        "student_weights": str(method.get("student_weights")) if method.get("student_weights") else None,
        "epochs": {"teacher": teacher_epochs, "student_alone": alone_epochs, "stage1": epochs1, "stage2": epochs2},
        "pairs": pairs,
        "stage1_metrics": stage1_metrics,
        "gain_vs_student_alone": ctx.record["final"]["test_acc"] - ctx.record["student_alone"]["test_acc"],
    }


def _teacher_stage(ctx: RunContext, teacher: nn.Module, teacher_cfg: DictConfig, path: str | None) -> int | None:
    """Train the teacher (or keep the loaded one) and record it; returns the epochs trained (None: loaded)."""
    epochs = None
    if not path:
        epochs = _epochs(ctx.cfg.method, "teacher_fit", int(ctx.cfg.trainer.max_epochs))
        fit_classifier(ctx, "teacher", teacher, epochs, optim=_optim(ctx.cfg.method, "teacher_fit"))
    _record(ctx, "teacher", teacher, teacher_cfg)
    if path:
        ctx.record["teacher"]["loaded_from"] = str(path)
    return epochs


def _distill_stage(ctx: RunContext, module: DistillationModule, epochs: int) -> dict[str, float]:
    """Fit the distillation module (stage 1); returns its last epoch-level metrics."""
    trainer = fit_module(ctx, "stage1", module, epochs)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and not k.endswith("_step")}


def _student(ctx: RunContext) -> tuple[nn.Module, Any, DictConfig]:
    """The student: ``cfg.model`` with fresh weights, or ``method.student_weights`` (its plan re-applied)."""
    path = ctx.cfg.method.get("student_weights")
    if not path:
        return build_net(ctx.cfg.model), None, ctx.cfg.model
    saved = read_stage_model(path, "method.student_weights", ctx.cfg.model)
    return saved.net, saved.plan, saved.model_cfg


def _check_config(ctx: RunContext, factory: Any, student: nn.Module, teacher: nn.Module, plan: Any) -> Any:
    """Build the distillation module on copies once, so bad arguments and FSP channel mismatches fail first."""
    probe = _build_module(ctx, factory, copy.deepcopy(student), FrozenTeacher(copy.deepcopy(teacher)), plan,
                          optim=_optim(ctx.cfg.method, "stage1"))
    if hasattr(probe, "check_pairs"):
        return probe.check_pairs(ctx.datamodule.example_input(2))
    return None


def _build_module(ctx: RunContext, factory: Any, student: nn.Module, teacher: FrozenTeacher, plan: Any,
                  optim: Mapping[str, Any]) -> DistillationModule:
    module_cfg = OmegaConf.to_container(ctx.cfg.module, resolve=True)
    module = factory(net=student, teacher=teacher, num_classes=int(ctx.cfg.data.num_classes),
                     optim={**module_cfg.get("optim", {}), **optim}, scheduler=module_cfg.get("scheduler", {}),
                     student_plan=plan.to_dict() if plan is not None else None)
    if not isinstance(module, DistillationModule):
        raise TypeError(f"`method.module` must build a DistillationModule, got {type(module).__name__}.")
    return module


def _record(ctx: RunContext, section: str, net: nn.Module, model_cfg: DictConfig, plan: Any = None) -> dict:
    """Test, measure and save ``net`` with ITS model config (the teacher's may differ from ``cfg.model``)."""
    acc = test_accuracy(ctx, build_classifier(ctx.cfg, net), section)
    entry = {"test_acc": acc, **measure(ctx, net)}
    entry["model_path"] = str(save_stage_model(ctx.stage_dir(section) / "model.pt", net, model_cfg, plan,
                                               input_shape=ctx.datamodule.example_input(1).shape[1:]))
    ctx.record[section] = entry
    return entry


def _epochs(method: DictConfig, stage: str, default: int = 0) -> int:
    epochs = (method.get(stage) or {}).get("epochs")
    epochs = default if epochs is None else int(epochs)
    if epochs < 0:
        raise ValueError(f"`method.{stage}.epochs` must be >= 0, got {epochs!r}.")
    return epochs


def _optim(method: DictConfig, stage: str) -> dict[str, Any]:
    """``method.<stage>.optim`` without its null entries (null: keep ``module.optim``'s value)."""
    optim = (method.get(stage) or {}).get("optim") or {}
    optim = OmegaConf.to_container(optim, resolve=True) if isinstance(optim, DictConfig) else dict(optim)
    return {k: v for k, v in optim.items() if v is not None}


__all__ = ["run_distillation"]
