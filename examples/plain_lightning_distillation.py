"""FSP (two stages) and KD distillation in a plain ``lightning.Trainer``, then the student reloaded without a teacher.

    python examples/plain_lightning_distillation.py            # ~1 min on a laptop CPU
    EPOCHS=1 BATCHES=3 python examples/plain_lightning_distillation.py   # a quick smoke run (the test does this)

The teacher and students are plain ``nn.Module`` s (here the CIFAR ResNets of this package on the 8x8 digits; any
networks work, with ``pairs``/``teacher_pairs`` naming their modules). The teacher is frozen, in eval mode, outside
the optimizer and outside the checkpoints, which is why reloading needs only the student network.
"""

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import load_pruned_checkpoint
from lightning_compress.distillation import FSPDistillation, KnowledgeDistillation
from lightning_compress.models.resnet_cifar import CifarResNet
from lightning_compress.modules import ImageClassifier

EPOCHS = int(os.environ.get("EPOCHS", "5"))
BATCHES = int(os.environ.get("BATCHES", "0")) or None  # limit_train_batches for smoke runs (None: all)
LOG_DIR = Path("logs/examples/plain_lightning_distillation")
OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9}
PAIRS = [["layer1:input", "layer1:output"], ["layer2:input", "layer2:output"]]  # FSP matrices (Yim et al.)


def digits() -> tuple[DataLoader, DataLoader, TensorDataset]:
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0, torch.tensor(labels)
    train, val, test = (TensorDataset(x[a:b], y[a:b]) for a, b in ((0, 1200), (1200, 1400), (1400, len(y))))
    return DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=200), test


def resnet(depth: int) -> CifarResNet:
    return CifarResNet(depth, num_classes=10, in_channels=1)


def fit(module: L.LightningModule, name: str, train: DataLoader, val: DataLoader) -> ModelCheckpoint:
    checkpoint = ModelCheckpoint(dirpath=LOG_DIR / name, monitor="val/acc", mode="max", save_top_k=1)
    L.Trainer(max_epochs=EPOCHS, callbacks=[checkpoint], logger=False, enable_progress_bar=False,
              default_root_dir=LOG_DIR, accelerator="cpu", limit_train_batches=BATCHES).fit(module, train, val)
    return checkpoint


def accuracy(net: torch.nn.Module, data: TensorDataset) -> float:
    net.eval()
    with torch.no_grad():
        return (net(data.tensors[0]).argmax(1) == data.tensors[1]).float().mean().item()


def main() -> dict:
    L.seed_everything(0)
    train, val, test = digits()
    teacher = resnet(20)
    fit(ImageClassifier(teacher, num_classes=10, optim=OPTIM), "teacher", train, val)

    # FSP, stage 1: the student learns the teacher's FSP matrices; stage 2: the student alone with cross-entropy.
    student = resnet(8)
    stage1 = fit(FSPDistillation(student, teacher, num_classes=10, pairs=PAIRS, teacher_pairs=PAIRS, optim=OPTIM),
                 "fsp_stage1", train, val)
    stage2 = fit(ImageClassifier(student, num_classes=10, optim=OPTIM), "fsp_stage2", train, val)

    # KD (Hinton et al.): soft targets of the teacher + cross-entropy, one stage.
    kd_student = resnet(8)
    kd = fit(KnowledgeDistillation(kd_student, teacher, num_classes=10, optim=OPTIM), "kd", train, val)

    # Reload the students: only their networks are needed (no `teacher` argument; none is in the checkpoints).
    fsp_stage1 = load_pruned_checkpoint(FSPDistillation, stage1.best_model_path, net=resnet(8))
    fsp_final = load_pruned_checkpoint(ImageClassifier, stage2.best_model_path, net=resnet(8))
    kd_final = load_pruned_checkpoint(KnowledgeDistillation, kd.best_model_path, net=resnet(8))
    result = {"teacher_acc": accuracy(teacher, test), "fsp_acc": accuracy(fsp_final.net, test),
              "kd_acc": accuracy(kd_final.net, test), "fsp_stage1_teacher": fsp_stage1.teacher,
              "teacher_in_checkpoint": any(k.startswith("teacher") for k in
                                           torch.load(kd.best_model_path, weights_only=True)["state_dict"])}
    print(f"test accuracy: teacher {result['teacher_acc']:.3f}, FSP student {result['fsp_acc']:.3f}, "
          f"KD student {result['kd_acc']:.3f}")
    return result


if __name__ == "__main__":
    main()
