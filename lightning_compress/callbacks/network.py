"""Which network a pruning callback works on, an example input for tracing it, and a table of what changed."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch import nn

from lightning_compress.callbacks._compat import fit_dataloader

log = logging.getLogger(__name__)

NET_ATTRIBUTES = ("net", "model")
_WIDTH_ATTRIBUTES = ("out_channels", "num_features", "out_features")


def resolve_net(pl_module: pl.LightningModule, submodule: str | None) -> tuple[nn.Module, str]:
    """The network inside ``pl_module`` and its attribute path (``""`` = ``pl_module`` itself).

    ``None``: ``pl_module.net``, else ``pl_module.model``, else the module itself. A network compiled with
    ``torch.compile`` (e.g. in the module's ``__init__``) is unwrapped: the callbacks prune its ``_orig_mod``
    (``"net._orig_mod"``, the keys of its weights in checkpoints), and the compiled wrapper recompiles.

    Raises:
        ValueError: if ``submodule`` does not name an ``nn.Module`` attribute of ``pl_module``.
    """
    if submodule is None:
        for attribute in NET_ATTRIBUTES:
            if isinstance(getattr(pl_module, attribute, None), nn.Module):
                return _uncompiled(getattr(pl_module, attribute), attribute)
        return pl_module, ""
    if submodule == "":
        return pl_module, ""
    try:
        return _uncompiled(pl_module.get_submodule(submodule), submodule)
    except AttributeError:
        children = [n for n, _ in pl_module.named_children()]
        raise ValueError(f"`submodule` must name a submodule of {type(pl_module).__name__}, got {submodule!r}. "
                         f"Available: {children}.") from None


def _uncompiled(net: nn.Module, path: str) -> tuple[nn.Module, str]:
    """``net`` and ``path``, or the module a ``torch.compile`` wrapper holds and its path."""
    original = getattr(net, "_orig_mod", None)
    if isinstance(net, torch._dynamo.eval_frame.OptimizedModule) and isinstance(original, nn.Module):
        return original, f"{path}._orig_mod" if path else "_orig_mod"
    return net, path


def device_of(net: nn.Module) -> torch.device:
    tensor = next(iter(net.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def example_input(trainer: pl.Trainer | None, pl_module: nn.Module, net: nn.Module,
                  input_shape: tuple[int, ...] | None) -> torch.Tensor | None:
    """One input for tracing ``net``: from ``input_shape``, the datamodule's ``example_input``, the module's
    ``example_input_array`` or the first training batch (in that order); ``None`` if none is available."""
    device = device_of(net)
    if input_shape is not None:
        return torch.zeros(1, *input_shape, device=device)
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and callable(getattr(datamodule, "example_input", None)):
        return datamodule.example_input(1).to(device)
    example = getattr(pl_module, "example_input_array", None)
    if isinstance(example, torch.Tensor):
        return example[:1].to(device)
    batch = _first_train_batch(trainer) if trainer is not None else None
    return batch[:1].to(device) if batch is not None else None


def training_inputs(trainer: pl.Trainer, pl_module: pl.LightningModule, count: int) -> list[torch.Tensor]:
    """The input tensors of the first ``count`` training batches as the network sees them: each batch goes through
    the module's (and datamodule's) batch-transfer hooks (device, normalisation, augmentation). ``[]`` when no train
    dataloader can be built."""
    datamodule = getattr(trainer, "datamodule", None)
    try:
        loader = datamodule.train_dataloader() if datamodule is not None else fit_dataloader(trainer)
    except Exception as err:  # noqa: BLE001 - any data error just means "no training inputs"
        log.debug("no training inputs from the train dataloader: %s", err)
        return []
    inputs: list[torch.Tensor] = []
    for batch in loader if loader is not None else ():
        tensor = _input_tensor(pl_module._apply_batch_transfer_handler(batch))
        if tensor is not None:
            inputs.append(tensor)
        if len(inputs) >= count:
            break
    return inputs


def _input_tensor(batch: object) -> torch.Tensor | None:
    """The first tensor of a batch (``(x, y)``, ``[x, ...]``, ``{"image": x, ...}`` or ``x``)."""
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if isinstance(batch, dict):
        batch = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    return batch if isinstance(batch, torch.Tensor) else None


def _first_train_batch(trainer: pl.Trainer) -> torch.Tensor | None:
    """The input tensor of the first training batch, if a train dataloader can be built without side effects."""
    datamodule = getattr(trainer, "datamodule", None)
    try:
        loader = datamodule.train_dataloader() if datamodule is not None else fit_dataloader(trainer)
        batch = next(iter(loader)) if loader is not None else None
    except Exception as err:  # noqa: BLE001 - any data error just means "no example input"
        log.debug("no example input from the train dataloader: %s", err)
        return None
    return _input_tensor(batch)


def layer_widths(net: nn.Module) -> dict[str, int]:
    """Output width (``out_channels``/``num_features``/``out_features``) of every conv, BN and linear layer."""
    widths = {}
    for name, module in net.named_modules():
        for attribute in _WIDTH_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, int) and name:
                widths[name] = value
                break
    return widths


def format_width_table(before: dict[str, int], after: dict[str, int]) -> str:
    """A text table of the layers whose width changed: ``layer  kept/total  (% fewer)``."""
    rows = [(name, after.get(name, 0), total) for name, total in before.items() if after.get(name, total) != total]
    if not rows:
        return "  (no layer changed width)"
    width = max(len(r[0]) for r in rows)
    out = [f"  {'layer'.ljust(width)}  kept/total"]
    out += [f"  {name.ljust(width)}  {kept}/{total} ({100.0 * (1 - kept / total):.0f}% fewer)"
            for name, kept, total in rows]
    return "\n".join(out)
