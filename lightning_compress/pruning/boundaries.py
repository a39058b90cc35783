"""Forward hooks that let a pruned layer meet a full-width shared stream (``residual="select"``).

* A *writer* (a module whose output enters a residual add or a dense concat) is pruned like any layer, then its output
  is re-expanded: its kept channels go back to their positions of the stream, the removed ones are zeros (what the
  masked network computes there).
* A *reader* (a module consuming the stream) selects its kept channels of the stream before its own computation:
  Network Slimming's channel selection.

The kept indices are non-persistent buffers (they follow ``.to(device)`` and stay out of ``state_dict``); the hooks are
re-attached from the plan by ``prune(fresh_model, plan)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

REEXPAND = "_lc_reexpand"  # (dim, full width) of a writer
SELECT = "_lc_select"      # dim of a reader
_REEXPAND_INDEX = "_lc_reexpand_index"
_SELECT_INDEX = "_lc_select_index"


def _reexpand(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    dim, size = getattr(module, REEXPAND)
    shape = list(output.shape)
    shape[dim] = size
    full = output.new_zeros(shape)
    if output.dim() == 4 and output.is_contiguous(memory_format=torch.channels_last):
        full = full.contiguous(memory_format=torch.channels_last)
    return full.index_copy(dim, getattr(module, _REEXPAND_INDEX), output)


def _select(module: nn.Module, args: tuple) -> tuple:
    return (args[0].index_select(getattr(module, SELECT), getattr(module, _SELECT_INDEX)), *args[1:])


def attach_reexpand(module: nn.Module, dim: int, kept: list[int], size: int) -> None:
    """After pruning: ``module``'s output (``len(kept)`` channels on ``dim``) is scattered into ``size`` channels."""
    if hasattr(module, REEXPAND):
        raise ValueError(f"{type(module).__name__} already re-expands its output (pruned with residual='select').")
    setattr(module, REEXPAND, (int(dim), int(size)))
    module.register_buffer(_REEXPAND_INDEX, _index(module, kept), persistent=False)
    module.register_forward_hook(_reexpand)


def attach_select(module: nn.Module, dim: int, kept: list[int]) -> None:
    """After pruning: ``module`` reads only the ``kept`` channels (on ``dim``) of its input."""
    if hasattr(module, SELECT):
        raise ValueError(f"{type(module).__name__} already selects its input channels (pruned with residual='select').")
    setattr(module, SELECT, int(dim))
    module.register_buffer(_SELECT_INDEX, _index(module, kept), persistent=False)
    module.register_forward_pre_hook(_select)


def has_boundary_hooks(module: nn.Module) -> bool:
    """Whether an earlier ``residual="select"`` prune re-expands or selects at ``module``."""
    attrs = vars(module)  # both are plain attributes (set by attach_*): no nn.Module.__getattr__ miss per call
    return REEXPAND in attrs or SELECT in attrs


def _index(module: nn.Module, kept: list[int]) -> Tensor:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    return torch.as_tensor(kept, dtype=torch.long, device=device)
