"""Export a saved stage model (``stages/<stage>/model.pt``) and check it: the app side of
``python -m lightning_compress.export`` and of ``train.py export=onnx|pt2`` (the export itself is
:mod:`lightning_compress.portable`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_compress.pipeline.artifacts import read_stage_model
from lightning_compress.pipeline.builders import build_net
from lightning_compress.portable import DEFAULT_ATOL, DEFAULT_RTOL, SUFFIXES, check_format, export_and_check


def recorded_input_shape(path: Path, saved_shape: Sequence[int] | None) -> tuple[int, ...]:
    """One input's shape (no batch): the one saved with the model, else its run's ``results.json`` data config.

    Raises:
        ValueError: neither records it (pass ``--input-shape``).
    """
    if saved_shape:
        return tuple(int(d) for d in saved_shape)
    results = path.resolve().parent.parent.parent / "results.json"  # <run>/stages/<stage>/model.pt
    if results.is_file():
        data = (json.loads(results.read_text()).get("config") or {}).get("data") or {}
        if "in_channels" in data and "image_size" in data:
            return int(data["in_channels"]), int(data["image_size"]), int(data["image_size"])
    raise ValueError(f"{str(path)!r} records no input shape and {str(results)!r} has no data config: "
                     f"pass --input-shape C H W.")


def export_stage_file(path: Path, fmt: str, output: Path | None = None, input_shape: Sequence[int] | None = None,
                      atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, latency_batch_size: int = 0,
                      repeats: int = 20, warmup: int = 5, threads: int | None = None) -> dict[str, Any]:
    """Load a saved stage model, export and check it; the unpruned reference is its architecture without the plan."""
    check_format(fmt)
    saved = read_stage_model(path, "model")
    net, plan = saved.net, saved.plan
    shape = tuple(input_shape) if input_shape else recorded_input_shape(path, saved.input_shape)
    unpruned = build_net(saved.model_cfg) if plan is not None and latency_batch_size else None
    output = output or path.with_suffix(SUFFIXES[fmt])
    report = export_and_check(net, shape, output, fmt, atol=atol, rtol=rtol, unpruned=unpruned,
                              latency_batch_size=latency_batch_size, repeats=repeats, warmup=warmup,
                              threads=threads)
    report["model_path"] = str(path)
    report["pruned"] = plan is not None
    return report
