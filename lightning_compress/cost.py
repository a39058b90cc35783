"""The cost of a network: parameters, MACs, FLOPs and latency (pure torch, no Lightning; the command line is
``python -m lightning_compress.profile``).

Counting convention, used everywhere in this project: **MACs** are the multiply-accumulates of convolution and
linear layers for one input image (bias, BN, activations and pooling are not counted), as in Li et al., Liu et al.,
He et al. and Torch-Pruning, whose "FLOPs" are these MACs. We report **FLOPs = 2 x MACs** beside them.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

try:  # POSIX only: the minor page faults of this process, counted around each timed CPU run
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

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


def _positions(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Places per image where a conv/linear layer applies its kernel: its output positions (a transposed conv's input
    positions). Channel pruning leaves them as they are."""
    batch = output.shape[0] if output.dim() > 1 else 1
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inputs[0][0].numel() // module.in_channels  # every input element is scattered through the kernel
    if isinstance(module, _CONV_TYPES):
        return output.numel() // batch // module.out_channels
    return output.numel() // batch // module.out_features


def _macs_per_position(module: nn.Module) -> int:
    if isinstance(module, _CONV_TYPES):
        return module.in_channels * module.out_channels // module.groups * math.prod(module.kernel_size)
    return module.in_features * module.out_features


def layer_positions(model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> dict[str, list[int]]:
    """Per conv/linear layer name, the positions (per image) of each of its calls on ``example_inputs`` (one forward
    in eval mode under ``torch.no_grad``; the training mode is restored)."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    names = {module: name for name, module in model.named_modules()}
    positions: dict[str, list[int]] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        positions.setdefault(names[module], []).append(_positions(module, args, output))

    # prepend: count what the layer computes, before a residual="select" hook re-expands its output to the stream
    handles = [m.register_forward_hook(hook, prepend=True) for m in model.modules()
               if isinstance(m, (*_CONV_TYPES, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return positions


def macs_at(model: nn.Module, positions: dict[str, list[int]]) -> int:
    """MACs per image of ``model``'s conv/linear layers applied at ``positions`` (:func:`layer_positions`, e.g. of the
    network before channel pruning, which keeps them): no forward pass."""
    modules = dict(model.named_modules())
    return sum(p * _macs_per_position(modules[name]) for name, calls in positions.items() for p in calls)


def count_macs(model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of conv and linear layers per input image, measured on ``example_inputs``.

    The model runs once in eval mode under ``torch.no_grad``; its training mode is restored afterwards.
    """
    return macs_at(model, layer_positions(model, example_inputs))


TIMED_REPEATS = 20  # default timed runs per model: enough for a median and an inter-quartile range
VERDICTS = ("faster", "slower", "no measurable change")


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass: median and quartiles over ``repeats`` timed runs, and what it ran on."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    batch_size: int
    device: str
    repeats: int
    warmup: int
    threads: int
    timer: str  # "perf_counter" (CPU, wall clock) or "cuda_event" (CUDA events after synchronisation)
    page_faults: float | None = None  # median minor page faults per timed CPU run (POSIX); None on CUDA or elsewhere

    @property
    def iqr_ms(self) -> float:
        """Inter-quartile range (q3 - q1) of the timed runs."""
        return self.q3_ms - self.q1_ms

    def as_dict(self) -> dict[str, Any]:
        """Every field plus ``iqr_ms``, JSON-ready."""
        return {**asdict(self), "iqr_ms": self.iqr_ms}

    def as_fields(self, prefix: str = "latency_") -> dict[str, Any]:
        """Flat keys for a results section: ``latency_ms`` (the median), ``latency_q1_ms``, ``latency_iqr_ms``..."""
        return {f"{prefix}{'ms' if key == 'median_ms' else key}": value for key, value in self.as_dict().items()}


@dataclass(frozen=True)
class LatencyChange:
    """``after`` against ``before``: speedup of the medians and whether the inter-quartile ranges separate."""

    speedup: float  # before.median_ms / after.median_ms
    verdict: str  # "faster" | "slower" | "no measurable change"

    def as_dict(self) -> dict[str, Any]:
        """``{"speedup", "verdict"}``."""
        return asdict(self)


def latency_change(before: Latency, after: Latency) -> LatencyChange:
    """Faster (slower) only when ``after``'s whole IQR lies below (above) ``before``'s; else "no measurable change"."""
    if after.q3_ms < before.q1_ms:
        verdict = "faster"
    elif after.q1_ms > before.q3_ms:
        verdict = "slower"
    else:
        verdict = "no measurable change"
    return LatencyChange(speedup=before.median_ms / after.median_ms if after.median_ms > 0 else math.inf,
                         verdict=verdict)


