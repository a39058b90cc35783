"""The engine on one model of a zoo (timm, torchvision): trace, select, prune, check; used by the optional zoo tests
(tests/pruning/test_zoo.py) and the sweep script benchmarks/timm_sweep.py.

The protocol of issue 12: 30 % per group, L1 magnitude, the classifier's classes kept (model outputs are never
pruned), then: does the pruned model run with the same output shape, how many MACs did it lose, and does
``mask`` (zeroing) give the same output as ``prune`` (removal)?
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from lightning_compress.cost import count_macs, count_params
from lightning_compress.pruning import build_channel_graph, mask, prune, select_channels


@dataclass
class ZooResult:
    """What one model gave; ``error`` is set (and the rest partial) when a step raised."""

    name: str
    groups: int = 0
    prunable: int = 0
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    same_shape: bool = False
    mask_vs_prune: float = float("nan")  # max |mask - prune| relative to max |output|
    unknown_ops: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def macs_cut(self) -> float:
        return 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0

    @property
    def ok(self) -> bool:
        return not self.error and self.same_shape and self.macs_after < self.macs_before


def _randomize_norms(model: nn.Module) -> None:
    """Non-trivial norm statistics and affine parameters, so mask == prune is a real check."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            for attr, lo, hi in (("running_mean", -0.5, 0.5), ("running_var", 0.5, 1.5), ("weight", 0.5, 1.5),
                                 ("bias", -0.5, 0.5)):
                t = getattr(m, attr, None)
                if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)) and isinstance(
                        t, torch.Tensor) and t.is_floating_point():
                    t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)


def check_model(name: str, model: nn.Module, x: torch.Tensor, ratio: float = 0.3, exactness: bool = True
                ) -> ZooResult:
    """Trace ``model`` on ``x``, select ``ratio`` per group (L1), prune a copy (checked forward) and measure it."""
    result = ZooResult(name)
    model.eval()
    _randomize_norms(model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            graph = build_channel_graph(model, x)
        result.unknown_ops = sorted(graph.unsupported.values())
        del caught
        result.groups, result.prunable = len(graph.groups), len(graph.prunable_groups)
        plan = select_channels(model, x, ratio, importance="l1", graph=graph)
        pruned = prune(copy.deepcopy(model), plan, example_inputs=x)
        with torch.no_grad():
            y, yp = model(x), pruned(x)
        result.same_shape = y.shape == yp.shape
        result.macs_before, result.macs_after = count_macs(model, x), count_macs(pruned, x)
        result.params_before, result.params_after = count_params(model), count_params(pruned)
        if exactness:
            masked = copy.deepcopy(model)
            mask(masked, plan)
            with torch.no_grad():
                ym = masked(x)
            result.mask_vs_prune = ((ym - yp).abs().max() / y.abs().max().clamp_min(1e-6)).item()
    except Exception as exc:  # a survey reports every failure and goes on
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def table_row(r: ZooResult) -> str:
    """One Markdown row: model, groups, MACs, params, mask vs prune, ops without a rule / error."""
    if r.error and not r.macs_before:
        return f"| {r.name} | {r.prunable}/{r.groups} | - | - | - | FAIL {r.error[:120]} |"
    macs = f"{r.macs_before / 1e6:.0f}M -> {r.macs_after / 1e6:.0f}M (-{r.macs_cut:.0%})"
    params = f"{r.params_before / 1e6:.2f}M -> {r.params_after / 1e6:.2f}M"
    note = r.error[:120] if r.error else "; ".join(op[:60] for op in r.unknown_ops[:3])
    return f"| {r.name} | {r.prunable}/{r.groups} | {macs} | {params} | {r.mask_vs_prune:.1e} | {note} |"


TABLE_HEADER = ("| model | prunable/groups | MACs (30 % per group) | params | mask vs prune | ops without a rule |\n"
                "|---|---|---|---|---|---|")
