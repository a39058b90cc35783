"""The training pipeline behind ``train.py``: stages, run record and summary.

``run(cfg)`` trains the configured network, or, with ``+method=<name>``, runs that method's stages
(baseline -> compress -> fine-tune -> test for pruning; teacher -> student -> distil for distillation), writes
``results.json`` in the run's output folder (``status`` running -> done, or failed with the error) and prints a
before/after table. Latency of the saved stage models is measured at the end, in one interleaved comparison;
``export=onnx|pt2`` exports the final model. ``resume=<run dir>`` continues an interrupted run from its stage
checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from lightning_compress.pipeline.builders import build_datamodule, configure_threads
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.plain import run_plain
from lightning_compress.pipeline.progress import quiet_lightning_notices
from lightning_compress.pipeline.results import DONE, FAILED, RUNNING, run_status, summary_table, write_results
from lightning_compress.pipeline.resume import attempt_id, run_to_resume
from lightning_compress.pipeline.stages import check_measurement_config, record_export, record_latency, seed_everything

METHOD_KINDS = ("prune", "distill")
log = logging.getLogger("lightning_compress")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage the config asks for; return the run record (also written to ``results.json``)."""
    attempt = attempt_id()
    cfg, previous = run_to_resume(cfg, attempt)
    method = cfg.get("method")
    kind = method.get("kind") if method else None
    if method and kind not in METHOD_KINDS:
        raise ValueError(f"`method.kind` must be one of {METHOD_KINDS}, got {kind!r}.")
    check_measurement_config(cfg)
    if previous is not None and run_status(previous) == DONE:
        _info(f"[lightning-compress] {cfg.paths.output_dir} is already done: nothing to resume.")
        return previous
    threads = configure_threads(cfg)
    quiet_lightning_notices()
    seed_everything(int(cfg.seed))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg=cfg, datamodule=build_datamodule(cfg), output_dir=output_dir, resuming=previous is not None)
    ctx.record["task_name"] = cfg.get("task_name")
    ctx.record["method"] = method.get("name") if method else None
    ctx.record["threads"] = threads
    ctx.record["attempt"], ctx.record["resumed"] = attempt, previous is not None
    if previous is not None:
        ctx.record["attempts"] = [*previous.get("attempts", []), _attempt(previous)]
        _info(f"[lightning-compress] resuming {output_dir} (was {run_status(previous)}) from its stage checkpoints")
    write_results(ctx, RUNNING)
    try:
        _run_stages(ctx, kind)
    except BaseException as err:  # also KeyboardInterrupt: the record says how the run ended
        write_results(ctx, FAILED, err)
        raise
    path = write_results(ctx, DONE)
    _print_summary(ctx.record, path)
    return ctx.record


def _run_stages(ctx: RunContext, kind: str | None) -> None:
    if kind == "prune":
        from lightning_compress.pipeline.pruning_method import run_pruning_method

        run_pruning_method(ctx)
    elif kind == "distill":
        from lightning_compress.pipeline.distillation_method import run_distillation

        run_distillation(ctx)
    else:
        run_plain(ctx)
    record_latency(ctx)  # the saved stage models, timed in one interleaved comparison
    record_export(ctx)  # cfg.export: the final model to ONNX / torch.export, with its parity check


def _attempt(record: dict[str, Any]) -> dict[str, Any]:
    """What an earlier attempt of a resumed run left: its status, error and wall time."""
    return {"status": run_status(record), "error": record.get("error"), "wall_time_s": record.get("wall_time_s")}


@rank_zero_only
def _info(message: str) -> None:
    log.info(message)


@rank_zero_only
def _print_summary(record: dict[str, Any], path: Path) -> None:
    print("\n" + summary_table(record))
    print(f"\nresults: {path}")


__all__ = ["RunContext", "run"]
