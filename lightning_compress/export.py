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
from pathlib import Path
from typing import Any

from lightning_compress.exporting import (
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
from lightning_compress.pipeline.export_stage import export_stage_file

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "FORMATS", "SUFFIXES", "Parity", "ParityError", "check_format",
           "check_parity", "export_and_check", "export_model", "export_stage_file", "load_exported", "main"]


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
