"""Strength grids: rows of SDAS samples at increasing ``s``, columns sharing a seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from anomalysynth.diffusion.sampler import SDASSampler

__all__ = ["strength_grid"]


def strength_grid(
    sampler: SDASSampler,
    strengths: Sequence[float] = (0.0, 0.1, 0.2, 0.4),
    num_images: int = 8,
    seed: int = 0,
    scale: int = 1,
    progress: bool = False,
) -> Image.Image:
    """A PNG-ready grid: row ``r`` samples with ``s = strengths[r]``; column ``i``
    uses generator seed ``seed + i`` in every row, so a column shows one chain's
    noise at increasing strength."""
    if num_images < 1 or not strengths:
        raise ValueError("`num_images` must be >= 1 and `strengths` non-empty.")
    rows = []
    for s in strengths:
        generators = [torch.Generator().manual_seed(seed + i) for i in range(num_images)]
        images = sampler.sample(num_images, float(s), generators, progress=progress)
        if scale > 1:
            images = F.interpolate(images, scale_factor=scale, mode="nearest")
        rows.append(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images)
    _, _, h, w = rows[0].shape
    gap, label = 2, 44
    canvas = Image.new("RGB", (label + num_images * (w + gap) + gap, len(rows) * (h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (s, images) in enumerate(zip(strengths, rows, strict=True)):
        y = gap + r * (h + gap)
        draw.text((2, y + h // 2 - 6), f"s={float(s):g}", fill=(0, 0, 0))
        for c in range(num_images):
            pixels = (images[c].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            canvas.paste(Image.fromarray(pixels), (label + gap + c * (w + gap), y))
    return canvas
