"""Export a network to ONNX or a torch.export program, and check it against PyTorch.

    python -m lightning_compress.export logs/.../stages/final/model.pt --format onnx          # a stage model
    python -m lightning_compress.export epoch=9.ckpt --module my_pkg.models:LitNet --format pt2  # your checkpoint
    python -m lightning_compress.export pruned.pt --model torchvision.models:resnet18 --model-kwargs '{"num_classes":3}'
    python -m lightning_compress.export logs/.../stages/final/model.pt --format pt2 --atol 1e-5 --latency-batch-size 8

What it reads: a saved stage model (``stages/<stage>/model.pt``: it records its architecture); a Lightning
checkpoint, with ``--module pkg.mod:LitModule`` (your LightningModule class: the checkpoint is loaded with
:func:`~lightning_compress.callbacks.load_pruned_checkpoint` and its network, ``net``/``model`` or ``--submodule``, is
exported) or ``--model pkg.mod:build`` (a function or class building the *unpruned* network, with ``--model-kwargs``
as JSON); a :func:`~lightning_compress.pruning.saving.save_pruned` file or a plain state dict, with ``--model``. Nothing
but tensors and plain values is unpickled. The input shape is ``--input-shape``, else the one the file or its plan
records. In Python: :func:`lightning_compress.portable.export_and_check` (``net``, input shape, path, format).

Writes ``model.onnx`` (the dynamo ONNX exporter, ``torch.onnx.export(dynamo=True)``) or ``model.pt2``
(``torch.export.save``) beside the model file (or at ``--output``), with a dynamic batch dimension. Both load without
this project's code (``onnxruntime.InferenceSession``; ``torch.export.load(path).module()``). The exported file is run
on seeded random inputs of the recorded input shape and compared with the PyTorch model: the command exits with
status 1 when any output element differs by more than ``atol + rtol * |PyTorch output|``. Forward hooks and
pre-hooks on modules (e.g. channel re-expansion after pruning) are traced into the exported graph. With
``--latency-batch-size`` > 0 it also exports the unpruned model (the same architecture without the pruning plan) and
times both exported files interleaved with :func:`lightning_compress.cost.interleaved_latency`.
The last line of standard output is one JSON object, for scripts. Needs ``pip install -e ".[export]"`` for ONNX.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lightning_compress.loading import load_file
from lightning_compress.portable import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    FORMATS,
    SUFFIXES,
    Parity,
    ParityError,
    check_format,
    check_parity,
    export_and_check,
    export_model,
    load_exported,
)
from lightning_compress.pruning.saving import KEY, load_pruned, plan_of, read_payload

LEGACY_STAGE_FORMAT = "lightning_compress.stage_model/1"  # pipeline.artifacts.LEGACY_FORMAT (without importing Hydra)

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "FORMATS", "SUFFIXES", "Parity", "ParityError", "check_format",
           "check_parity", "export_and_check", "export_file", "export_model", "load_exported", "load_network",
           "main"]


# ------------------------------------------------------------------------------------------------- what is exported
def _import(spec: str, argument: str) -> Any:
    """The object named by ``pkg.mod:Name`` (or ``pkg.mod.Name``)."""
    module_name, sep, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"`{argument}` must be 'package.module:Name', got {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"`{argument}`={spec!r}: cannot import {module_name!r} ({err}).") from None
    found = getattr(module, attr, None)
    if found is None:
        raise ValueError(f"`{argument}`={spec!r}: {module_name!r} has no attribute {attr!r}.")
    return found


def file_kind(path: Path) -> str:
    """``"stage"`` (a stage model: records its architecture), ``"lightning"`` (a Lightning checkpoint),
    ``"pruned"`` (a ``save_pruned`` file) or ``"state_dict"``; reads the file without unpickling objects."""
    data = load_file(path, "model", skip_objects=True)
    if not isinstance(data, dict):
        raise ValueError(f"`model`={str(path)!r} holds a {type(data).__name__}; expected a saved model or checkpoint.")
    entry = data.get(KEY) if isinstance(data.get(KEY), dict) else {}
    if entry.get("model") is not None or data.get("format") == LEGACY_STAGE_FORMAT:
        return "stage"
    if isinstance(data.get("state_dict"), dict):
        return "lightning" if ("pytorch-lightning_version" in data or "hyper_parameters" in data
                               or "global_step" in data) else "pruned"
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return "state_dict"
    raise ValueError(f"`model`={str(path)!r} is not a stage model, a Lightning checkpoint, a save_pruned file or a "
                     f"state dict; found keys {sorted(map(str, data))[:8]}.")


def load_network(path: Path, module: str | None = None, model: str | None = None,
                 model_kwargs: dict[str, Any] | None = None, submodule: str | None = None
                 ) -> tuple[torch.nn.Module, tuple[int, ...] | None]:
    """The (pruned) network in ``path`` built with ``module`` (a LightningModule class ``pkg.mod:Cls``) or ``model``
    (a callable ``pkg.mod:fn`` building the unpruned network), and the input shape its plan records (or ``None``)."""
    if (module is None) == (model is None):
        raise ValueError("pass exactly one of `--module` (your LightningModule class) and `--model` (a function or "
                         f"class building the unpruned network), got module={module!r}, model={model!r}.")
    if module is not None:
        from lightning_compress.callbacks import load_pruned_checkpoint
        from lightning_compress.callbacks.checkpointing import attached_plan
        from lightning_compress.callbacks.network import resolve_net

        lit = load_pruned_checkpoint(_import(module, "module"), path, **(model_kwargs or {}))
        net = resolve_net(lit, submodule)[0]
        plan = attached_plan(net)
        return net, plan.input_shape if plan is not None else None
    build = _import(model, "model")
    if not callable(build):
        raise ValueError(f"`model`={model!r} must name a function or class building the network.")
    net = load_pruned(path, build(**(model_kwargs or {})), submodule=submodule or "")
    plan = plan_of(read_payload(load_file(path, "model", skip_objects=True), str(path)), str(path))
    return net, plan.input_shape if plan is not None else None


def export_file(path: Path, fmt: str, output: Path | None = None, input_shape: Sequence[int] | None = None,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, module: str | None = None,
                model: str | None = None, model_kwargs: dict[str, Any] | None = None, submodule: str | None = None,
                latency_batch_size: int = 0, repeats: int = 20, threads: int | None = None) -> dict[str, Any]:
    """Export what ``path`` holds (see the module docstring) and check its parity; returns the report.

    Raises:
        ValueError: the file's kind needs ``module``/``model`` (the message says which), or no input shape is known.
    """
    check_format(fmt)
    kind = file_kind(path)
    if kind == "stage" and module is None and model is None:
        from lightning_compress.pipeline.export_stage import export_stage_file

        return export_stage_file(path, fmt, output, input_shape, atol, rtol, latency_batch_size, repeats,
                                 threads=threads)
    if module is None and model is None:
        need = ("--module my_pkg.models:MyLitModule (your LightningModule class) or --model my_pkg.models:build_net"
                if kind == "lightning" else "--model my_pkg.models:build_net (a function or class building the "
                "unpruned network; --model-kwargs '{...}' for its arguments)")
        raise ValueError(f"`model`={str(path)!r} is a {_KINDS[kind]}: it does not record its architecture; pass "
                         f"{need}.")
    net, recorded = load_network(path, module, model, model_kwargs, submodule)
    shape = tuple(input_shape) if input_shape else recorded
    if not shape:
        raise ValueError(f"`model`={str(path)!r} records no input shape: pass --input-shape C H W.")
    report = export_and_check(net, shape, output or path.with_suffix(SUFFIXES[fmt]), fmt, atol=atol, rtol=rtol,
                              latency_batch_size=latency_batch_size, repeats=repeats, threads=threads)
    report["model_path"] = str(path)
    report["kind"] = kind
    return report


_KINDS = {"lightning": "Lightning checkpoint", "pruned": "save_pruned file", "state_dict": "plain state dict",
          "stage": "stage model"}


# ---------------------------------------------------------------------------------------------------------- the CLI
def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines: file and size, parity, and (when measured) exported latency before/after pruning."""
    parity = report["parity"]
    lines = [f"exported {report['format']} ({report['runtime']}): {report['file']}  "
             f"{report['file_bytes'] / 1e6:.3f} MB", f"input shape (per image): {tuple(report['input_shape'])}"]
    if "unpruned" in report:
        lines.append(f"unpruned architecture: {report['unpruned']['file_bytes'] / 1e6:.3f} MB")
    status = "passed" if parity["passed"] else "FAILED"
    lines.append(f"parity {status}: max |exported - PyTorch| = {parity['max_abs_diff']:.3g} "
                 f"(tolerance atol {parity['atol']:g} + rtol {parity['rtol']:g} x |PyTorch|, batch "
                 f"{parity['batch_size']}, seed {parity['seed']})")
    latency = report.get("latency")
    if latency:
        for name, lat in latency["models"].items():
            lines.append(f"{report['runtime']} latency {name}: median {lat['median_ms']:.3f} ms "
                         f"(IQR {lat['q1_ms']:.3f}-{lat['q3_ms']:.3f}), batch {lat['batch_size']}, "
                         f"{lat['threads']} threads, {lat['repeats']} interleaved repeats")
        if "change" in latency:
            change = latency["change"]
            lines.append(f"pruned vs unpruned: {change['verdict']} (speedup x{change['speedup']:.2f} of medians)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m lightning_compress.export <model.pt> --format onnx|pt2``; exit status 1 on a parity failure."""
    parser = argparse.ArgumentParser(prog="python -m lightning_compress.export", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a stage model (stages/<stage>/model.pt), a Lightning checkpoint "
                        "(with --module or --model), a save_pruned file or a state dict (with --model)")
    parser.add_argument("--module", default=None, metavar="PKG.MOD:CLS", help="your LightningModule class, to load "
                        "a Lightning checkpoint with load_pruned_checkpoint")
    parser.add_argument("--model", dest="build", default=None, metavar="PKG.MOD:FN", help="a function or class "
                        "building the unpruned network (e.g. torchvision.models:resnet18)")
    parser.add_argument("--model-kwargs", type=json.loads, default=None, metavar="JSON", help="keyword arguments of "
                        "--model (or constructor arguments --module needs), as a JSON object")
    parser.add_argument("--submodule", default=None, help="the network's attribute path in the LightningModule "
                        "(default: net, else model)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (dynamo exporter) or pt2 "
                        "(torch.export); default onnx")
    parser.add_argument("--output", type=Path, default=None, help="exported file (default: beside the model)")
    parser.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="D",
                        help="one input's shape without batch, e.g. 3 32 32 (default: recorded with the model)")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance (default "
                        f"{DEFAULT_ATOL:g})")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default "
                        f"{DEFAULT_RTOL:g})")
    parser.add_argument("--latency-batch-size", type=int, default=0, help="> 0: time the exported file (and the "
                        "unpruned architecture's) at this batch size; default 0 (skip)")
    parser.add_argument("--repeats", type=int, default=20, help="timed interleaved repeats per model (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="threads for timing (default: torch's setting)")
    args = parser.parse_args(argv)
    try:
        report = export_file(args.model, args.format, args.output, args.input_shape, args.atol, args.rtol,
                             module=args.module, model=args.build, model_kwargs=args.model_kwargs,
                             submodule=args.submodule, latency_batch_size=args.latency_batch_size,
                             repeats=args.repeats, threads=args.threads)
    except ParityError as err:
        print(f"error: parity check failed: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, ImportError) as err:
        parser.exit(2, f"error: {err}\n")
    print(format_report(report))
    print(json.dumps(report))
    if not report["parity"]["passed"]:
        print(f"error: parity check failed: the exported model at {report['file']} differs from PyTorch by up to "
              f"{report['parity']['max_abs_diff']:.3g} (tolerance: atol {args.atol:g} + rtol {args.rtol:g} x "
              f"|PyTorch output|).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