SPEED_RATIO_TARGET = 0.85  # realised latency speedup / MACs speedup below this: the MACs saved are not (all) time saved


@dataclass(frozen=True)
class SpeedRatio:
    """How much of a MACs reduction became a latency reduction: ``ratio = latency_speedup / macs_speedup``."""

    macs_speedup: float  # MACs before / MACs after
    latency_speedup: float  # latency before / latency after (LatencyChange.speedup)
    ratio: float
    below_target: bool  # ratio < target
    target: float

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (for results.json)."""
        return asdict(self)


def speed_ratio(macs_speedup: float, latency_speedup: float, target: float = SPEED_RATIO_TARGET) -> SpeedRatio:
    """The realised-to-MACs speedup ratio and whether it is below ``target`` (pure; all arguments > 0)."""
    for name, value in (("macs_speedup", macs_speedup), ("latency_speedup", latency_speedup), ("target", target)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
            raise ValueError(f"`{name}` must be a number > 0, got {value!r}.")
    if math.isinf(macs_speedup):
        raise ValueError(f"`macs_speedup` must be finite, got {macs_speedup!r}.")
    ratio = float(latency_speedup) / float(macs_speedup)
    return SpeedRatio(float(macs_speedup), float(latency_speedup), ratio, ratio < target, float(target))


def interleaved_latency(runners: Mapping[str, Callable[[], Any]], batch_size: int,
                        device: torch.device | str = "cpu", warmup: int = 5, repeats: int = TIMED_REPEATS,
                        threads: int | None = None) -> dict[str, Latency]:
    """Time each runner (a no-argument callable, e.g. one forward pass) alternately in this process.

    ``warmup`` untimed rounds, then ``repeats`` timed rounds; every round runs each runner once, in forward order on
    even rounds and reverse order on odd ones, so drift in the machine's load affects all runners alike. On a CUDA
    ``device`` each run is timed with CUDA events after a synchronisation; on CPU with ``time.perf_counter``.
    ``threads`` sets ``torch.set_num_threads`` for the measurement (restored afterwards); ``None`` keeps the current.
    On CPU each run's minor page faults are counted too (``Latency.page_faults``): glibc's default ``malloc`` gives
    large freed blocks back to the system, so a network with big activations can spend a good part of its time
    faulting the same memory in again on every run (benchmarks/README.md, "The allocator decides what a CPU timing
    says").
    The one timing routine of the project: :func:`compare_latency`, the pipeline, the profile CLI, the export check
    and the benchmarks all use it.
    """
    if not runners:
        raise ValueError("`runners` must name at least one callable to time.")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"`warmup` must be >= 0 and `repeats` >= 1, got warmup={warmup!r}, repeats={repeats!r}.")
    if threads is not None and threads < 1:
        raise ValueError(f"`threads` must be a positive int or None, got {threads!r}.")
    device = torch.device(device)
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    count_faults = device.type == "cpu" and resource is not None
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        used_threads = torch.get_num_threads()
        for round_index in range(warmup + repeats):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                faults_before = _minor_faults() if count_faults else 0
                elapsed = _time_once(runners[name], device)
                if round_index >= warmup:
                    samples[name].append(elapsed)
                    if count_faults:
                        faults[name].append(_minor_faults() - faults_before)
    finally:
        torch.set_num_threads(previous_threads)
    timer = "cuda_event" if device.type == "cuda" else "perf_counter"
    return {name: _summarise(samples[name], batch_size, str(device), warmup, used_threads, timer, faults[name])
            for name in names}


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


PAGE_FAULTS_WORTH_A_NOTE = 1000  # minor faults per timed run: about 4 MB faulted in again on every pass


def page_fault_note(timed: Mapping[str, Latency]) -> str | None:
    """A warning text when a timed model re-faults its memory on every run (glibc's default ``malloc`` gives large
    freed blocks back to the system): its latency, and any speed-up against it, then include page faults."""
    faulting = {name: lat.page_faults for name, lat in timed.items()
                if lat.page_faults is not None and lat.page_faults >= PAGE_FAULTS_WORTH_A_NOTE}
    if not faulting:
        return None
    counts = ", ".join(f"{name} {faults:.0f}" for name, faults in faulting.items())
    return (f"latency: minor page faults per timed run ({counts}): the timings include the allocator giving memory "
            "back and faulting it in again, so speed-ups are not what a steady allocator gives. To time as deployed, "
            "rerun with jemalloc/tcmalloc or with MALLOC_MMAP_THRESHOLD_=268435456 "
            "MALLOC_TRIM_THRESHOLD_=1073741824 (benchmarks/README.md).")


def _time_once(runner: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call of ``runner``."""
    if device.type == "cuda":  # not exercised by the CPU-only test suite
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        runner()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    start_time = time.perf_counter()
    runner()
    return (time.perf_counter() - start_time) * 1e3


def _summarise(times: list[float], batch_size: int, device: str, warmup: int, threads: int, timer: str,
               faults: list[int]) -> Latency:
    if len(times) > 1:
        q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = median = q3 = times[0]
    return Latency(median_ms=median, q1_ms=q1, q3_ms=q3, batch_size=batch_size, device=device, repeats=len(times),
                   warmup=warmup, threads=threads, timer=timer,
                   page_faults=float(statistics.median(faults)) if faults else None)


def compare_latency(models: Mapping[str, nn.Module], example_inputs: torch.Tensor, warmup: int = 5,
                    repeats: int = TIMED_REPEATS, threads: int | None = None,
                    channels_last: bool = False) -> dict[str, Latency]:
    """Latency of each model on ``example_inputs`` (eval mode, no gradients), measured interleaved.

    Every model must be on ``example_inputs``' device. Training modes are restored afterwards. ``channels_last``
    times 4-d inputs and the models in channels-last memory format (the models are converted in place: same values,
    another layout; what ``module.channels_last`` trains with).
    """
    device = example_inputs.device
    for name, model in models.items():
        model_device = next(iter(model.parameters()), torch.empty(0, device=device)).device
        if model_device != device:
            raise ValueError(f"model {name!r} is on {model_device} but `example_inputs` are on {device}.")
    if channels_last and example_inputs.dim() == 4:
        example_inputs = example_inputs.contiguous(memory_format=torch.channels_last)
        for model in models.values():
            model.to(memory_format=torch.channels_last)
    modes = {name: model.training for name, model in models.items()}
    runners = {name: functools.partial(model, example_inputs) for name, model in models.items()}
    try:
        for model in models.values():
            model.eval()
        with torch.no_grad():
            return interleaved_latency(runners, batch_size=int(example_inputs.shape[0]), device=device, warmup=warmup,
                                       repeats=repeats, threads=threads)
    finally:
        for name, model in models.items():
            model.train(modes[name])


def measure_latency(model: nn.Module, example_inputs: torch.Tensor, warmup: int = 5, repeats: int = TIMED_REPEATS,
                    threads: int | None = None, channels_last: bool = False) -> Latency:
    """Median and IQR latency of one model on the current device (``example_inputs``' device and batch size).

    For a single number, e.g. a latency budget search; to compare models use :func:`compare_latency`.
    """
    return compare_latency({"model": model}, example_inputs, warmup=warmup, repeats=repeats, threads=threads,
                           channels_last=channels_last)["model"]


def batch_of(example_inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``batch_size`` copies of the first input of ``example_inputs`` (contiguous)."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
    one = example_inputs[:1]
    return one.expand(batch_size, *one.shape[1:]).contiguous()


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
            data.update(self.latency.as_fields())
        return data


def profile_model(model: nn.Module, example_inputs: torch.Tensor, latency_batch_size: int | None = None,
                  repeats: int = TIMED_REPEATS) -> ModelProfile:
    """Count parameters and MACs on one image of ``example_inputs``; time a batch if ``latency_batch_size`` is set."""
    macs = count_macs(model, example_inputs[:1])
    latency = None
    if latency_batch_size:
        latency = measure_latency(model, batch_of(example_inputs, latency_batch_size), repeats=repeats)
    return ModelProfile(params=count_params(model), macs=macs, flops=2 * macs, latency=latency)


_ALLOCATOR_SETTINGS = ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                       "MALLOC_ARENA_MAX", "MALLOC_CONF")  # what changes how freed activations go back to the system


def hardware_summary() -> dict:
    """Where a measurement ran: CPU/GPU name, cores, torch threads, versions and the allocator settings (the
    environment variables that replace or tune ``malloc``; empty = the C library's defaults)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "allocator_env": {name: os.environ[name] for name in _ALLOCATOR_SETTINGS if name in os.environ},
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
