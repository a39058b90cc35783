"""A teacher of another architecture is refused naming the key and the file (issue 29, item 7)."""

from __future__ import annotations

import pytest

from lightning_compress.distillation import FSPDistillation
from lightning_compress.distillation.teacher import FrozenTeacher, TeacherMismatchError
from lightning_compress.loading import LoadError
from lightning_compress.pipeline import run
from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.pipeline.builders import build_net
from tests.helpers import TINY_DISTILLATION_RUN as TINY


def test_fsp_names_the_teacher_and_its_source(resnet, vgg) -> None:
    with pytest.raises(TeacherMismatchError, match=r"the teacher \(VGG from 'teacher\.pt'\) does not fit "
                                                   r"`teacher_pairs`: feature names .* do not name modules of VGG"):
        FSPDistillation(resnet(8), FrozenTeacher(vgg(), source="teacher.pt"), num_classes=4,
                        pairs=[["layer1:input", "layer1:output"]], teacher_pairs=[["layer1:input", "layer1:output"]])


def test_a_teacher_file_of_another_architecture_names_key_and_file(compose_config, tmp_path) -> None:
    vgg_cfg = compose_config("+method=fsp", *TINY, "model=digits_vgg").model
    path = save_stage_model(tmp_path / "vgg_teacher.pt", build_net(vgg_cfg), vgg_cfg)
    cfg = compose_config("+method=fsp", *TINY, f"method.teacher={path}")
    with pytest.raises(LoadError, match=r"`method.teacher`='.*vgg_teacher\.pt' does not fit this distillation: the "
                                        r"teacher \(VGG\) does not fit `teacher_pairs`") as err:
        run(cfg)
    assert err.value.key == "method.teacher" and err.value.path == str(path)
    assert not (tmp_path / "stages").exists()  # refused before any training
