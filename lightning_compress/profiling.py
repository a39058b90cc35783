"""Deprecated: moved to :mod:`lightning_compress.cost` (this path keeps working and warns)."""

from lightning_compress._lazy import forward_to

__getattr__, __dir__ = forward_to(__name__, "lightning_compress.cost")
