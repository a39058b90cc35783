"""The pruning papers' pipeline: baseline -> compress (fit with the method's callback) -> fine-tune -> test.

``cfg.method`` (from ``conf/method/<name>.yaml``) holds:

* ``callback``: the compression callback (``_target_`` + arguments), a
  :class:`~lightning_compress.callbacks.CompressionCallback`: after its fit ``finalize`` gives the plan (relative to
  the unpruned network) and the network is physically smaller.
* ``pretrained``: a saved model (``stages/baseline/model.pt`` of an earlier run, or a Lightning checkpoint) that
  replaces baseline training; ``compressed``: a saved compressed model that skips baseline and compression.
* ``baseline.epochs``; ``compress.epochs``, ``compress.optim`` (overrides of ``module.optim``) and
  ``compress.from_scratch`` (the compress fit starts from fresh weights, as Network Slimming's sparsity training
  does, instead of from the baseline), ``compress.scheduler`` (overrides of ``module.scheduler``, e.g.
  ``{name: constant}`` for Li et al.'s constant-lr retraining); ``finetune.epochs``, ``finetune.optim`` and
  ``finetune.scheduler``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from lightning_compress.callbacks.base import CompressionCallback, OneShotPruning
from lightning_compress.distillation import FrozenTeacher
from lightning_compress.distillation.kd import KnowledgeDistillation
from lightning_compress.pipeline.artifacts import load_stage_model, read_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_net
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.stages import fit_classifier, fit_module, record_stage, test_accuracy
from lightning_compress.pruning.calibration import batchnorm_buffers, load_batchnorm_buffers


def run_pruning_method(ctx: RunContext) -> None:
    """Run every stage of ``cfg.method`` and fill ``baseline``, ``compressed`` and ``final`` in the record."""
    method = ctx.cfg.method
    callback = hydra.utils.instantiate(method.callback)  # validates its arguments before any training
    if not isinstance(callback, Callback) or not isinstance(callback, CompressionCallback):
        raise TypeError(f"`method.callback` must build a Lightning Callback with the CompressionCallback interface "
                        f"(plan, finished, finalize), got {type(callback).__name__}.")
    if method.get("compressed"):
        net, plan = load_stage_model(method.compressed, ctx.cfg.model, key="method.compressed", same_model=True)
        ctx.record["loaded_compressed"] = str(method.compressed)
    else:
        net = _baseline(ctx, method)
        compress = method.get("compress") or {}
        start = build_net(ctx.cfg.model) if compress.get("from_scratch", False) else net
        epochs = int(compress.get("epochs", 0))
        one_shot = isinstance(callback, OneShotPruning)  # cuts in setup: 0 epochs = the cut alone, no retraining
        module, _ = fit_classifier(ctx, "compress", start, epochs, [callback], optim=compress.get("optim"),
                                   scheduler=compress.get("scheduler"), setup_only=one_shot)
        net, plan = start, callback.finalize(module, ctx.datamodule.example_input(1))
        entry = record_stage(ctx, "compressed", module, net, plan)
        record_cut(ctx, entry, callback, module, net, retrained=one_shot and epochs > 0)
        if getattr(callback, "alignment", None):  # round_to="auto": the multiple chosen and what was timed
            entry["alignment"] = callback.alignment
        budget = getattr(callback, "budget", None)
        if budget is not None:  # target_macs / target_latency_ms: what the search found and reached
            entry["budget"] = budget.as_dict()
    finetune = method.get("finetune") or {}
    # A finished callback rides along (it only writes the pruning plan into every fine-tune checkpoint).
    riders = [callback] if callback.finished else []
    epochs = int(finetune.get("epochs", 0))
    if finetune.get("distill"):
        module = _distilling_student(ctx, net, plan, finetune)
        fit_module(ctx, "finetune", module, epochs, riders)
    else:
        module, _ = fit_classifier(ctx, "finetune", net, epochs, riders, optim=finetune.get("optim"),
                                   scheduler=finetune.get("scheduler"))
    record_stage(ctx, "final", module, net, plan)


def _distilling_student(ctx: RunContext, net, plan, finetune: DictConfig) -> KnowledgeDistillation:
    """``method.finetune.distill: kd``: the pruned network learns from the unpruned baseline (Hinton et al.'s KD with
    ``method.finetune.kd`` = ``{temperature, alpha}``) instead of the labels alone."""
    if finetune.distill != "kd":
        raise ValueError(f"`method.finetune.distill` must be null or 'kd', got {finetune.distill!r}.")
    source = (ctx.record.get("baseline") or {}).get("model_path") or ctx.cfg.method.get("pretrained")
    if not source:
        raise ValueError("`method.finetune.distill` needs the unpruned baseline as teacher: with `method.compressed` "
                         "also give `method.pretrained`.")
    teacher = read_stage_model(source, "method.pretrained", ctx.cfg.model).net
    module_cfg = OmegaConf.to_container(ctx.cfg.module, resolve=True)
    kd = dict(finetune.get("kd") or {})
    return KnowledgeDistillation(net, FrozenTeacher(teacher, source=str(source)), int(ctx.cfg.data.num_classes),
                                 optim={**module_cfg.get("optim", {}), **dict(finetune.get("optim") or {})},
                                 scheduler={**module_cfg.get("scheduler", {}), **dict(finetune.get("scheduler") or {})},
                                 student_plan=plan.to_dict() if plan is not None else None, **kd)


def _baseline(ctx: RunContext, method: DictConfig):
    """Train the baseline network, or load ``method.pretrained``; record its numbers as ``baseline``."""
    if method.get("pretrained"):
        net, _ = load_stage_model(method.pretrained, ctx.cfg.model, key="method.pretrained", same_model=True)
        record_stage(ctx, "baseline", build_classifier(ctx.cfg, net), net)
        ctx.record["baseline"]["loaded_from"] = str(method.pretrained)
        return net
    net = build_net(ctx.cfg.model)
    epochs = int((method.get("baseline") or {}).get("epochs", ctx.cfg.trainer.max_epochs))
    module, _ = fit_classifier(ctx, "baseline", net, epochs)
    record_stage(ctx, "baseline", module, net, not_run="method.baseline.epochs is 0" if epochs == 0 else None)
    return net


def record_cut(ctx: RunContext, entry: dict, callback: Callback, module, net, retrained: bool = False) -> None:
    """What the callback saw at its cut, beside the accuracy right after it: the Slimming sparsity report, dead
    channels, and with ``bn_recalibration`` the accuracy with the statistics before the recalibration too (not when
    the network was ``retrained`` after the cut within the same fit)."""
    report = getattr(callback, "sparsity_report", None)
    if report:
        entry["sparsity"] = dict(report)
    dead = getattr(callback, "dead_after_cut", None)
    if dead:
        entry["dead_channels"] = {name: {"dead": d, "kept": k} for name, (d, k) in dead.items()}
    before = getattr(callback, "bn_buffers_before_recalibration", None)
    if before is None or retrained:
        return
    recalibrated = batchnorm_buffers(net)
    load_batchnorm_buffers(net, before)
    try:
        acc_before = test_accuracy(ctx, module, "compressed-before-bn-recalibration")
    finally:
        load_batchnorm_buffers(net, recalibrated)
    entry["bn_recalibration"] = {"batches": int(callback.bn_recalibration), "test_acc_before": acc_before,
                                 "test_acc_after": entry["test_acc"]}
