"""MemSeg's anomaly synthesis (Yang et al., 2023): Perlin masks filled half the
time with a texture and half the time with "structure", the image itself
augmented and shuffled on a grid."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.base import register_synthesizer
from anomalysynth.synth.perlin_texture import PerlinTextureBlend

__all__ = ["MemSegBlend", "grid_shuffle"]


@register_synthesizer("memseg")
class MemSegBlend(PerlinTextureBlend):
    """Perlin-mask blending with a texture or a structure source, opacity U[0.15, 1].

    Args:
        texture_dir: folder of texture images; generated textures without one.
        structure_ratio: probability that a sample's source is structure rather than texture.
        grid: the structure source is shuffled on a ``grid x grid`` block grid.
        opacity: range of the source weight inside the mask.
        foreground: MemSeg restricts anomalies to a per-category grey threshold
            foreground: pass ``"otsu"`` / ``"triangle"`` (``foreground_invert`` for
            dark objects) or a tensor to ``forward``.
        perlin_scale, threshold, rotation_deg, anomaly_ratio, foreground_invert:
            see :class:`PerlinTextureBlend`.
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        structure_ratio: float = 0.5,
        grid: int = 8,
        opacity: tuple[float, float] = (0.15, 1.0),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(
            texture_dir,
            opacity,
            perlin_scale,
            threshold,
            rotation_deg,
            True,
            anomaly_ratio,
            foreground,
            foreground_invert,
        )
        if not 0.0 <= structure_ratio <= 1.0:
            raise ValueError(f"`structure_ratio` must lie in [0, 1]; got {structure_ratio}.")
        if grid < 1:
            raise ValueError(f"`grid` must be >= 1; got {grid}.")
        self.structure_ratio = float(structure_ratio)
        self.grid = int(grid)

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params = super()._sample(images, generators)
        params["use_structure"] = uniform(generators, 0.0, 1.0) < self.structure_ratio
        params["grid_permutation"] = draw(generators, lambda g: torch.randperm(self.grid * self.grid, generator=g))
        return params

    def _texture(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        source = torch.empty_like(images)
        structure = params["use_structure"]
        for use, build in ((False, super()._texture), (True, self._structure)):
            idx = torch.nonzero(structure == use).flatten()
            if idx.numel():
                source[idx] = build(images[idx], {k: v[idx] for k, v in params.items()})
        return source

    def _structure(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        assert self.augment is not None
        return grid_shuffle(self.augment(images, params), params["grid_permutation"], self.grid)


def grid_shuffle(images: Tensor, permutation: Tensor, grid: int) -> Tensor:
    """Shuffle (B, C, H, W) images on a ``grid x grid`` block grid.

    ``permutation`` (B, grid * grid): output block ``k`` is input block
    ``permutation[:, k]``. Rows/columns beyond ``grid * (H // grid)`` stay in place.
    """
    b, c, h, w = images.shape
    bh, bw = h // grid, w // grid
    if bh == 0 or bw == 0:
        return images
    core = images[:, :, : bh * grid, : bw * grid]
    blocks = core.reshape(b, c, grid, bh, grid, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, c, bh, bw)
    index = permutation.to(images.device).view(b, grid * grid, 1, 1, 1).expand_as(blocks)
    shuffled = torch.gather(blocks, 1, index)
    core = shuffled.reshape(b, grid, grid, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, bh * grid, bw * grid)
    out = images.clone()
    out[:, :, : bh * grid, : bw * grid] = core
    return out
