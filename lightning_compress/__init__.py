"""lightning-compress: structured pruning and distillation for PyTorch Lightning, composed with Hydra."""

__version__ = "0.1.0"
