"""MemSeg's "structure" source (Yang et al., 2023): the image itself, augmented and
shuffled on a grid."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth import dispatch
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.parts import AnomalySource

__all__ = ["StructureSource", "grid_shuffle"]


class StructureSource(AnomalySource):
    """The image augmented by DRAEM's 3 of 10 operations, then its ``grid x grid`` blocks
    permuted at random.

    Args:
        grid: blocks per side (MemSeg: 8).
        augment: augment before shuffling (MemSeg does).

    Params: ``grid_permutation`` (B, grid * grid), ``aug_*``.
    """

    def __init__(self, grid: int = 8, augment: bool = True) -> None:
        if int(grid) < 1:
            raise ValueError(f"`grid` must be >= 1; got {grid}.")
        self.grid = int(grid)
        self.augment = bool(augment)
        self._augment = TextureAugment() if augment else None

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"grid_permutation": draw(generators, lambda g: torch.randperm(self.grid * self.grid, generator=g))}
        if self._augment is not None:
            out.update(self._augment.sample(generators))
        return out

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        augmented = dispatch.augment_textures(self._augment, images, params) if self._augment is not None else images
        return grid_shuffle(augmented, params["grid_permutation"], self.grid)


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
