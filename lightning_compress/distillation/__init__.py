"""Knowledge distillation: FSP (Yim et al., CVPR 2017) and classic KD (Hinton et al. 2015) as LightningModules.

* :mod:`.functional`: ``fsp_matrix``, ``fsp_loss``, ``soft_target_loss``, ``kd_loss`` (pure functions).
* :mod:`.features`: ``FeatureRecorder`` (forward hooks by module name), ``default_pairs``.
* :mod:`.teacher`: ``FrozenTeacher``, ``load_teacher``, ``freeze``.
* :mod:`.fsp` / :mod:`.kd`: ``FSPDistillation``, ``KnowledgeDistillation``.
* :mod:`.pipeline`: ``run_distillation(ctx)``, the ``+method=fsp`` / ``+method=kd`` stages of ``train.py``.
"""

from lightning_compress.distillation.features import FeatureRecorder, FeatureSpec, default_pairs
from lightning_compress.distillation.fsp import FSPDistillation
from lightning_compress.distillation.functional import fsp_loss, fsp_matrix, kd_loss, soft_target_loss
from lightning_compress.distillation.kd import KnowledgeDistillation
from lightning_compress.distillation.teacher import FrozenTeacher, freeze, load_teacher

__all__ = [
    "FSPDistillation",
    "FeatureRecorder",
    "FeatureSpec",
    "FrozenTeacher",
    "KnowledgeDistillation",
    "default_pairs",
    "freeze",
    "fsp_loss",
    "fsp_matrix",
    "kd_loss",
    "load_teacher",
    "soft_target_loss",
]
