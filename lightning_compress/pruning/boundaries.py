"""Where a pruned layer meets a full-width shared stream (``residual="select"``): re-expansion, selection, fusion.

* A *writer* (a module whose output enters a residual add or a dense concat) is pruned like any layer, then its output
  is re-expanded: its kept channels go back to their positions of the stream, the removed ones are zeros (what the
  masked network computes there).
* A *reader* (a module consuming the stream) selects its kept channels of the stream before its own computation
  (Network Slimming's channel selection): a forward pre-hook, one ``index_select`` of the input the layer reads anyway.

Two forms of a writer, both exact (``mask == prune``):

* **fused** (``prune(..., fuse=True)``, the default; :mod:`.fusion`): when the writer's output goes straight (or
  through element-wise modules that keep zeros) into an add (or a subtraction of it) with the shortcut in the
  ``forward`` of a module above it, that module's ``forward`` is rewritten (fx) so the add becomes
  ``shortcut.index_add(dim, kept, output)``: no full-width zero tensor, one pass over the stream instead of three.
  The rewritten module gets a subclass of its class (same name) with the new ``forward``; ``torch.export`` / ONNX
  carry the ``index_add``.
* **hooked** (the fallback): a forward hook allocates the full-width zero tensor and ``index_copy``\\ s the output into
  it, then the model's own code adds the shortcut. Used for ``fuse=False``, writers whose output feeds anything but
  such an add (a concatenation, an op that does not keep zeros, several users, the model output), and when the
  owning module cannot be rewritten: its ``forward`` does not trace with torch.fx, depends on the train/eval mode,
  makes a tensor (fx would keep it as a constant that does not follow ``.to(device)``), discards a result (fx
  records ``a += b`` as ``a + b``, so an alias of ``a`` read afterwards would not see the sum), or has a submodule
  (traced through) with hooks of its own. (An alias read after ``+=`` whose sum is also read is not detected.)

The kept indices are non-persistent buffers (they follow ``.to(device)`` and stay out of ``state_dict``); everything is
re-made from the plan by ``prune(fresh_model, plan)``, so a saved model (weights + plan) reloads into the same form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

REEXPAND = "_lc_reexpand"  # (dim, full width) of a writer
SELECT = "_lc_select"      # dim of a reader
_REEXPAND_INDEX = "_lc_reexpand_index"
_SELECT_INDEX = "_lc_select_index"
_UNFUSED = "_lc_unfused"   # on a rewritten module's class: the class it was made from
_FUSED_WRITERS = "_lc_fused_writers"  # on a rewritten module's class: the writers it fuses (names below it)


def reexpanded(output: Tensor, dim: int, index: Tensor, size: int) -> Tensor:
    """``output`` scattered into ``size`` channels on ``dim`` at ``index``; zeros elsewhere (the hooked form). A
    channels-last ``output`` gives a channels-last result."""
    shape = list(output.shape)
    shape[dim] = size
    if dim == 1 and _channels_last(output):
        full = output.new_zeros(shape).contiguous(memory_format=torch.channels_last)
        _pixels(full).index_copy_(1, index, _pixels(output))
        return full
    return output.new_zeros(shape).index_copy(dim, index, output)


def stream_add(shortcut: Tensor, output: Tensor, index: Tensor, dim: int, size: int, alpha: int = 1) -> Tensor:
    """``shortcut + alpha * reexpanded(output)`` as one out-of-place ``index_add`` (the fused form); when the two do
    not line up (broadcasting, mixed dtypes) the re-expanded sum itself."""
    if (shortcut.dtype == output.dtype and shortcut.dim() == output.dim() and shortcut.shape[dim] == size
            and shortcut.shape[:dim] == output.shape[:dim] and shortcut.shape[dim + 1:] == output.shape[dim + 1:]):
        if dim == 1 and _channels_last(shortcut):
            return _channels_last_index_add(shortcut, output, index, alpha)
        return shortcut.index_add(dim, index, output, alpha=alpha)
    full = reexpanded(output, dim, index, size)
    return shortcut + full if alpha == 1 else shortcut - full


def _channels_last(tensor: Tensor) -> bool:
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def _pixels(tensor: Tensor) -> Tensor:
    """A 4-d tensor as (pixels, channels): a view of a channels-last tensor, a copy of any other."""
    return tensor.permute(0, 2, 3, 1).reshape(-1, tensor.shape[1])


def _channels_last_index_add(shortcut: Tensor, output: Tensor, index: Tensor, alpha: int) -> Tensor:
    """``shortcut.index_add(1, index, output)`` for channels-last tensors, kept channels-last: one ``index_add_`` on the
    (pixels, channels) view (``index_add`` itself returns a contiguous tensor and loops over strided channel slices,
    3-8x slower here)."""
    out = shortcut.clone(memory_format=torch.channels_last)
    _pixels(out).index_add_(1, index, _pixels(output), alpha=alpha)
    return out


def selected(tensor: Tensor, dim: int, index: Tensor) -> Tensor:
    """``tensor.index_select(dim, index)`` (a reader's channel selection); a channels-last ``tensor`` gives a
    channels-last result (``index_select`` itself returns a contiguous one, and the convolution after it would
    convert its layout back)."""
    if dim == 1 and _channels_last(tensor):
        n, _, h, w = tensor.shape
        pixels = _pixels(tensor)  # a gather along the channels of each pixel: 1.4x faster than index_select here
        return pixels.gather(1, index.expand(pixels.shape[0], -1)).view(n, h, w, -1).permute(0, 3, 1, 2)
    return tensor.index_select(dim, index)


def _reexpand(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    dim, size = getattr(module, REEXPAND)
    return reexpanded(output, dim, getattr(module, _REEXPAND_INDEX), size)


def _select(module: nn.Module, args: tuple) -> tuple:
    return (selected(args[0], getattr(module, SELECT), getattr(module, _SELECT_INDEX)), *args[1:])


def attach_reexpand(module: nn.Module, dim: int, kept: list[int], size: int, hook: bool = True) -> None:
    """After pruning: ``module``'s output (``len(kept)`` channels on ``dim``) is scattered into ``size`` channels;
    ``hook=False`` only records it (for :func:`.fusion.fuse_writers`, which adds the hook where it cannot fuse)."""
    if hasattr(module, REEXPAND):
        raise ValueError(f"{type(module).__name__} already re-expands its output (pruned with residual='select').")
    setattr(module, REEXPAND, (int(dim), int(size)))
    module.register_buffer(_REEXPAND_INDEX, _index(module, kept), persistent=False)
    if hook:
        module.register_forward_hook(_reexpand)


def attach_select(module: nn.Module, dim: int, kept: list[int]) -> None:
    """After pruning: ``module`` reads only the ``kept`` channels (on ``dim``) of its input."""
    if hasattr(module, SELECT):
        raise ValueError(f"{type(module).__name__} already selects its input channels (pruned with residual='select').")
    setattr(module, SELECT, int(dim))
    module.register_buffer(_SELECT_INDEX, _index(module, kept), persistent=False)
    module.register_forward_pre_hook(_select)


def has_boundary_hooks(module: nn.Module) -> bool:
    """Whether an earlier ``residual="select"`` prune re-expands (hooked or fused) or selects at ``module``."""
    attrs = vars(module)  # both are plain attributes (set by attach_*): no nn.Module.__getattr__ miss per call
    return REEXPAND in attrs or SELECT in attrs


def is_fused(module: nn.Module) -> bool:
    """Whether ``module``'s ``forward`` was rewritten by :func:`.fusion.fuse_writers`."""
    return _UNFUSED in vars(type(module))


def _index(module: nn.Module, kept: list[int]) -> Tensor:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    return torch.as_tensor(kept, dtype=torch.long, device=device)
