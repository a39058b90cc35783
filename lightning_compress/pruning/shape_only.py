"""Outputs of plain convolutions, linear and batch-norm layers by shape alone, for the channel-mapping forward.

The op rules read shapes, never values (``capture.py``), and on 224x224 models the arithmetic of the convolutions was
most of the engine's time. For a module of exactly ``nn.Conv1d/2d/3d`` (zero padding), ``nn.Linear`` or
``nn.BatchNorm1d/2d/3d``, without hooks, called on one tensor of the expected rank, channels and dtype, the output
is a zero tensor of the shape (and layout) the layer would produce; anything else (subclasses, which may compute
their weight or padding in forward, other padding modes, a mismatched input that must raise its real error) runs the
real layer. The mapping forward runs in eval mode, so a skipped batch norm misses no statistics update.
"""

from __future__ import annotations

import torch
from torch import nn

_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_NORMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}  # accepted input ranks


def _conv_shape(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> tuple[int, ...] | None:
    spatial = _CONVS[type(conv)]
    if x.dim() != spatial + 2 or x.shape[1] != conv.in_channels or conv.padding_mode != "zeros":
        return None
    sizes = []
    for i in range(spatial):
        size = x.shape[2 + i]
        if conv.padding == "same":
            sizes.append(size)
            continue
        pad = 0 if conv.padding == "valid" else conv.padding[i]
        out = (size + 2 * pad - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1) // conv.stride[i] + 1
        if out <= 0:
            return None
        sizes.append(out)
    return (x.shape[0], conv.out_channels, *sizes)


def shape_only_output(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """Zeros shaped like ``module(*args)`` for a plain conv / linear / batch-norm layer (see the module docstring),
    else None."""
    kind = type(module)
    if kind in _NORMS:
        return _norm_output(module, args, kwargs)
    if (kind not in _CONVS and kind is not nn.Linear) or kwargs or len(args) != 1:
        return None
    x = args[0]
    weight = module.weight
    if (type(x) is not torch.Tensor or x.dtype != weight.dtype or x.device != weight.device
            or module._forward_hooks or module._forward_pre_hooks):
        return None
    layout = _memory_format(x, weight)
    if layout is None:
        return None
    if kind is nn.Linear:
        if x.dim() == 0 or x.shape[-1] != module.in_features:
            return None
        shape: tuple[int, ...] | None = (*x.shape[:-1], module.out_features)
    else:
        shape = _conv_shape(module, x)
    if shape is None:
        return None
    return torch.zeros(shape, dtype=x.dtype, device=x.device).contiguous(memory_format=layout)


def _norm_output(norm: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    if (kwargs or len(args) != 1 or norm.training or norm.running_mean is None or norm._forward_hooks
            or norm._forward_pre_hooks):  # batch statistics (training, or no running ones): run it for real
        return None
    x = args[0]
    if type(x) is not torch.Tensor or x.dim() not in _NORMS[type(norm)] or x.shape[1] != norm.num_features:
        return None
    params = [t for t in (norm.weight, norm.running_mean) if t is not None]  # dtype / device as batch_norm needs
    if any(t.dtype != x.dtype or t.device != x.device for t in params) or not (
            x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        return None
    return torch.zeros_like(x)  # same shape and strides (contiguous or channels-last), as batch_norm returns


def _memory_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format | None:
    """The layout the real layer's output would have; None (run it) when that is not plain or channels-last 2d."""
    if x.is_contiguous() and weight.is_contiguous():
        return torch.contiguous_format
    channels_last = [t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) for t in (x, weight)]
    if x.dim() == 4 and weight.dim() == 4 and any(channels_last) and all(
            c or t.is_contiguous() for c, t in zip(channels_last, (x, weight))):
        return torch.channels_last
    return None
