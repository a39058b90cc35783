"""The teacher: loaded from a file of this project (or any state_dict) and frozen.

:class:`FrozenTeacher` is deliberately *not* an ``nn.Module``: held by a LightningModule it is not a submodule, so
it is outside ``parameters()`` (hence outside the optimizer), outside ``state_dict()`` (hence outside the student's
checkpoints), untouched by ``module.train()`` and not wrapped by DDP. It always runs in eval mode without autograd.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lightning_compress.pipeline.artifacts import read_stage_model


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter (in place); returns ``net``."""
    net.eval()
    for param in net.parameters():
        param.requires_grad_(False)
    return net


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


def load_teacher(path: str | Path, model_cfg: DictConfig | None = None) -> nn.Module:
    """A network from ``path`` (the config key ``method.teacher``): a stage model (``stages/<stage>/model.pt``,
    pruned or not), a Lightning checkpoint of this project (``net.*`` keys, needs ``model_cfg``) or a bare
    ``state_dict`` (needs ``model_cfg``); read by the project's one loader (``weights_only=True``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is none of the above, or its weights do not fit ``model_cfg``.
    """
    return read_stage_model(path, "method.teacher", model_cfg).net
