"""The sensitivity command line as the README shows it: options first, then Hydra overrides."""

import json

from omegaconf import OmegaConf

from lightning_compress.models import digits_vgg
from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.sensitivity import main


def test_cli_accepts_options_before_hydra_overrides(tmp_path):
    model_cfg = OmegaConf.create({"_target_": "lightning_compress.models.digits_vgg"})
    model = save_stage_model(tmp_path / "model.pt", digits_vgg(), model_cfg)
    out = tmp_path / "sens"
    result = main([str(model), "--out", str(out), "--tolerance", "0.5", "--ratios", "0.5", "--max-batches", "1",
                   "data=digits"])
    assert (out / "sensitivity.csv").read_text().count("\n") > 1
    assert (out / "sensitivity.png").is_file()
    assert json.loads((out / "ratios.json").read_text()) == result["ratios"]
