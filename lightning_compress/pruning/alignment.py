"""``round_to="auto"``: the channel multiple chosen by timing the pruned network at each candidate multiple.

Vector units and GPU kernels work on blocks of channels (8 fp32 lanes with AVX2, tensor-core tiles), so a layer kept at
9 channels can cost what 16 do. Which multiple pays off depends on the device, the batch size and the network, so it
is measured: the method's plan at every candidate ``round_to`` is applied to a copy of the network and the copies are
timed interleaved by the project's one latency routine (:func:`~lightning_compress.cost.interleaved_latency`) on
the target device at the user's batch size. The smallest candidate (1: the method's own widths) is the reference; the
fastest candidate is chosen only when it is measurably faster than the reference (the inter-quartile ranges separate,
:func:`~lightning_compress.cost.latency_change`), else the reference is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_compress.cost import TIMED_REPEATS, Latency, batch_of, interleaved_latency, latency_change

from .boundaries import _channels_last
from .errors import check_positive_int
from .plan import PruningPlan
from .surgery import prune

AUTO = "auto"
ROUND_TO_CANDIDATES = (1, 8, 16)
Timer = Callable[..., Mapping[str, Latency]]  # interleaved_latency's signature


@dataclass(frozen=True)
class RoundToChoice:
    """The chosen ``round_to``, every candidate's latency, and the chosen plan's speedup over the reference."""

    round_to: int
    reference: int  # the smallest candidate
    latencies: dict[int, Latency]
    speedup: float  # reference median / chosen median
    verdict: str  # latency_change(reference, chosen).verdict
    plan: PruningPlan = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for a callback's log and results.json): the choice, gain, verdict and every candidate."""
        return {"round_to": self.round_to, "reference": self.reference, "speedup": self.speedup,
                "verdict": self.verdict, "candidates": {str(m): lat.as_dict() for m, lat in self.latencies.items()}}

    def summary(self) -> str:
        """One line: the choice and what was measured."""
        times = ", ".join(f"{m}: {lat.median_ms:.2f} ms" for m, lat in self.latencies.items())
        return (f"round_to={self.round_to} ({self.speedup:.2f}x the latency of round_to={self.reference}, "
                f"{self.verdict}; medians {times})")


def check_round_to(round_to: Any) -> int | str:
    """``round_to`` as given when it is an int >= 1 or ``"auto"``; else a TypeError/ValueError naming it."""
    if round_to == AUTO and isinstance(round_to, str):
        return round_to
    if isinstance(round_to, str):
        raise ValueError(f"`round_to` must be an int >= 1 or {AUTO!r}, got {round_to!r}.")
    return check_positive_int("round_to", round_to)


def choose_round_to(model: nn.Module, example_inputs: torch.Tensor, select: Callable[[int], PruningPlan],
                    candidates: Sequence[int] = ROUND_TO_CANDIDATES, batch_size: int = 1,
                    device: torch.device | str | None = None, warmup: int = 3, repeats: int = TIMED_REPEATS,
                    threads: int | None = None, timer: Timer | None = None, channels_last: bool | None = None
                    ) -> RoundToChoice:
    """Time ``model`` pruned by ``select(m)`` (the method's plan at ``round_to=m``) for every candidate ``m``.

    Args:
        model: the unpruned network (unchanged; each candidate prunes a copy).
        example_inputs: one input (batch of 1); ``batch_size`` copies of it are timed.
        select: ``round_to -> PruningPlan``, the caller's selection with everything else fixed.
        candidates: distinct ints >= 1; the smallest is the reference.
        device: where to time (default: the model's device).
        timer: a function with :func:`~lightning_compress.cost.interleaved_latency`'s signature (default: that
            routine; tests inject a deterministic one).
        channels_last: time the candidates and their inputs in channels-last memory format (default: when the
            model's first 4-d parameter is channels-last, i.e. as it was trained).

    Returns:
        :class:`RoundToChoice` (see the module docstring for the rule), its ``plan`` the chosen one.
    """
    if isinstance(candidates, (str, bytes)) or not candidates:
        raise ValueError(f"`candidates` must be a non-empty sequence of ints >= 1, got {candidates!r}.")
    for m in candidates:
        check_positive_int("candidates", m)
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"`candidates` must be distinct, got {list(candidates)!r}.")
    check_positive_int("batch_size", batch_size)
    param = next(iter(model.parameters()), None)
    device = torch.device(device) if device is not None else (param.device if param is not None else torch.device(
        "cpu"))
    plans = {m: select(m) for m in sorted(candidates)}
    batch = batch_of(example_inputs, batch_size).to(device)
    if channels_last is None:
        channels_last = is_channels_last(model)
    if batch.dim() == 4:  # the candidates run in one layout: channels-last or contiguous
        batch = batch.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    runners: dict[str, Callable[[], Any]] = {}
    for m, plan in plans.items():
        net = prune(copy.deepcopy(model), plan).to(device).eval()
        if batch.dim() == 4:
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        runners[str(m)] = lambda net=net: net(batch)
    with torch.no_grad():
        timed = (timer or interleaved_latency)(runners, batch_size=batch_size, device=device, warmup=warmup,
                                               repeats=repeats, threads=threads)
    latencies = {m: timed[str(m)] for m in plans}
    reference = min(plans)
    fastest = min(plans, key=lambda m: latencies[m].median_ms)
    chosen = fastest if latency_change(latencies[reference], latencies[fastest]).verdict == "faster" else reference
    change = latency_change(latencies[reference], latencies[chosen])
    return RoundToChoice(chosen, reference, latencies, change.speedup, change.verdict, plans[chosen])


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s first 4-d parameter (a convolution's weight) is laid out channels-last."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and _channels_last(weight)
