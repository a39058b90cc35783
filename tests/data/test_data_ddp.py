"""Under ddp_spawn (2 CPU processes, gloo) Lightning's DistributedSampler gives each rank its own shard."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_compress.data import SyntheticDataModule
from lightning_compress.data.augment import normalize


class _Fingerprints(pl.LightningModule):
    """Writes the bytes of every image its rank trains and validates on to ``<out>/<stage>-rank<r>.txt``."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        self.seen: dict[str, list[str]] = {"train": [], "val": []}

    def _record(self, stage: str, x: torch.Tensor) -> None:
        self.seen[stage].extend(img.numpy().tobytes().hex() for img in x)

    def training_step(self, batch, batch_idx):
        self._record("train", batch[0])
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self._record("val", batch[0])

    def on_train_end(self) -> None:
        for stage, rows in self.seen.items():
            Path(self.out, f"{stage}-rank{self.global_rank}.txt").write_text("\n".join(rows))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.slow  # ~35 s on 2 cores (spawning two processes that import torch and Lightning)
def test_each_ddp_spawn_rank_sees_a_disjoint_shard(tmp_path):
    dm = SyntheticDataModule(num_classes=4, image_size=8, train_size=64, val_size=32, test_size=8, batch_size=8)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(_Fingerprints(str(tmp_path)), datamodule=dm)
    dm.setup()
    for stage, size in (("train", 64), ("val", 32)):
        expected = {img.numpy().tobytes().hex() for img in normalize(dm.split(stage).images, dm.mean, dm.std)}
        shards = [set((tmp_path / f"{stage}-rank{r}.txt").read_text().split("\n")) for r in range(2)]
        assert [len(s) for s in shards] == [size // 2, size // 2]
        assert not shards[0] & shards[1]
        assert shards[0] | shards[1] == expected
