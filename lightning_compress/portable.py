"""Portable files of a network: ONNX and ``torch.export`` programs, written, loaded and checked against PyTorch
(pure torch + the optional onnx packages; the command line is ``python -m lightning_compress.export``).

``export_model`` writes ``.onnx`` (``torch.onnx.export(dynamo=True)``) or ``.pt2`` (``torch.export.save``) with a
dynamic batch dimension; both load without this project's code. ``check_parity`` runs the exported file on seeded
random inputs and compares with PyTorch (``|diff| <= atol + rtol * |PyTorch|``). Module forward hooks and pre-hooks
(the re-expansion and selection of ``residual="select"``) are traced into the exported graph.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_compress.cost import Latency, interleaved_latency, latency_change

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
