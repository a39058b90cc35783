"""The training pipeline behind ``train.py``: stages, run record and summary.

``run(cfg)`` trains the configured network, or, with ``+method=<name>``, runs that method's stages
(baseline -> compress -> fine-tune -> test for pruning; teacher -> student -> distil for distillation), writes
``results.json`` in the run's output folder and prints a before/after table. Latency of the saved stage models is
measured at the end, in one interleaved comparison; ``export=onnx|pt2`` exports the final model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from lightning_compress.pipeline.builders import build_datamodule
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.plain import run_plain
from lightning_compress.pipeline.results import summary_table, write_results
from lightning_compress.pipeline.stages import check_measurement_config, record_export, record_latency, seed_everything

METHOD_KINDS = ("prune", "distill")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage the config asks for; return the run record (also written to ``results.json``)."""
    method = cfg.get("method")
    kind = method.get("kind") if method else None
    if method and kind not in METHOD_KINDS:
        raise ValueError(f"`method.kind` must be one of {METHOD_KINDS}, got {kind!r}.")
    check_measurement_config(cfg)
    seed_everything(int(cfg.seed))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg=cfg, datamodule=build_datamodule(cfg), output_dir=output_dir)
    ctx.record["task_name"] = cfg.get("task_name")
    ctx.record["method"] = method.get("name") if method else None
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
    path = write_results(ctx)
    _print_summary(ctx.record, path)
    return ctx.record


@rank_zero_only
def _print_summary(record: dict[str, Any], path: Path) -> None:
    print("\n" + summary_table(record))
    print(f"\nresults: {path}")


__all__ = ["RunContext", "run"]
