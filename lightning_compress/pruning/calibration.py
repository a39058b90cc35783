"""After a cut: re-estimate the BatchNorm statistics, and find kept channels that no longer pass anything.

Both are pure torch and run without gradients on batches of training inputs (already on the network's device).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

# Activations whose output is zero for every input <= 0: a channel negative everywhere before them is dead.
ZEROING_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


def batchnorm_buffers(net: nn.Module) -> dict[str, Tensor]:
    """Copies of every BatchNorm's running statistics (``running_mean``, ``running_var``, ``num_batches_tracked``)."""
    return {f"{name}.{key}": buf.detach().clone() for name, m in net.named_modules() if isinstance(m, _BatchNorm)
            for key, buf in m.named_buffers(recurse=False) if buf is not None}


def load_batchnorm_buffers(net: nn.Module, buffers: dict[str, Tensor]) -> None:
    """Put back what :func:`batchnorm_buffers` copied (same network, same widths)."""
    own = dict(net.named_buffers())
    with torch.no_grad():
        for key, value in buffers.items():
            own[key].copy_(value)


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, inputs: Iterable[Tensor]) -> int:
    """Re-estimate every BatchNorm's running mean and variance on ``inputs`` (one forward pass each, no gradient).

    The statistics are reset and averaged over all batches with equal weight (``momentum=None``); each BN's momentum
    and the network's training flags are restored afterwards. Returns the number of batches used.
    """
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    modes = {m: m.training for m in net.modules()}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    used = 0
    try:
        for batch in inputs:
            net(batch)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return used


@torch.no_grad()
def dead_channels(net: nn.Module, inputs: Tensor) -> dict[str, tuple[int, int]]:
    """Channels whose output of a zeroing activation (ReLU, ReLU6) is zero at every position of ``inputs``.

    The network runs in eval mode (its running statistics, as it will be used). Returns ``{activation: (dead,
    channels)}`` for the calls with a dead channel; a module called several times is named ``name#k`` for its k-th
    call after the first.
    """
    calls: dict[str, int] = {}
    found: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: Sequence, output: Tensor) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            if not isinstance(output, Tensor) or output.dim() < 2 or output.shape[1] == 0:
                return
            peak = output.detach().transpose(0, 1).reshape(output.shape[1], -1).amax(1)
            dead = int((peak <= 0).sum())
            if dead:
                found[name if k == 0 else f"{name}#{k}"] = (dead, int(output.shape[1]))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if isinstance(m, ZEROING_ACTIVATIONS)]
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        net(inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return found


def describe_dead(found: dict[str, tuple[int, int]], images: int) -> str:
    """One clause per layer of :func:`dead_channels`' result, for a warning (whole dead layers first)."""
    whole = [f"{name} (all {total})" for name, (dead, total) in found.items() if dead == total]
    some = [f"{name} ({dead} of {total})" for name, (dead, total) in found.items() if dead < total]
    text = f"kept channels whose output is zero on every position of {images} training inputs: "
    if whole:
        text += "WHOLE LAYERS DEAD (no signal and no gradient passes them; the fine-tune cannot recover): " + \
            ", ".join(whole) + ("; " if some else "")
    return text + ", ".join(some)
