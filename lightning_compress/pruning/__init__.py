"""Structured pruning engine: channel dependency graph (torch.fx), selection, physical removal, soft masks.

Pure PyTorch (no Lightning/Hydra). Typical use::

    plan = select_channels(model, torch.randn(1, 3, 32, 32), pruning_ratio=0.3, importance="l1")
    # or to a budget: select_channels(model, x, target_macs=0.5) (half the MACs); fit_budget(...) also says what
    # ratio it found and what it reached
    prune(model, plan, optimizer)                      # or mask(model, plan) for soft pruning
    torch.save({"plan": plan.to_dict(), "state_dict": model.state_dict()}, path)
    # later: prune(fresh_model, PruningPlan.from_dict(ckpt["plan"])); fresh_model.load_state_dict(ckpt["state_dict"])

The names below are the engine's API; everything else lives in its own module (``graph``, ``plan``, ``alignment``...).
"""

from lightning_compress._lazy import lazy_getattr

from .api import select_channels
from .budget import Budget, fit_budget
from .errors import TraceError, UnsupportedOpError
from .graph import ChannelGraph, build_channel_graph
from .importance import BNScale, GeometricMedian, Magnitude, Random
from .masking import ChannelMask, mask
from .plan import PruningPlan
from .rules import ChannelwiseRule, ElementwiseRule, ModuleRule, register_module_rule
from .surgery import prune

__all__ = [
    "BNScale",
    "Budget",
    "ChannelGraph",
    "ChannelMask",
    "ChannelwiseRule",
    "ElementwiseRule",
    "GeometricMedian",
    "Magnitude",
    "ModuleRule",
    "PruningPlan",
    "Random",
    "TraceError",
    "UnsupportedOpError",
    "build_channel_graph",
    "fit_budget",
    "mask",
    "prune",
    "register_module_rule",
    "select_channels",
]

# names exported before the API was trimmed: still importable from here, with a DeprecationWarning
_MOVED = {
    **dict.fromkeys(["IMPORTANCES", "Importance"], "lightning_compress.pruning.importance"),
    **dict.fromkeys(["Boundary", "ChannelGroup", "Member"], "lightning_compress.pruning.graph"),
    **dict.fromkeys(["GroupPlan", "LayerPlan", "SlotPlan"], "lightning_compress.pruning.plan"),
    **dict.fromkeys(["RoundToChoice", "choose_round_to"], "lightning_compress.pruning.alignment"),
    **dict.fromkeys(["zero_masked_grads", "zero_masked_optimizer_state"], "lightning_compress.pruning.masking"),
    "BudgetFit": "lightning_compress.pruning.budget",
    "keep_count": "lightning_compress.functional.pruning",
    "select_on_graph": "lightning_compress.pruning.selection",
}
__getattr__ = lazy_getattr(__name__, {}, _MOVED)
