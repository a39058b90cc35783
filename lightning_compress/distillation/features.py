"""Intermediate features by module name, through forward hooks, and the default FSP layer pairs.

A feature is named ``"<module path>"`` (its output) or ``"<module path>:input"`` / ``"<module path>:output"``,
e.g. ``"layer2:input"`` is the tensor entering ``layer2`` (the output of ``layer1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

IO_KINDS = ("input", "output")


@dataclass(frozen=True)
class FeatureSpec:
    """One tensor of a network: the input or output of the module at ``module`` (a ``named_modules`` path)."""

    module: str
    io: str = "output"

    @classmethod
    def parse(cls, text: str) -> FeatureSpec:
        """``"layer1"`` -> output of layer1; ``"layer1:input"`` -> its input."""
        if not isinstance(text, str) or not text:
            raise TypeError(f"a feature name must be a non-empty str such as 'layer1:output', got {text!r}.")
        module, _, io = text.partition(":")
        io = io or "output"
        if io not in IO_KINDS:
            raise ValueError(f"feature {text!r}: the part after ':' must be one of {IO_KINDS}, got {io!r}.")
        return cls(module, io)

    def __str__(self) -> str:
        return f"{self.module}:{self.io}"


class FeatureRecorder:
    """Records named features of ``net`` on every forward pass while attached.

    Usage: ``rec.attach(); net(x); feats = rec.collect(); rec.detach()`` (or ``with rec: ...``).
    ``collect`` returns the features in the order of ``names`` and forgets them.

    Raises:
        ValueError: a name does not resolve to a module of ``net`` (the message lists the available names).
    """

    def __init__(self, net: nn.Module, names: Sequence[str]) -> None:
        self.specs = [FeatureSpec.parse(n) for n in names]
        modules = dict(net.named_modules())
        unknown = [str(s) for s in self.specs if s.module not in modules or not s.module]
        if unknown:
            available = [n for n in modules if n]
            raise ValueError(f"feature names {unknown} do not name modules of {type(net).__name__}; "
                             f"available: {available}.")
        self._modules = {s.module: modules[s.module] for s in self.specs}
        self._handles: list = []
        self._store: dict[FeatureSpec, Tensor] = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> FeatureRecorder:
        """Register one forward hook per named module (idempotent)."""
        if not self._handles:
            for name, module in self._modules.items():
                wanted = [s for s in self.specs if s.module == name]
                self._handles.append(module.register_forward_hook(self._hook(wanted)))
        return self

    def detach(self) -> None:
        """Remove the hooks and drop recorded tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._store.clear()

    def collect(self) -> list[Tensor]:
        """The features of the last forward pass, in ``names`` order (then cleared).

        Raises:
            RuntimeError: a named module did not run in that forward pass.
        """
        missing = [str(s) for s in self.specs if s not in self._store]
        if missing:
            self._store.clear()
            raise RuntimeError(f"features {missing} were not recorded: their modules did not run in the forward pass.")
        feats = [self._store[s] for s in self.specs]
        self._store.clear()
        return feats

    def clear(self) -> None:
        """Forget recorded tensors (after a forward pass whose features are not needed)."""
        self._store.clear()

    def __enter__(self) -> FeatureRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _hook(self, wanted: list[FeatureSpec]):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            for spec in wanted:
                self._store[spec] = args[0] if spec.io == "input" else output

        return hook


def default_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """The paper's pairs for this project's networks: the first and last tensor of each section.

    * CIFAR ResNets (``layer1..layer3``): ``("layerK:input", "layerK:output")`` for every stage K: the tensor
      entering the stage and the stage's output. The input of stage K > 1 has the previous stage's resolution and
      width, so its map is max-pooled to the output's size and G is (C_{K-1} x C_K), e.g. 16x32 for layer2.
      Names are the same for every depth, so ResNet-26 and ResNet-8 pair up directly.
    * VGGs (``features.conv<i>/relu<i>/pool<i>``): per section between pools, the output of the section's first
      ReLU and of its last ReLU; a one-conv section pairs the section's input (the previous pool's output) with it.

    Raises:
        ValueError: the architecture is neither (pass ``pairs`` explicitly).
    """
    children = dict(net.named_children())
    stages = [name for name in ("layer1", "layer2", "layer3", "layer4")
              if isinstance(children.get(name), nn.Sequential)]
    if stages:
        return [(f"{s}:input", f"{s}:output") for s in stages]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        return _vgg_pairs(features)
    raise ValueError(f"no default FSP pairs for {type(net).__name__} (neither a CIFAR ResNet with layer1.. nor a VGG "
                     "with features.*): set `pairs` explicitly, e.g. [['layer1:input', 'layer1:output']].")


def _vgg_pairs(features: nn.Sequential) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    section: list[str] = []
    previous_pool: str | None = None
    for name, module in [*features.named_children(), ("", None)]:
        if isinstance(module, nn.ReLU):
            section.append(f"features.{name}")
        elif module is None or isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            if len(section) >= 2:
                pairs.append((section[0], section[-1]))
            elif len(section) == 1 and previous_pool is not None:
                pairs.append((previous_pool, section[0]))
            section = []
            previous_pool = f"features.{name}" if module is not None else None
    return pairs
