"""The teacher: a frozen network (the pipeline loads it from a file with ``pipeline.artifacts.read_stage_model``).

:class:`FrozenTeacher` is deliberately *not* an ``nn.Module``: held by a LightningModule it is not a submodule, so
it is outside ``parameters()`` (hence outside the optimizer), outside ``state_dict()`` (hence outside the student's
checkpoints), untouched by ``module.train()`` and not wrapped by DDP. It always runs in eval mode without autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter (in place); returns ``net``."""
    net.eval()
    for param in net.parameters():
        param.requires_grad_(False)
    return net


class TeacherMismatchError(ValueError):
    """The teacher network does not fit the distillation module's arguments (e.g. FSP feature names of another
    architecture); the message names the teacher's type and, when known, the file it came from."""


class FrozenTeacher:
    """A frozen network called under ``torch.no_grad()`` in eval mode; follows the student's device lazily.

    Args:
        net: the teacher network (frozen in place).
        source: where it came from (a file path or a description); recorded in the student's checkpoints.
    """

    def __init__(self, net: nn.Module, source: str | None = None) -> None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"`net` must be an nn.Module, got {type(net).__name__}.")
        self.net = freeze(net)
        self.source = source

    def __call__(self, x: Tensor) -> Tensor:
        if self.net.training:  # someone called .train() on it: the teacher's BN statistics must never move
            self.net.eval()
        self.to(x.device)
        with torch.no_grad():
            return self.net(x)

    def to(self, device: torch.device | str) -> FrozenTeacher:
        """Move the teacher (no-op when already there)."""
        param = next(self.net.parameters(), None)
        if param is not None and param.device != torch.device(device):
            self.net.to(device)
        return self

    def __repr__(self) -> str:
        return f"FrozenTeacher({type(self.net).__name__}, source={self.source!r})"
