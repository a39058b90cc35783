"""LightningModules of the project (distillation modules live in ``lightning_compress.distillation``)."""

from lightning_compress.modules.classifier import ImageClassifier
from lightning_compress.modules.optim import build_optimizer, build_scheduler

__all__ = ["ImageClassifier", "build_optimizer", "build_scheduler"]
