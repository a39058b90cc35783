"""Soft pruning: zero the planned channels (and keep them at zero) instead of removing them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from .plan import PruningPlan
from .plan_check import check_plan_fits
from .validation import compile_plan


class ChannelMask:
    """A compiled plan for repeated zeroing (e.g. every training step).

    By default the *output side* of each planned channel is zeroed: conv/linear rows and biases, norm gamma/beta and
    the BN running statistics (the channel then outputs exactly 0 in train and eval mode). With ``include_inputs=True``
    the
    consumers' input weights are zeroed too; then ``mask`` equals ``prune`` even after activations with f(0) != 0
    or norms without affine parameters, but a soft-pruned filter can no longer receive gradient (no SFP recovery).
    ``slots`` restricts zeroing to these slot names (e.g. ``{"out"}``: conv/linear filters only, norms untouched, as in
    the FPGM authors' code).
    """

    def __init__(self, model: nn.Module, plan: PruningPlan, include_inputs: bool = False,
                 slots: Collection[str] | None = None) -> None:
        if slots is not None and (isinstance(slots, str) or not all(isinstance(s, str) for s in slots)):
            raise TypeError(f"`slots` must be a collection of slot names or None, got {slots!r}.")
        self.entries: list[tuple[nn.Module, str, int, torch.Tensor]] = []
        self.names: list[str] = []
        for edit in compile_plan(model, plan):
            for slot, slices in edit.slot_slices.items():
                if (slot == "in" and not include_inputs) or (slots is not None and slot not in slots):
                    continue
                for attr, dim, idx in slices:
                    self.entries.append((edit.module, attr, dim, torch.as_tensor(idx, dtype=torch.long)))
                    self.names.append(f"{edit.name}.{attr}" if edit.name else attr)

    def _tensors(self):
        for module, attr, dim, idx in self.entries:
            t = getattr(module, attr)
            if t is not None:
                yield t, dim, idx.to(t.device)

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the planned slices of weights/biases/norm parameters."""
        for t, dim, idx in self._tensors():
            t.index_fill_(dim, idx, 0)

    @torch.no_grad()
    def zero_grads(self) -> None:
        """Zero the gradients of the planned slices (call after backward, before the optimizer step)."""
        for t, dim, idx in self._tensors():
            if t.grad is not None:
                t.grad.index_fill_(dim, idx, 0)

    @torch.no_grad()
    def zero_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the optimizer state of the planned slices (SGD momentum, Adam moments) so it cannot revive them."""
        for t, dim, idx in self._tensors():
            state = optimizer.state.get(t)
            if not state:
                continue
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.shape == t.shape:
                    v.index_fill_(dim, idx, 0)

    def masks(self) -> dict[str, torch.Tensor]:
        """{tensor name: bool tensor of its shape, False where zeroed}."""
        out: dict[str, torch.Tensor] = {}
        for name, (t, dim, idx) in zip(self.names, self._tensors()):
            m = out.setdefault(name, torch.ones_like(t, dtype=torch.bool))
            m.index_fill_(dim, idx, False)
        return out


def mask(model: nn.Module, plan: PruningPlan, include_inputs: bool = False,
         slots: Collection[str] | None = None, example_inputs: Any = None) -> ChannelMask:
    """Zero the planned channels of ``model`` in place; returns the compiled :class:`ChannelMask` for reuse.

    The plan is first checked against the network's channel groups as by :func:`.surgery.prune` (nothing is zeroed
    when it does not fit)."""
    m = ChannelMask(model, plan, include_inputs, slots)
    check_plan_fits(model, plan, example_inputs)
    m.apply()
    return m


def zero_masked_grads(model: nn.Module, plan: PruningPlan, include_inputs: bool = False) -> None:
    """Zero the gradients of the planned channels (see :meth:`ChannelMask.zero_grads`)."""
    ChannelMask(model, plan, include_inputs).zero_grads()


def zero_masked_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, plan: PruningPlan,
                                include_inputs: bool = False) -> None:
    """Zero momentum / Adam moments of the planned channels (see :meth:`ChannelMask.zero_optimizer_state`)."""
    ChannelMask(model, plan, include_inputs).zero_optimizer_state(optimizer)
