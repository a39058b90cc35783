"""Pure tensor math behind the callbacks (no Lightning, no model traversal): easy to test against references."""

from lightning_compress.functional.slimming import (
    add_l1_subgradient,
    gamma_summary,
    global_threshold_keep,
)

__all__ = ["add_l1_subgradient", "gamma_summary", "global_threshold_keep"]
