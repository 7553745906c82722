"""Write sample grids of a diffusion model during training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from anomalysynth.files import save_png_atomic

__all__ = ["DiffusionSampleGrid"]


class DiffusionSampleGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs (and at the end of training), sample the
    module's EMA weights at each strength in ``strengths`` and write
    ``<dirpath>/epoch=NNNN.png``; a TensorBoard logger also gets the image.

    Works with any LightningModule with a ``sampler(num_steps)`` method returning an
    :class:`~anomalysynth.diffusion.SDASSampler` (e.g. ``NormalImageDiffusion``).

    Args:
        every_n_epochs: epochs between grids.
        strengths: one row per SDAS strength ``s``.
        num_images: columns.
        num_steps: respaced reverse steps.
        seed: column ``i`` uses seed ``seed + i`` (the same every time: grids are comparable).
        dirpath: output folder (default ``<trainer.default_root_dir>/samples``).
        scale: nearest-neighbour upscaling of small samples.
    """

    def __init__(
        self,
        every_n_epochs: int = 100,
        strengths: Sequence[float] = (0.0,),
        num_images: int = 8,
        num_steps: int = 20,
        seed: int = 0,
        dirpath: str | None = None,
        scale: int = 2,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be >= 1; got {every_n_epochs}.")
        self.every_n_epochs = every_n_epochs
        self.strengths = tuple(float(s) for s in strengths)
        self.num_images = num_images
        self.num_steps = num_steps
        self.seed = seed
        self.dirpath = dirpath
        self.scale = scale
        self.written: list[Path] = []
        self._last_step = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_step != trainer.global_step:
            self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from anomalysynth.diffusion.grid import strength_grid

        make_sampler = getattr(pl_module, "sampler", None)
        if not callable(make_sampler):
            raise TypeError(f"{type(pl_module).__name__} has no `sampler(num_steps)` method to sample grids from.")
        was_training = pl_module.training
        pl_module.eval()
        grid = strength_grid(make_sampler(self.num_steps), self.strengths, self.num_images, self.seed, self.scale)
        pl_module.train(was_training)
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "samples")
        path = save_png_atomic(grid, folder / f"epoch={trainer.current_epoch:04d}.png")
        self.written.append(path)
        self._last_step = trainer.global_step
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):
            experiment.add_image("samples", np.asarray(grid), trainer.global_step, dataformats="HWC")
