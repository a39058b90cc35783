"""Structured pruning engine: channel dependency graph (torch.fx), selection, physical removal, soft masks.

Pure PyTorch (no Lightning/Hydra). Typical use::

    plan = select_channels(model, torch.randn(1, 3, 32, 32), pruning_ratio=0.3, importance="l1")
    # or to a budget: select_channels(model, x, target_macs=0.5) (half the MACs); fit_budget(...) also says what
    # ratio it found and what it reached
    prune(model, plan, optimizer)                      # or mask(model, plan) for soft pruning
    torch.save({"plan": plan.to_dict(), "state_dict": model.state_dict()}, path)
    # later: prune(fresh_model, PruningPlan.from_dict(ckpt["plan"])); fresh_model.load_state_dict(ckpt["state_dict"])
"""

from lightning_compress.functional.pruning import keep_count

from .alignment import RoundToChoice, choose_round_to
from .api import select_channels
from .budget import Budget, BudgetFit, fit_budget
from .errors import TraceError, UnsupportedOpError
from .graph import Boundary, ChannelGraph, ChannelGroup, Member, build_channel_graph
from .importance import IMPORTANCES, BNScale, GeometricMedian, Importance, Magnitude, Random
from .masking import ChannelMask, mask, zero_masked_grads, zero_masked_optimizer_state
from .plan import GroupPlan, LayerPlan, PruningPlan, SlotPlan
from .rules import ChannelwiseRule, ElementwiseRule, ModuleRule, register_module_rule
from .selection import select_on_graph
from .surgery import prune

__all__ = [
    "IMPORTANCES",
    "BNScale",
    "Boundary",
    "Budget",
    "BudgetFit",
    "ChannelGraph",
    "ChannelGroup",
    "ChannelMask",
    "ChannelwiseRule",
    "ElementwiseRule",
    "GeometricMedian",
    "GroupPlan",
    "Importance",
    "LayerPlan",
    "Magnitude",
    "Member",
    "ModuleRule",
    "PruningPlan",
    "Random",
    "RoundToChoice",
    "SlotPlan",
    "TraceError",
    "UnsupportedOpError",
    "build_channel_graph",
    "choose_round_to",
    "fit_budget",
    "keep_count",
    "mask",
    "prune",
    "register_module_rule",
    "select_channels",
    "select_on_graph",
    "zero_masked_grads",
    "zero_masked_optimizer_state",
]
