"""EpochsForMinSteps: max_epochs becomes a minimum beside min_steps; counted by the module itself."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from anomalysynth.callbacks import EpochsForMinSteps
from tests.conftest import quiet_trainer


class Counting(pl.LightningModule):
    """Records every training batch and every epoch it sees."""

    def __init__(self, samples: int = 10, batch_size: int = 4) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.samples = samples
        self.batch_size = batch_size
        self.batches = 0
        self.epochs_seen: set[int] = set()

    def training_step(self, batch, batch_idx):
        self.batches += 1
        self.epochs_seen.add(self.current_epoch)
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(self.samples, 2)), batch_size=self.batch_size)


@pytest.mark.parametrize(
    ("max_epochs", "min_steps", "accumulate", "epochs", "batches"),
    [
        (2, 10, 1, 4, 12),  # 3 batches an epoch (10 samples, batch 4, last one short): 4 epochs reach 10 steps
        (5, 10, 1, 5, 15),  # max_epochs already gives 15 steps: unchanged
        (2, 0, 1, 2, 6),  # no min_steps: unchanged
        (1, 5, 2, 3, 9),  # accumulating 2 batches: 2 optimizer steps an epoch (the last one short)
    ],
)
def test_training_runs_whole_epochs_until_min_steps(tmp_path, max_epochs, min_steps, accumulate, epochs, batches):
    module = Counting()
    callback = EpochsForMinSteps()
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=max_epochs,
        min_steps=min_steps,
        accumulate_grad_batches=accumulate,
        callbacks=[callback],
    )
    trainer.fit(module)
    assert module.epochs_seen == set(range(epochs))
    assert module.batches == batches
    assert trainer.global_step >= min_steps
    assert callback.epochs == epochs


def test_max_steps_still_ends_training_early(tmp_path):
    module = Counting()
    trainer = quiet_trainer(tmp_path, max_epochs=1, min_steps=10, max_steps=7, callbacks=[EpochsForMinSteps()])
    trainer.fit(module)
    assert module.batches == 7
    assert trainer.global_step == 7


def test_unbounded_epochs_are_left_alone(tmp_path):
    module = Counting()
    callback = EpochsForMinSteps()
    trainer = quiet_trainer(tmp_path, max_epochs=-1, min_steps=4, max_steps=5, callbacks=[callback])
    trainer.fit(module)
    assert module.batches == 5
    assert callback.epochs == -1
