"""Size and speed of a network: parameters, MACs, FLOPs and latency (pure torch, no Lightning).

Counting convention, used everywhere in this project: **MACs** are the multiply-accumulates of convolution and
linear layers for one input image (bias, BN, activations and pooling are not counted), as in Li et al., Liu et al.,
He et al. and Torch-Pruning, whose "FLOPs" are these MACs. We report **FLOPs = 2 x MACs** beside them.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def _layer_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    batch = output.shape[0] if output.dim() > 1 else 1
    if isinstance(module, _CONV_TYPES):
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            # Every input element is scattered through the kernel to out_channels / groups outputs.
            per_image = inputs[0][0].numel() * (module.out_channels // module.groups) * kernel
        else:
            per_image = (output.numel() // batch) * (module.in_channels // module.groups) * kernel
        return per_image
    if isinstance(module, nn.Linear):
        return (output.numel() // batch) * module.in_features
    return 0


def count_macs(model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of conv and linear layers per input image, measured on ``example_inputs``.

    The model runs once in eval mode under ``torch.no_grad``; its training mode is restored afterwards.
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, args, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (*_CONV_TYPES, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


@dataclass
class Latency:
    """Median wall time of one forward pass, with what it was measured on."""

    median_ms: float
    batch_size: int
    device: str
    repeats: int
    threads: int


def measure_latency(
    model: nn.Module,
    example_inputs: torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    channels_last: bool = False,
) -> Latency:
    """Median latency of ``model(example_inputs)`` in eval mode without gradients, after ``warmup`` runs."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"`warmup` must be >= 0 and `repeats` >= 1, got warmup={warmup!r}, repeats={repeats!r}.")
    device = example_inputs.device
    if channels_last and example_inputs.dim() == 4:
        example_inputs = example_inputs.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.no_grad():
            for step in range(warmup + repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(example_inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if step >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return Latency(
        median_ms=statistics.median(times),
        batch_size=int(example_inputs.shape[0]),
        device=str(device),
        repeats=repeats,
        threads=torch.get_num_threads(),
    )


@dataclass
class ModelProfile:
    """Parameters, MACs (conv + linear multiply-accumulates per image), FLOPs (= 2 x MACs) and optional latency."""

    params: int
    macs: int
    flops: int
    latency: Latency | None = None

    def as_dict(self) -> dict:
        """A flat, JSON-ready dict: ``params``, ``macs``, ``flops`` and ``latency_ms`` etc. when measured."""
        data = {"params": self.params, "macs": self.macs, "flops": self.flops}
        if self.latency is not None:
            for key, value in asdict(self.latency).items():
                data["latency_ms" if key == "median_ms" else f"latency_{key}"] = value
        return data


def profile_model(
    model: nn.Module,
    example_inputs: torch.Tensor,
    latency_batch_size: int | None = None,
    repeats: int = 20,
) -> ModelProfile:
    """Count parameters and MACs on one image of ``example_inputs``; time a batch if ``latency_batch_size`` is set."""
    one = example_inputs[:1]
    macs = count_macs(model, one)
    latency = None
    if latency_batch_size:
        batch = one.expand(latency_batch_size, *one.shape[1:]).contiguous()
        latency = measure_latency(model, batch, repeats=repeats)
    return ModelProfile(params=count_params(model), macs=macs, flops=2 * macs, latency=latency)


def hardware_summary() -> dict:
    """Where a measurement ran: CPU/GPU name, cores, torch threads and versions."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
