"""Structured pruning engine: channel dependency graph (torch.fx), selection, physical removal, soft masks.

Pure PyTorch (no Lightning/Hydra). Typical use::

    plan = select_channels(model, torch.randn(1, 3, 32, 32), pruning_ratio=0.3, importance="l1")
    prune(model, plan, optimizer)                      # or mask(model, plan) for soft pruning
    torch.save({"plan": plan.to_dict(), "state_dict": model.state_dict()}, path)
    # later: prune(fresh_model, PruningPlan.from_dict(ckpt["plan"])); fresh_model.load_state_dict(ckpt["state_dict"])
"""

from .errors import TraceError, UnsupportedOpError
from .graph import ChannelGraph, ChannelGroup, Member, build_channel_graph
from .importance import IMPORTANCES
from .masking import ChannelMask, mask, zero_masked_grads, zero_masked_optimizer_state
from .plan import GroupPlan, LayerPlan, PruningPlan, SlotPlan
from .rules import ChannelwiseRule, ElementwiseRule, ModuleRule, register_module_rule
from .selection import keep_count, select_channels
from .surgery import prune

__all__ = [
    "IMPORTANCES",
    "ChannelGraph",
    "ChannelGroup",
    "ChannelMask",
    "ChannelwiseRule",
    "ElementwiseRule",
    "GroupPlan",
    "LayerPlan",
    "Member",
    "ModuleRule",
    "PruningPlan",
    "SlotPlan",
    "TraceError",
    "UnsupportedOpError",
    "build_channel_graph",
    "keep_count",
    "mask",
    "prune",
    "register_module_rule",
    "select_channels",
    "zero_masked_grads",
    "zero_masked_optimizer_state",
]
