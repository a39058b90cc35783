"""Export a saved stage model to ONNX or a torch.export program, and check it against PyTorch.

    python -m lightning_compress.export logs/.../stages/final/model.pt --format onnx
    python -m lightning_compress.export logs/.../stages/final/model.pt --format pt2 --atol 1e-5 --latency-batch-size 8

Writes ``model.onnx`` (the dynamo ONNX exporter, ``torch.onnx.export(dynamo=True)``) or ``model.pt2``
(``torch.export.save``) beside the model file (or at ``--output``), with a dynamic batch dimension. Both load without
this project's code (``onnxruntime.InferenceSession``; ``torch.export.load(path).module()``). The exported file is run
on seeded random inputs of the recorded input shape and compared with the PyTorch model: the command exits with
status 1 when any output element differs by more than ``atol + rtol * |PyTorch output|``. Forward hooks and
pre-hooks on modules (e.g. channel re-expansion after pruning) are traced into the exported graph. With
``--latency-batch-size`` > 0 it also exports the unpruned model (the same architecture without the pruning plan) and
times both exported files interleaved with :func:`lightning_compress.profiling.interleaved_latency`.
The last line of standard output is one JSON object, for scripts. Needs ``pip install -e ".[export]"`` for ONNX.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_compress.profiling import Latency, interleaved_latency, latency_change

FORMATS = ("onnx", "pt2")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}
RUNTIMES = {"onnx": "onnxruntime", "pt2": "torch.export"}
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
TRACE_BATCH = 2  # torch.export specialises a batch of 1; 2 keeps the batch dimension symbolic

Runner = Callable[[torch.Tensor], list[torch.Tensor]]


class ParityError(RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class Parity:
    """Exported against PyTorch outputs on one random batch: ``passed`` iff |diff| <= atol + rtol * |PyTorch|."""

    passed: bool
    max_abs_diff: float
    atol: float
    rtol: float
    batch_size: int
    seed: int


def check_format(fmt: str) -> str:
    """``fmt`` if it is a known format and its runtime is importable; a clear error otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"`export` format must be one of {FORMATS}, got {fmt!r}.")
    if fmt == "onnx":
        missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _importable(name)]
        if missing:
            raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install -e \".[export]\".")
    return fmt


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def export_model(net: nn.Module, input_shape: Sequence[int], path: Path, fmt: str) -> Path:
    """Write ``net`` (traced in eval mode on one image shape, batch dimension dynamic) to ``path`` as ``fmt``."""
    check_format(fmt)
    example = torch.zeros(TRACE_BATCH, *input_shape)
    dynamic = ({0: torch.export.Dim("batch", min=1)},)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if fmt == "pt2":
                torch.export.save(torch.export.export(net, (example,), dynamic_shapes=dynamic), path)
            else:
                torch.onnx.export(net, (example,), path, dynamo=True, dynamic_shapes=dynamic, external_data=False,
                                  input_names=["input"], verbose=False)
    finally:
        net.train(was_training)
    return path


def load_exported(path: Path, fmt: str, threads: int | None = None) -> Runner:
    """A function running the exported file (onnxruntime on CPU, or the loaded torch.export program)."""
    check_format(fmt)
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()

        def run_program(x: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return _as_list(module(x))

        return run_program
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run_session(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(out) for out in session.run(None, {input_name: x.detach().cpu().numpy()})]

    return run_session


def check_parity(net: nn.Module, exported: Runner, input_shape: Sequence[int], atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL, batch_size: int = 3, seed: int = 0) -> Parity:
    """Run ``net`` and ``exported`` on the same seeded ``randn`` batch and compare every output element."""
    if atol < 0 or rtol < 0:
        raise ValueError(f"`atol` and `rtol` must be >= 0, got atol={atol!r}, rtol={rtol!r}.")
    inputs = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(seed))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            expected = _as_list(net(inputs))
    finally:
        net.train(was_training)
    actual = exported(inputs)
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        raise ParityError(f"exported outputs have shapes {[tuple(a.shape) for a in actual]}, PyTorch "
                          f"{[tuple(e.shape) for e in expected]}.")
    passed, worst = True, 0.0
    for got, want in zip(actual, expected):
        got, want = got.to(want.dtype), want.cpu()
        diff = (got - want).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        passed = passed and bool((diff <= atol + rtol * want.abs()).all())  # NaN anywhere fails
    return Parity(passed=passed, max_abs_diff=worst, atol=atol, rtol=rtol, batch_size=batch_size, seed=seed)


def _as_list(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in output):
        return list(output)
    raise TypeError(f"model outputs must be a tensor or a tuple/list of tensors, got {type(output).__name__}.")


def export_and_check(net: nn.Module, input_shape: Sequence[int], path: Path, fmt: str,
                     atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, unpruned: nn.Module | None = None,
                     latency_batch_size: int = 0, repeats: int = 20, warmup: int = 5,
                     threads: int | None = None) -> dict[str, Any]:
    """Export ``net`` to ``path``, check parity and, with ``latency_batch_size``, time it against ``unpruned``.

    Returns a JSON-ready report (``file``, ``file_bytes``, ``parity``, optional ``unpruned`` and ``latency``); does
    not raise on a parity failure (``report["parity"]["passed"]`` is False): callers decide.
    """
    input_shape = tuple(int(d) for d in input_shape)
    export_model(net, input_shape, path, fmt)
    runner = load_exported(path, fmt, threads)
    parity = check_parity(net, runner, input_shape, atol, rtol)
    report: dict[str, Any] = {"format": fmt, "runtime": RUNTIMES[fmt], "file": str(path),
                              "file_bytes": path.stat().st_size, "input_shape": list(input_shape),
                              "parity": asdict(parity)}
    if latency_batch_size <= 0:
        return report
    runners = {"exported": runner}
    with tempfile.TemporaryDirectory() as tmp:
        if unpruned is not None:
            unpruned_path = export_model(unpruned, input_shape, Path(tmp) / f"unpruned{SUFFIXES[fmt]}", fmt)
            report["unpruned"] = {"file_bytes": unpruned_path.stat().st_size}
            runners = {"unpruned": load_exported(unpruned_path, fmt, threads), **runners}
        batch = torch.randn(latency_batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
        timed = interleaved_latency({name: _bind(run, batch) for name, run in runners.items()},
                                    batch_size=latency_batch_size, warmup=warmup, repeats=repeats, threads=threads)
    report["latency"] = _latency_report(timed)
    return report


def _bind(runner: Runner, batch: torch.Tensor) -> Callable[[], Any]:
    return lambda: runner(batch)


def _latency_report(timed: dict[str, Latency]) -> dict[str, Any]:
    report: dict[str, Any] = {"interleaved": True, "models": {name: lat.as_dict() for name, lat in timed.items()}}
    if "unpruned" in timed:
        report["change"] = latency_change(timed["unpruned"], timed["exported"]).as_dict()
    return report


# ---------------------------------------------------------------------------------------------------------- the CLI
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
    from lightning_compress.pipeline.artifacts import load_network
    from lightning_compress.pipeline.builders import build_net

    check_format(fmt)
    saved = load_network(path, key="model")
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
    parser.add_argument("model", type=Path, help="a saved stage model (stages/<stage>/model.pt)")
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
        report = export_stage_file(args.model, args.format, args.output, args.input_shape, args.atol, args.rtol,
                                   args.latency_batch_size, args.repeats, threads=args.threads)
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
