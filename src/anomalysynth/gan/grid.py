"""Sample grids of AnomalyHybrid during training: what the generator makes of each manipulation."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image, ImageDraw
from torch import Tensor

from anomalysynth.files import atomic_write_bytes
from anomalysynth.gan.manipulations import MANIPULATIONS
from anomalysynth.gan.pipeline import HybridPipeline, HybridResult
from anomalysynth.gan.regions import ellipse_region

__all__ = ["COLUMNS", "AnomalyHybridSampleGrid", "hybrid_grid"]

COLUMNS = ("input", "depth", "edge", "edited depth", "edited edge", "fusion", "output", "mask")


class AnomalyHybridSampleGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs and at the end of training, write ``<dirpath>/epoch=NNNN.png``.

    One row per (image, manipulation): the input, its depth and edges, the edited
    depth and edges, the fusion map, the output and the mask over the output. The
    images are the first ``num_images`` of the first training batch (kept from epoch
    0, so grids are comparable); the region is an ellipse of ``area_ratio`` at the
    image centre; the reference is the image flipped left-right.

    Works with :class:`~anomalysynth.gan.module.AnomalyHybridGAN` (it needs
    ``generator``, ``conditions`` and ``prepare``).

    Args:
        every_n_epochs: epochs between grids.
        num_images: images per grid.
        manipulations: the rows per image.
        area_ratio: the region's area as a fraction of the image.
        dirpath: output folder (default ``<trainer.default_root_dir>/samples``).
        scale: nearest-neighbour upscaling of small images.
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        num_images: int = 2,
        manipulations: Sequence[str] = MANIPULATIONS,
        area_ratio: float = 0.06,
        dirpath: str | None = None,
        scale: int = 2,
    ) -> None:
        if every_n_epochs < 1 or num_images < 1 or scale < 1:
            raise ValueError(
                f"Expected every_n_epochs, num_images and scale >= 1; got {every_n_epochs}, {num_images}, {scale}."
            )
        unknown = [m for m in manipulations if m not in MANIPULATIONS]
        if unknown or not manipulations:
            raise ValueError(f"`manipulations` must name some of {MANIPULATIONS}; got {list(manipulations)}.")
        if not 0.0 < area_ratio < 1.0:
            raise ValueError(f"`area_ratio` must lie in (0, 1); got {area_ratio}.")
        self.every_n_epochs, self.num_images, self.scale = every_n_epochs, num_images, scale
        self.manipulations = list(manipulations)
        self.area_ratio = float(area_ratio)
        self.dirpath = dirpath
        self.images: Tensor | None = None
        self.written: list[Path] = []
        self._last_step = -1

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.images is None:
            from anomalysynth.gan.module import batch_images_and_paths

            images, _ = batch_images_and_paths(batch)
            self.images = pl_module.prepare(images[: self.num_images]).detach().cpu()  # type: ignore[operator]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_step != trainer.global_step:
            self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.images is None:
            return
        pipeline = HybridPipeline(pl_module.generator, pl_module.conditions)  # type: ignore[arg-type]
        grid = hybrid_grid(pipeline, self.images.to(pl_module.device), self.manipulations, self.area_ratio, self.scale)
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "samples")
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG")
        path = atomic_write_bytes(folder / f"epoch={trainer.current_epoch:04d}.png", buffer.getvalue())
        self.written.append(path)
        self._last_step = trainer.global_step


def hybrid_grid(
    pipeline: HybridPipeline,
    images: Tensor,
    manipulations: Sequence[str] = MANIPULATIONS,
    area_ratio: float = 0.06,
    scale: int = 2,
    decoder: str = "depth",
) -> Image.Image:
    """A PIL grid: one row per (image, manipulation), the columns of :data:`COLUMNS`."""
    b, _, h, w = images.shape
    centre = torch.tensor([[(h - 1) / 2, (w - 1) / 2]]).expand(b, 2)
    region = ellipse_region(centre, torch.full((b,), area_ratio), torch.full((b,), 2.0), torch.full((b,), 0.6), h, w)
    region = region.to(images.device, images.dtype)
    reference = images.flip(-1)
    rows: list[tuple[str, list[Tensor]]] = []
    for mode in manipulations:
        result = pipeline(
            images,
            reference,
            region,
            mode,
            decoder,
            torch.ones(b),
            tps_shift=torch.ones(b),
            tps_angle=torch.zeros(b),
        )
        for i in range(b):
            rows.append((mode, _columns(images[i], result, i)))
    return _canvas(rows, scale)


def _columns(image: Tensor, result: HybridResult, i: int) -> list[Tensor]:
    overlay = result.image[i].clone()
    if overlay.shape[0] == 1:
        overlay = overlay.expand(3, -1, -1).clone()
    mask = result.mask[i, 0] > 0
    overlay[0][mask] = 0.5 * overlay[0][mask] + 0.5
    return [
        image,
        result.depth[i],
        result.edge[i],
        result.edited_depth[i],
        result.edited_edge[i],
        result.fusion[i],
        result.image[i],
        overlay,
    ]


def _canvas(rows: list[tuple[str, list[Tensor]]], scale: int) -> Image.Image:
    gap, label, header = 2, 52, 14
    h, w = rows[0][1][0].shape[-2:]
    h, w = h * scale, w * scale
    n = len(rows[0][1])
    canvas = Image.new("RGB", (label + n * (w + gap) + gap, header + len(rows) * (h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS[:n]):
        draw.text((label + gap + c * (w + gap), 1), name[:12], fill=(0, 0, 0))
    for r, (mode, tiles) in enumerate(rows):
        y = header + gap + r * (h + gap)
        draw.text((2, y + h // 2 - 6), mode, fill=(0, 0, 0))
        for c, tile in enumerate(tiles):
            tile = tile.detach().float().cpu().clamp(0, 1)
            if tile.shape[0] == 1:
                tile = tile.expand(3, -1, -1)
            pixels = (tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            img = Image.fromarray(pixels).resize((w, h), Image.Resampling.NEAREST)
            canvas.paste(img, (label + gap + c * (w + gap), y))
    return canvas
