"""Knowledge distillation: FSP (Yim et al., CVPR 2017) and classic KD (Hinton et al. 2015) as LightningModules.

* :mod:`lightning_compress.functional.distillation`: ``fsp_matrix``, ``fsp_loss``, ``soft_target_loss``,
  ``kd_loss`` (pure functions, re-exported here; the old path ``.functional`` still imports, with a warning).
* :mod:`.features`: ``FeatureRecorder`` (forward hooks by module name), ``default_pairs``.
* :mod:`.teacher`: ``FrozenTeacher``, ``freeze``.
* :mod:`.fsp` / :mod:`.kd`: ``FSPDistillation``, ``KnowledgeDistillation`` (the LightningModules).

The pure parts import eagerly; the LightningModules load Lightning on first use, so ``import
lightning_compress.distillation`` stays light. The ``+method=fsp`` / ``+method=kd`` stages of
``train.py`` are ``lightning_compress.pipeline.distillation_method``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_compress._lazy import lazy_getattr
from lightning_compress.distillation.features import FeatureRecorder, FeatureSpec, default_pairs
from lightning_compress.distillation.teacher import FrozenTeacher, freeze
from lightning_compress.functional.distillation import fsp_loss, fsp_matrix, kd_loss, soft_target_loss

if TYPE_CHECKING:
    from lightning_compress.distillation.fsp import FSPDistillation
    from lightning_compress.distillation.kd import KnowledgeDistillation

_LIGHTNING = {"FSPDistillation": "lightning_compress.distillation.fsp",
              "KnowledgeDistillation": "lightning_compress.distillation.kd"}

__all__ = ["FSPDistillation", "FeatureRecorder", "FeatureSpec", "FrozenTeacher", "KnowledgeDistillation",
           "default_pairs", "freeze", "fsp_loss", "fsp_matrix", "kd_loss", "soft_target_loss"]

__getattr__ = lazy_getattr(__name__, _LIGHTNING)
