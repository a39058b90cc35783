"""Network Slimming on your own LightningModule: one callback, a physically smaller model at the end.

    python examples/plain_lightning_slimming.py            # ~1 min on a laptop CPU
    EPOCHS=1 BATCHES=3 python examples/plain_lightning_slimming.py   # a quick smoke run (the test does this)
"""

import os

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import NetworkSlimming, load_pruned_checkpoint
from lightning_compress.profiling import count_macs, count_params

EPOCHS = int(os.environ.get("EPOCHS", "10"))
BATCHES = int(os.environ.get("BATCHES", "0")) or None  # limit_train_batches for smoke runs (None: all)
LOG_DIR = "logs/examples/plain_lightning_slimming"  # checkpoints, below the git-ignored logs/ of the working folder


class DigitsNet(pl.LightningModule):
    """Any LightningModule: the callback prunes ``self.net`` (or pass ``submodule=`` to point elsewhere)."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def digits_loaders(batch_size: int = 64) -> tuple[DataLoader, TensorDataset]:
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels)
    train, test = TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])
    return DataLoader(train, batch_size=batch_size, shuffle=True), test


def accuracy(model: pl.LightningModule, data: TensorDataset) -> float:
    model.eval()
    with torch.no_grad():
        return (model(data.tensors[0]).argmax(1) == data.tensors[1]).float().mean().item()


def main() -> dict:
    pl.seed_everything(0)
    train_loader, test_set = digits_loaders()
    model = DigitsNet()
    example = test_set.tensors[0][:1]
    before = {"params": count_params(model.net), "macs": count_macs(model.net, example)}

    # 1) Sparsity training; at the end of fit the callback removes 50% of the channels (one global |gamma| threshold).
    slimming = NetworkSlimming(sparsity_lambda=1e-4, pruning_ratio=0.5, init_gamma=0.5)
    trainer = pl.Trainer(max_epochs=EPOCHS, callbacks=[slimming], logger=False, enable_progress_bar=False,
                         default_root_dir=LOG_DIR, accelerator="cpu", limit_train_batches=BATCHES)
    trainer.fit(model, train_loader)

    # 2) Fine-tune the smaller model (a plain fit: model.net is already pruned). Checkpoints carry the plan.
    finetune = pl.Trainer(max_epochs=max(1, EPOCHS // 2), callbacks=[slimming], logger=False,
                          enable_progress_bar=False, default_root_dir=LOG_DIR, accelerator="cpu",
                          limit_train_batches=BATCHES)
    finetune.fit(model, train_loader)

    # 3) Reload the pruned checkpoint into a fresh DigitsNet (weights_only=True under the hood).
    reloaded = load_pruned_checkpoint(DigitsNet, finetune.checkpoint_callback.best_model_path)
    after = {"params": count_params(reloaded.net), "macs": count_macs(reloaded.net, example)}
    result = {"before": before, "after": after, "test_acc": accuracy(reloaded, test_set)}
    print(f"params {before['params']:,} -> {after['params']:,} ({100 * (1 - after['params'] / before['params']):.1f}% "
          f"fewer), MACs {before['macs']:,} -> {after['macs']:,} ({100 * (1 - after['macs'] / before['macs']):.1f}% "
          f"fewer), test accuracy {result['test_acc']:.3f}")
    return result


if __name__ == "__main__":
    main()
