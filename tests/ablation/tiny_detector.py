"""A detector and data small enough for ablation tests to fit and test in well under a second."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import binary_auroc


class TinyData(pl.LightningDataModule):
    """Normal points N(0, I) in 4-d; test anomalies shifted by 1.5 in the first coordinate.

    Training "synthetic anomalies" are normal points shifted by ``strength`` along a
    random direction of the data seed, so the detector's AUROC depends on the strength.
    """

    def __init__(self, strength: float = 1.0, num_shots: int | None = None, data_seed: int = 0) -> None:
        super().__init__()
        self.strength, self.num_shots, self.data_seed = strength, num_shots, data_seed

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(self.data_seed)
        normal = torch.randn(64 if self.num_shots is None else self.num_shots, 4, generator=g)
        direction = torch.tensor([1.0, 0.5, 0.0, 0.0])
        synthetic = normal + self.strength * direction
        self.train = TensorDataset(
            torch.cat([normal, synthetic]), torch.cat([torch.zeros(len(normal)), torch.ones(len(normal))])
        )
        test_normal = torch.randn(32, 4, generator=g)
        test_anomalous = torch.randn(32, 4, generator=g) + torch.tensor([1.5, 0.0, 0.0, 0.0])
        self.test = TensorDataset(
            torch.cat([test_normal, test_anomalous]), torch.cat([torch.zeros(32), torch.ones(32)])
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=16, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=64)


class TinyDetector(pl.LightningModule):
    """Logistic regression; ``crash_marker``: crash once (creating the file), then run normally."""

    def __init__(self, lr: float = 0.1, crash_marker: str | None = None) -> None:
        super().__init__()
        self.lr, self.crash_marker = lr, crash_marker
        self.linear = torch.nn.Linear(4, 1)
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def on_fit_start(self) -> None:
        if self.crash_marker is not None and not Path(self.crash_marker).exists():
            Path(self.crash_marker).write_text("crashed once\n")
            raise RuntimeError("planned crash")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self.linear(x).squeeze(1), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.scores.append(self.linear(x).squeeze(1))
        self.labels.append(y)

    def on_test_epoch_end(self) -> None:
        auroc = binary_auroc(torch.cat(self.scores), torch.cat(self.labels).long())
        self.log("image_AUROC", auroc)
        self.log("weight_norm", self.linear.weight.norm())
        self.scores.clear()
        self.labels.clear()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)
