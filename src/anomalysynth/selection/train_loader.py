"""The training data of a fit, for the passes over it that come before training (AFS, statistics)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

__all__ = ["train_loader"]


def train_loader(trainer: pl.Trainer) -> Any:
    """A fresh training data loader of the trainer's fit (datamodule or dataloaders)."""
    datamodule = getattr(trainer, "datamodule", None)
    return datamodule.train_dataloader() if datamodule is not None else trainer.fit_loop._data_source.dataloader()
