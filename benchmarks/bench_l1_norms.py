"""L1 row norms on the CPU: ``torch.linalg.vector_norm(ord=1)`` against ``|w|`` summed per row, by weight size.

``functional.filter_norms`` (Li et al.'s criterion, every L1 selection) takes ``abs().sum(1)`` up to
``L1_COPY_LIMIT`` elements and ``vector_norm`` beyond it; this measures where that pays. Both are timed in turn on
the same tensor (interleaved), median and inter-quartile range of the repeats. Prints one markdown table. Run it on a
quiet machine only::

    .venv/bin/python -m benchmarks.bench_l1_norms --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from lightning_compress.functional.pruning import L1_COPY_LIMIT

# rows x (in channels x kernel): depthwise-like, MobileNet/EfficientNet 1x1s, 3x3 convs, large linear layers
SHAPES = [(64, 27), (1152, 48), (1152, 192), (192, 1152), (1000, 1280), (512, 4608), (2048, 2048), (1024, 4608),
          (2048, 4608)]


def _quartiles_us(fn: Callable[[], object], other: Callable[[], object], repeats: int) -> tuple[list[float], ...]:
    for _ in range(5):
        fn(), other()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        for f, out in ((fn, a), (other, b)):
            start = time.perf_counter()
            f()
            out.append((time.perf_counter() - start) * 1e6)
    return statistics.quantiles(a, n=4), statistics.quantiles(b, n=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median [q1-q3] of {args.repeats}, us; "
          f"abs().sum is used up to {L1_COPY_LIMIT / 1e6:.1f}M elements\n")
    print("| shape | elements | vector_norm(ord=1) | abs().sum(1) | ratio |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        w = torch.randn(*shape)
        qa, qb = _quartiles_us(lambda w=w: torch.linalg.vector_norm(w, ord=1, dim=1), lambda w=w: w.abs().sum(1),
                               args.repeats)
        print(f"| {shape[0]}x{shape[1]} | {w.numel() / 1e6:.2f}M | {qa[1]:.0f} [{qa[0]:.0f}-{qa[2]:.0f}] | "
              f"{qb[1]:.0f} [{qb[0]:.0f}-{qb[2]:.0f}] | {qa[1] / qb[1]:.2f} |")


if __name__ == "__main__":
    main()
