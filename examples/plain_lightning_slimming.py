"""Network Slimming on your own LightningModule (``import lightning as L``; ``pytorch_lightning`` works the same):
prune, keep the best fine-tuned checkpoint with your own ``ModelCheckpoint``, reload it, resume it, export it.

    python examples/plain_lightning_slimming.py            # ~1 min on a laptop CPU
    EPOCHS=1 BATCHES=3 python examples/plain_lightning_slimming.py   # a quick smoke run (the test does this)
"""

import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import NetworkSlimming, load_pruned_checkpoint
from lightning_compress.cost import count_macs, count_params
from lightning_compress.portable import export_and_check

EPOCHS = int(os.environ.get("EPOCHS", "10"))
BATCHES = int(os.environ.get("BATCHES", "0")) or None  # limit_train_batches for smoke runs (None: all)
LOG_DIR = Path("logs/examples/plain_lightning_slimming")  # below the git-ignored logs/ of the working folder


class DigitsNet(L.LightningModule):
    """Any LightningModule: the callback prunes ``self.net`` (or ``self.model``; ``submodule=`` points elsewhere)."""

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

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def digits_loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader, TensorDataset]:
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels)
    train, val, test = (TensorDataset(x[a:b], y[a:b]) for a, b in ((0, 1200), (1200, 1400), (1400, len(y))))
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=200), test


def accuracy(model: L.LightningModule, data: TensorDataset) -> float:
    model.eval()
    with torch.no_grad():
        return (model(data.tensors[0]).argmax(1) == data.tensors[1]).float().mean().item()


def trainer(max_epochs: int, callbacks: list) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
                     default_root_dir=LOG_DIR, accelerator="cpu", limit_train_batches=BATCHES)


def main() -> dict:
    L.seed_everything(0)
    train_loader, val_loader, test_set = digits_loaders()
    model = DigitsNet()
    example = test_set.tensors[0][:1]
    before = {"params": count_params(model.net), "macs": count_macs(model.net, example)}

    # 1) Sparsity training; at the end of fit the callback removes 50% of the channels (one global |gamma| threshold)
    #    and saves the pruned network as pruned.ckpt beside your checkpoints (those of this fit are from before the
    #    cut and are refused by load_pruned_checkpoint / trainer.test, naming pruned.ckpt).
    slimming = NetworkSlimming(sparsity_lambda=1e-4, pruning_ratio=0.5, init_gamma=0.5)
    best = ModelCheckpoint(dirpath=LOG_DIR / "sparsity", monitor="val_acc", mode="max", save_top_k=1)
    trainer(EPOCHS, [slimming, best]).fit(model, train_loader, val_loader)

    # 2) Fine-tune the smaller model, keeping the same callback so its checkpoints carry the plan.
    best = ModelCheckpoint(dirpath=LOG_DIR / "finetune", monitor="val_acc", mode="max", save_top_k=1)
    trainer(max(1, EPOCHS // 2), [slimming, best]).fit(model, train_loader, val_loader)

    # 3) Reload the best checkpoint into a fresh DigitsNet (weights_only=True under the hood).
    reloaded = load_pruned_checkpoint(DigitsNet, best.best_model_path)
    after = {"params": count_params(reloaded.net), "macs": count_macs(reloaded.net, example)}

    # 4) Resume fine-tuning from it in a new Trainer (a fresh callback with the same arguments restores the plan).
    resumed = DigitsNet()
    resume = trainer(max(1, EPOCHS // 2) + 1, [NetworkSlimming(sparsity_lambda=1e-4, pruning_ratio=0.5,
                                                                init_gamma=0.5)])
    resume.fit(resumed, train_loader, val_loader, ckpt_path=best.best_model_path)

    # 5) Export the pruned network (torch.export; format="onnx" with the `export` extra) and check it against PyTorch.
    exported = export_and_check(reloaded.net.eval(), (1, 8, 8), LOG_DIR / "digits_pruned.pt2", "pt2")

    result = {"before": before, "after": after, "test_acc": accuracy(reloaded, test_set),
              "resumed_params": count_params(resumed.net), "resumed_step": resume.global_step,
              "best_step": torch.load(best.best_model_path, weights_only=True)["global_step"],
              "parity": exported["parity"]["passed"], "exported": exported["file"]}
    print(f"params {before['params']:,} -> {after['params']:,} ({100 * (1 - after['params'] / before['params']):.1f}% "
          f"fewer), MACs {before['macs']:,} -> {after['macs']:,} ({100 * (1 - after['macs'] / before['macs']):.1f}% "
          f"fewer), test accuracy {result['test_acc']:.3f}; exported to {exported['file']} "
          f"(parity {'passed' if result['parity'] else 'FAILED'})")
    return result


if __name__ == "__main__":
    main()
