"""Let the Trainer's ``min_steps`` take precedence over ``max_epochs``."""

from __future__ import annotations

import math

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["EpochsForMinSteps"]


class EpochsForMinSteps(pl.Callback):
    """Raise the Trainer's ``max_epochs`` so that training runs at least ``min_steps`` steps.

    Lightning stops at ``max_epochs`` even when ``min_steps`` has not been reached, so an
    epoch count tuned on a few hundred images gives a set of fifty a few dozen optimizer
    steps. With this callback, ``max_epochs`` becomes a minimum as well: training runs
    ``max(max_epochs, ceil(min_steps / steps per epoch))`` epochs, always whole ones,
    and ``max_time`` and ``max_steps`` still end it early. ``min_steps`` unset (or 0),
    ``max_epochs=-1`` or an unknown epoch length (an iterable loader) leave the Trainer
    as configured.

    Example (``configs/realnet.yaml``)::

        trainer:
          max_epochs: 10
          min_steps: 250
          callbacks:
            - class_path: anomalysynth.callbacks.EpochsForMinSteps
    """

    def __init__(self) -> None:
        self.epochs: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        min_steps = trainer.min_steps or 0
        max_epochs = trainer.fit_loop.max_epochs
        batches = trainer.num_training_batches
        self.epochs = max_epochs
        if min_steps <= 0 or max_epochs is None or max_epochs < 0 or not math.isfinite(batches) or batches <= 0:
            return
        steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        needed = math.ceil(min_steps / steps_per_epoch)
        if needed > max_epochs:
            trainer.fit_loop.max_epochs = needed
            rank_zero_info(
                f"`min_steps={min_steps}` needs {needed} epochs of {steps_per_epoch} steps: "
                f"`max_epochs` raised from {max_epochs} to {needed}."
            )
            self.epochs = needed
